"""Webhook receivers for the tests: real HTTP servers on 127.0.0.1, in a thread of the test process,
and the secret and settings the test app signs with."""
import base64
import os
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook

from helpers import wait_until


def new_secret():
    """A Standard Webhooks secret as the README makes one: whsec_ and the base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


SECRET = new_secret()
# The test app signs with SECRET and may send to a receiver on this machine over plain http.
HOOKED = {"WEBHOOK_SECRET": SECRET, "WEBHOOK_ALLOW_HTTP": True, "WEBHOOK_ALLOW_PRIVATE": True,
          "WEBHOOK_RETRY_DELAYS": (5.0, 300.0), "WEBHOOK_TIMEOUT": 5.0}


class LocalServer:
    """An HTTP server on 127.0.0.1 for `handler`, served by a thread while in `with`. `closing` is
    set as it closes, so that an answer holding its socket lets go."""

    def __init__(self, handler):
        self.closing = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


class QuietHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass


@dataclass
class Received:
    path: str
    headers: dict  # names lower-cased
    body: bytes
    answer: object  # the status code it was answered, or "hang"

    @property
    def id(self):
        return self.headers["webhook-id"]

    def verified(self, secret=SECRET):
        """The payload, once its signature checks out as the standard checks it (raises if not)."""
        return Webhook(secret).verify(self.body, self.headers)


class Receiver(LocalServer):
    """A webhook receiver: records every POST and answers each from `script` in turn (a status
    code; "hang": no answer until the receiver closes), then 200."""

    def __init__(self, script=()):
        self.script = list(script)
        self.received = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self):  # noqa: N802 (the name http.server calls)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    answer = receiver.script.pop(0) if receiver.script else 200
                    receiver.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()},
                                                      body, answer))
                if answer == "hang":
                    receiver.closing.wait(60)
                    self.close_connection = True
                    return
                self.send_response(answer)
                if 300 <= answer < 400:
                    self.send_header("Location", receiver.url + "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

        super().__init__(Handler)

    def got(self):
        with self.lock:
            return list(self.received)

    def wait_for(self, count, timeout=10):
        return wait_until(lambda: len(self.got()) >= count and self.got(), timeout,
                          f"{count} webhook request(s) at the receiver")


class Answering(LocalServer):
    """A receiver whose answer `answer(receiver, handler)` writes byte for byte (what the Receiver
    cannot: cookies, a body that never ends, a status line dripped). Records each request's
    headers; `closing` is set when it closes (an answer may hold its socket until then),
    `finished` when an answer was written to its end."""

    def __init__(self, answer):
        self.requests, self.finished, self.holding = [], threading.Event(), threading.Event()
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self):  # noqa: N802 (the name http.server calls)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append({k.lower(): v for k, v in self.headers.items()})
                try:
                    answer(receiver, self)
                except OSError:  # the sender hung up
                    return
                self.close_connection = True

        super().__init__(Handler)
