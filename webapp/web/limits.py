"""Limits the app enforces itself, so that a client gets a clear 4xx (JSON under /api/) and never
a 500 or a held greenlet: the body counted as it arrives (413 past MAX_CONTENT_LENGTH, chunked or
not), a malformed body (400), a body that stops arriving (408), an over-long address (414) or
header (431)."""
import socket

from flask import abort, request
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import BadRequest, HTTPException, RequestEntityTooLarge, RequestTimeout

# Below gunicorn's own limits (gunicorn.conf.py), which answer in plain text before the app runs.
MAX_REQUEST_LINE = 4094
MAX_HEADER_FIELD = 8190


class GuardedInput:
    """`wsgi.input` that counts what arrives and turns the server's read errors into 4xx."""

    def __init__(self, stream, limit, sock=None, timeout=None):
        self.stream, self.limit, self.sock, self.timeout = stream, limit, sock, timeout
        self.received = 0

    def read(self, *args):
        return self._guarded(self.stream.read, *args)

    def readline(self, *args):
        return self._guarded(self.stream.readline, *args)

    def __iter__(self):
        return iter(self.readline, b"")

    def _guarded(self, read, *args):
        previous = self.sock.gettimeout() if self.sock else None
        if self.sock:
            self.sock.settimeout(self.timeout)  # a body that stops arriving must not hold us
        try:
            data = read(*args)
        except HTTPException:
            raise
        except TimeoutError:
            raise RequestTimeout(f"The request body stopped arriving for {self.timeout:g} s; "
                                 "send it whole and try again.") from None
        except (ParseException, OSError, ValueError) as error:
            raise BadRequest(f"The request body could not be read ({type(error).__name__}): "
                             "check its Content-Length or chunked encoding.") from None
        finally:
            if self.sock:
                self.sock.settimeout(previous)
        self.received += len(data)
        if self.limit is not None and self.received > self.limit:
            raise RequestEntityTooLarge()
        return data


class GuardBodies:
    """WSGI middleware: every request body is read through a GuardedInput."""

    def __init__(self, wsgi_app, limit, timeout):
        self.wsgi_app, self.limit, self.timeout = wsgi_app, limit, timeout

    def __call__(self, environ, start_response):
        sock = environ.get("gunicorn.socket")
        environ["wsgi.input"] = GuardedInput(environ["wsgi.input"], self.limit,
                                             sock if isinstance(sock, socket.socket) else None, self.timeout)
        return self.wsgi_app(environ, start_response)


def check_request_size():
    """414 for an over-long request line, 431 for an over-long header, before any route runs."""
    raw = request.environ.get("RAW_URI") or request.full_path
    if len(raw) + len(request.method) + 10 > MAX_REQUEST_LINE:
        abort(414, f"The address is too long; the limit is {MAX_REQUEST_LINE} characters.")
    for name, value in request.headers.items():
        if len(name) + len(value) + 2 > MAX_HEADER_FIELD:
            abort(431, f"The header '{name[:40]}' is too large; the limit is {MAX_HEADER_FIELD} bytes.")


def register(app):
    app.wsgi_app = GuardBodies(app.wsgi_app, app.config["MAX_CONTENT_LENGTH"],
                               app.config["REQUEST_BODY_TIMEOUT"])
    app.before_request(check_request_size)
