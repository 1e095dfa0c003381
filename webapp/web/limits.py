"""Limits the app enforces itself, so a client gets a clear 4xx (JSON under /api/), never a 500 or a held greenlet."""
import contextlib
import socket

from flask import abort, request
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge, RequestTimeout

# Below gunicorn's own limits (gunicorn.conf.py), which answer in plain text before the app runs.
MAX_REQUEST_LINE = 4094
MAX_HEADER_FIELD = 8190
READ_STEP = 64 * 1024
BATCH_PATHS = ("/api/v1/ai/generation/batches", "/batches")  # where a batch is created: many prompts


class GuardedInput:
    """`wsgi.input` that counts the body as it arrives (413 past `limit`, chunked or not), and turns
    a malformed body into 400 and a body that stops arriving for `timeout` seconds into 408."""

    def __init__(self, stream, limit, sock=None, timeout=None):
        self.stream, self.limit, self.sock, self.timeout = stream, limit, sock, timeout
        self.received = 0

    def read(self, size=-1):
        if size is None or size < 0:
            return self._read_all()
        return self._counted(self._guarded(self.stream.read, size))

    def readline(self, size=-1):
        # The server reads a line whole: cap it one byte past the limit, which is enough to refuse it.
        room = None if self.limit is None else self.limit - self.received + 1
        if room is not None and (size is None or size < 0 or size > room):
            size = room
        return self._counted(self._guarded(self.stream.readline, size))

    def __iter__(self):
        return iter(self.readline, b"")

    def _read_all(self):
        # In steps, so an endless body is refused at the limit instead of buffered whole first.
        return b"".join(iter(lambda: self.read(READ_STEP), b""))

    def _counted(self, data):
        self.received += len(data)
        if self.limit is not None and (self.received > self.limit or self._goes_on(data)):
            raise RequestEntityTooLarge(f"The request body is too large; the limit is {self.limit // 2**20} MB.")
        return data

    def _goes_on(self, data):
        """At exactly the limit, one more byte tells whether the body goes on: werkzeug stops asking
        there, and would take a longer chunked body, cut short, for the whole of it."""
        return bool(data) and self.received == self.limit and bool(self._guarded(self.stream.read, 1))

    def _guarded(self, read, size):
        with self._read_timeout():
            try:
                return read(size)
            except TimeoutError:
                raise RequestTimeout(self._stalled()) from None
            except ParseException as error:  # gunicorn's InvalidChunkSize and the like
                raise BadRequest(f"The request body is malformed ({type(error).__name__}): "
                                 "check its chunked encoding.") from None
            except (OSError, ValueError) as error:  # NoMoreData, a reset, a closed stream
                raise BadRequest(f"The request body could not be read ({type(error).__name__}): "
                                 "it ended before its Content-Length or its last chunk.") from None

    def _stalled(self):
        pause = f" for {self.timeout:g} s" if self.timeout else ""
        return f"The request body stopped arriving{pause}; send it whole, without pauses."

    @contextlib.contextmanager
    def _read_timeout(self):
        if self.sock is None or self.timeout is None:
            yield
            return
        previous = self.sock.gettimeout()
        self.sock.settimeout(self.timeout)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):  # a socket closed meanwhile has nothing to restore
                self.sock.settimeout(previous)


class GuardBodies:
    """WSGI middleware: every request body is read through a GuardedInput."""

    def __init__(self, wsgi_app, limit, timeout, larger=None):
        self.wsgi_app, self.limit = wsgi_app, limit
        self.larger = larger or {}  # {path: limit} for the routes that take more (a batch's items)
        # 0 turns the timeout off: settimeout(0) would make every read non-blocking instead.
        self.timeout = timeout if timeout and timeout > 0 else None

    def __call__(self, environ, start_response):
        sock = environ.get("gunicorn.socket")  # absent outside gunicorn (the test client)
        sock = sock if isinstance(sock, socket.socket) else None
        limit = self.larger.get(environ.get("PATH_INFO"), self.limit)
        environ["wsgi.input"] = GuardedInput(environ["wsgi.input"], limit, sock, self.timeout)
        return self.wsgi_app(environ, start_response)


def check_request_line():
    """414 for a request line past MAX_REQUEST_LINE (method, address and version, as gunicorn counts)."""
    raw = request.environ.get("RAW_URI") or request.full_path
    if len(request.method) + len(raw) + len(" HTTP/1.1") + 1 > MAX_REQUEST_LINE:
        abort(414, f"The address is too long; the limit is {MAX_REQUEST_LINE} characters.")


def check_header_fields():
    """431 for a header field (`Name: value`) past MAX_HEADER_FIELD bytes."""
    for name, value in request.headers.items():
        if len(name) + len(": ") + len(value) > MAX_HEADER_FIELD:
            abort(431, f"The header '{name[:40]}' is too large; the limit is {MAX_HEADER_FIELD} bytes.")


def register(app):
    larger = dict.fromkeys(BATCH_PATHS, app.config["MAX_BATCH_BYTES"])
    app.wsgi_app = GuardBodies(app.wsgi_app, app.config["MAX_CONTENT_LENGTH"],
                               app.config["REQUEST_BODY_TIMEOUT"], larger)
    app.before_request(check_request_line)
    app.before_request(check_header_fields)
