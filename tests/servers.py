"""Real processes for end-to-end tests: gunicorn with the gevent worker, and `python worker.py`."""
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
READY = re.compile(r"worker (\S+): up to \d+ jobs at once")  # the worker's first line


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A subprocess with its output in a temp file (shown when a test fails)."""

    def __init__(self, args, env):
        self.log = tempfile.NamedTemporaryFile("w+", prefix="livegen-", suffix=".log", delete=False)
        full_env = {**os.environ, "SECRET_KEY": "test-secret", "PYTHONUNBUFFERED": "1", **env}
        self.proc = subprocess.Popen(args, cwd=ROOT, env=full_env, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def pid(self):
        return self.proc.pid

    def output(self):
        self.log.flush()
        with open(self.log.name, errors="replace") as log:
            return log.read()

    def signal(self, signum):
        self.proc.send_signal(signum)

    def wait(self, timeout):
        """The exit code; an AssertionError (with the output) if it still runs after `timeout`."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"pid {self.pid} still running after {timeout} s:\n{self.output()}") from None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def close(self):
        """Remove the output file (after a last look at it)."""
        self.log.close()
        os.unlink(self.log.name)

    def stop(self, sig=15, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        if exc[0] is not None:
            sys.stderr.write(self.output()[-4000:])
        self.close()


class Gunicorn(Process):
    """`gunicorn -c gunicorn.conf.py wsgi:app`, as the Procfile runs it, on a free port."""

    def __init__(self, database_url, **env):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                         {"DATABASE_URL": database_url, "PORT": str(self.port), "WEB_CONCURRENCY": "1",
                          "RATE_LIMIT_PER_MINUTE": "0", **env})
        try:
            self._wait_until_up()
        except BaseException:
            self.stop()  # a server that never came up must not outlive the test
            raise

    def _wait_until_up(self, seconds=30):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("gunicorn exited:\n" + self.output())
            try:
                requests.get(self.url + "/", timeout=2)
                return
            except requests.RequestException:  # not up yet, or still booting its worker
                time.sleep(0.1)
        raise RuntimeError("gunicorn did not come up:\n" + self.output())


class WorkerProcess(Process):
    """`python worker.py`, configured only through the environment, as in production."""

    def __init__(self, database_url, ollama_url, **env):
        super().__init__([sys.executable, "worker.py"],
                         {"DATABASE_URL": database_url, "OLLAMA_URL": ollama_url, **env})

    def wait_ready(self, timeout=20):
        """Until the worker has logged that it serves; returns its worker id."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = READY.search(self.output())
            if ready:
                return ready.group(1)
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.output()}")
            time.sleep(0.02)
        raise AssertionError(f"worker not ready in {timeout} s:\n{self.output()}")


def read_events(response):
    """Parse an SSE response into (field dict) events as they arrive."""
    event = {}
    # A test that stops reading early must not leave the socket to the garbage collector: an unclosed
    # socket is a ResourceWarning, which this suite treats as an error in whichever test it lands.
    with response:
        for line in response.iter_lines(chunk_size=None, decode_unicode=True):
            if line == "":
                if event:
                    yield event
                event = {}
                continue
            field, _, value = line.partition(":")
            event[field] = value[1:] if value.startswith(" ") else value
