"""The SSE benchmarks' gevent side (import after monkey.patch_all()): raw-socket stream clients, gunicorn, watchdog."""
import abc
import json
import os
import signal
import socket
import sys
import time

import gevent
import requests

from bench.benchlib import Proc, children_of, free_port

CONNECTING, STREAMING, FAILED, ENDED = 0, 1, 2, 3


# --- the SSE clients -----------------------------------------------------------------------------
class Client:
    """One stream: the job it follows (an index), its state, and the bytes not parsed yet."""

    __slots__ = ("job", "state", "buf", "ev", "error", "chunked", "done", "greenlet")

    def __init__(self, job):
        self.job = job
        self.state = CONNECTING
        self.buf = b""
        self.ev = b""
        self.error = None
        self.chunked = True
        self.done = False
        self.greenlet = None


class Load(abc.ABC):
    """Clients of one web process, a greenlet each: an HTTP/1.1 GET of `paths[client.job]` on a raw
    socket, the (chunked) text/event-stream cut into events for on_event(client, event, receive time)."""

    def __init__(self, port, paths, connect_timeout=60.0):
        self.addr = ("127.0.0.1", port)
        self.requests = [(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                          "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n").encode()
                         for path in paths]
        self.connect_timeout = connect_timeout
        self.clients = []
        self.errors = {}

    @abc.abstractmethod
    def on_event(self, c, block, now):
        """One event, without its blank line (the last line's own \\n is in `block`); each
        load (bench/sse_bench.py, bench/output_bench.py) says what it counts."""

    # one client --------------------------------------------------------------------------------
    def run_client(self, c):
        sock = None
        try:
            sock = socket.create_connection(self.addr, timeout=self.connect_timeout)
            sock.sendall(self.requests[c.job])
            buf = b""
            while True:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("closed before the response headers")
                buf += data
                end = buf.find(b"\r\n\r\n")
                if end >= 0:
                    break
                if len(buf) > 65536:
                    raise ConnectionError("response headers too large")
            head, body = buf[:end], buf[end + 4:]
            if head[9:12] != b"200":
                raise ConnectionError("HTTP " + head[9:12].decode(errors="replace"))
            c.chunked = b"transfer-encoding: chunked" in head.lower()
            sock.settimeout(None)
            if body:
                self.feed(c, body, time.time())
            while not c.done:
                data = sock.recv(65536)
                now = time.time()
                if not data:
                    break
                self.feed(c, data, now)
        except (OSError, ValueError) as error:
            c.error = f"{type(error).__name__}: {error}"[:120]
            key = type(error).__name__ if c.state == STREAMING else "connect " + type(error).__name__
            self.errors[key] = self.errors.get(key, 0) + 1
        finally:
            if sock is not None:
                sock.close()
            c.state = FAILED if c.state == CONNECTING else ENDED

    def feed(self, c, data, now):
        if c.chunked:
            buf = c.buf + data if c.buf else data
            pos, size_of = 0, len(buf)
            payload = []
            while True:
                line_end = buf.find(b"\r\n", pos)
                if line_end < 0:
                    break
                size = int(buf[pos:line_end].split(b";")[0], 16)
                if size == 0:
                    c.done = True
                    pos = size_of
                    break
                end = line_end + 2 + size
                if end + 2 > size_of:
                    break
                payload.append(buf[line_end + 2:end])
                pos = end + 2
            c.buf = buf[pos:]
            data = b"".join(payload)
        ev = c.ev + data if c.ev else data
        while True:
            end = ev.find(b"\n\n")
            if end < 0:
                break
            self.on_event(c, ev[:end], now)
            ev = ev[end + 2:]
        c.ev = ev

    # many clients ------------------------------------------------------------------------------
    def streaming(self):
        return sum(1 for c in self.clients if c.state == STREAMING)

    def open_batch(self, new, batch_timeout):
        """Open the clients `new` and wait up to `batch_timeout` s for each one's first event:
        (how many failed, how many are still waiting, up to 3 reasons why)."""
        for c in new:
            self.clients.append(c)
            c.greenlet = gevent.spawn(self.run_client, c)
        batch_deadline = time.monotonic() + batch_timeout
        while any(c.state == CONNECTING for c in new) and time.monotonic() < batch_deadline:
            gevent.sleep(0.05)
        failed = sum(1 for c in new if c.state in (FAILED, ENDED))
        waiting = sum(1 for c in new if c.state == CONNECTING)
        reasons = sorted({c.error or "no first event yet" for c in new if c.state != STREAMING})[:3]
        return failed, waiting, reasons


# --- the web process -----------------------------------------------------------------------------
class Web:
    """One gunicorn master (the product's gunicorn.conf.py, WEB_CONCURRENCY=1) serving `app`;
    `worker_pid` is its one worker. `env` comes on top of the settings every bench web process has."""

    proc_class = Proc
    up_path = "/"  # what wait_up() GETs

    def __init__(self, name, app, env, log_dir):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = app
        self.label = "gunicorn"
        env = {"PORT": str(self.port), "WEB_CONCURRENCY": "1", "RATE_LIMIT_PER_MINUTE": "0",
               "SSE_MAX_DURATION": "3600", **env}
        self.proc = self.proc_class(name, [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", app],
                                    env, log_dir, parent_death=signal.SIGTERM)
        self.worker_pid = None

    def wait_up(self, timeout=40):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise RuntimeError(f"{self.label} exited:\n{self.proc.log_tail()}")
            try:
                requests.get(self.url + self.up_path, timeout=3)
                kids = children_of(self.proc.pid)
                if len(kids) == 1:
                    self.worker_pid = kids[0]
                    return
            except requests.RequestException:
                pass
            gevent.sleep(0.2)
        raise RuntimeError(f"{self.label} did not come up:\n{self.proc.log_tail()}")

    def current_worker(self):
        kids = children_of(self.proc.pid)
        return kids[0] if len(kids) == 1 else None

    def fetch_stats(self, timeout):
        """GET /sse-bench/stats (the counters' route) with "at", the middle of the request; None if it fails."""
        sent = time.time()
        try:
            response = requests.get(self.url + "/sse-bench/stats", timeout=timeout)
            stats = response.json() if response.status_code == 200 else None
        except (requests.RequestException, ValueError):
            return None
        if stats:
            stats["at"] = (sent + time.time()) / 2
        return stats


# --- the run's bounds ----------------------------------------------------------------------------
def start_watchdog(name, timeout, stop, report, out):
    """After `timeout` s, stop() everything, write `report` to `out` marked aborted, and exit 3;
    on SIGINT or SIGTERM, stop() and exit 130."""
    def watchdog():
        gevent.sleep(timeout)
        print(f"{name}: hard timeout of {timeout:.0f} s; stopping everything", file=sys.stderr, flush=True)
        stop()
        report["aborted"] = f"hard timeout of {timeout:.0f} s"
        out.write_text(json.dumps(report, indent=2, default=str))
        os._exit(3)
    gevent.spawn(watchdog)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: (stop(), os._exit(130)))
