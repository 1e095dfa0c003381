"""`make run`: web + worker under honcho, plus a labelled Ollama simulator when no Ollama answers."""
import os
import secrets
import socket
import sys
import threading
import time
import urllib.request

from honcho.manager import Manager

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from webapp.config import ollama_url  # noqa: E402

PYTHON = sys.executable


def answers(url, timeout=1.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def free_port(preferred):
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def processes(env):
    """The Procfile's web and worker, and the simulator when Ollama is not there."""
    procs = {"web": f"{PYTHON} -m gunicorn -c gunicorn.conf.py wsgi:app",
             "worker": f"{PYTHON} worker.py"}
    url = ollama_url(env)
    if answers(url + "/"):
        print(f"Using the Ollama at {url}.")
        return procs
    port = free_port(11435)
    print(f"No Ollama answers at {url}: starting the simulator on port {port}. "
          "The page will say the model is simulated.")
    env.update(OLLAMA_URL=f"http://127.0.0.1:{port}", LIVEGEN_SIMULATOR="1")
    procs["ollama"] = f"{PYTHON} -m simulator --port {port}"
    return procs


def announce_when_up(url):
    for _ in range(300):
        if answers(url):
            print(f"\n  livegen is running: {url}  (Ctrl-C stops everything)\n", flush=True)
            return
        time.sleep(0.2)


def main():
    env = dict(os.environ)
    env.setdefault("PORT", "5000")
    env.setdefault("WEB_CONCURRENCY", "1")
    env.setdefault("SECRET_KEY", secrets.token_urlsafe(32))  # shared by web and worker this run
    env.setdefault("PYTHONUNBUFFERED", "1")
    manager = Manager()
    for name, command in processes(env).items():
        manager.add_process(name, command, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{env['PORT']}/"
    threading.Thread(target=announce_when_up, args=(url,), daemon=True).start()
    manager.loop()
    sys.exit(manager.returncode)


if __name__ == "__main__":
    main()
