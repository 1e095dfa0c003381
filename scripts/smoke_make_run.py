"""CI check of the README's first command: `make run` from a fresh clone serves the page and
completes a job. Clones HEAD into a temp dir, runs the real command, drives it over HTTP."""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, response.read().decode()


def wait_for(check, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"make run smoke: FAILED waiting for {what}")


def main():
    workdir = tempfile.mkdtemp(prefix="livegen-smoke-")
    clone = os.path.join(workdir, "livegen")
    subprocess.run(["git", "clone", "-q", ROOT, clone], check=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "OLLAMA_URL", "OLLAMA_HOST")}
    env.update(PORT=str(port), OLLAMA_URL=f"http://127.0.0.1:{free_port()}")  # none there: simulator
    log = open(os.path.join(workdir, "make-run.log"), "w")
    proc = subprocess.Popen(["make", "run"], cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        page = wait_for(lambda: http("GET", base + "/")[1], 600, "the page")
        assert "Simulated model" in page, "the page does not say the model is simulated"
        _, created = http("POST", base + "/api/v1/ai/generation",
                          {"prompt": "Say hello", "options": {"num_predict": 40}})
        status_url = base + json.loads(created)["links"]["status"]
        job = wait_for(lambda: _ended(status_url), 120, "the job to end")
        assert job["status"] == "completed", job
        assert job["result"] and job["completion_tokens"] == 40, job
        print(f"make run smoke: passed (page served, job completed with {job['completion_tokens']} tokens)")
    except BaseException:
        log.flush()
        print(open(log.name).read()[-5000:], file=sys.stderr)
        raise
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def _ended(status_url):
    job = json.loads(http("GET", status_url)[1])["job"]
    return job if job["status"] in ("completed", "failed", "cancelled") else None


if __name__ == "__main__":
    main()
