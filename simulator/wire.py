"""Writes one response on a handler's socket and records exactly what went out."""
import contextlib
import select
import socket

from simulator import gojson
from simulator.session import ClientGone

NDJSON = "application/x-ndjson"  # no charset, as Ollama sends it
JSON = "application/json; charset=utf-8"


class Wire:
    """Headers go out with the first chunk, never earlier; each NDJSON line is its own HTTP chunk."""

    def __init__(self, handler, recorder, record):
        self.handler = handler
        self.recorder = recorder
        self.record = record
        self.streaming = False

    def json(self, status, obj):
        """One complete JSON object with Content-Length (errors, stream:false, load-only)."""
        body = gojson.encode(obj)  # gin's c.JSON adds no trailing newline
        self.recorder.update(self.record, status=status)
        self._guard(self.handler.start_response, status, JSON, len(body))
        self._send(obj, body)

    def chunk(self, obj):
        """One NDJSON line as one HTTP chunk, written (and so flushed) at once."""
        line = gojson.encode(obj) + b"\n"
        self._start_stream()
        self._send(obj, b"%x\r\n%s\r\n" % (len(line), line))

    def end(self):
        """The terminating zero-length chunk: a clean end of the body."""
        self._start_stream()
        self._guard(self.handler.wfile.write, b"0\r\n\r\n")

    def drop(self):
        """Close the TCP connection mid-body, without the terminating chunk."""
        self.close()

    def close(self):
        """Give up on this connection (client gone, fault or shutdown)."""
        self.handler.close_connection = True
        with contextlib.suppress(OSError):  # already gone
            self.handler.connection.shutdown(socket.SHUT_RDWR)

    def peer_closed(self):
        """True when the client has hung up (readable with nothing to read)."""
        sock = self.handler.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _start_stream(self):
        if not self.streaming:
            self.recorder.update(self.record, status=200)
            self._guard(self.handler.start_response, 200, NDJSON, None)
            self.streaming = True

    def _send(self, obj, data):
        # Record before writing, so whatever a client has read is already in the record.
        self.recorder.sent(self.record, obj)
        try:
            self.handler.wfile.write(data)
        except OSError:
            self.recorder.unsend(self.record)
            raise ClientGone() from None
        self.recorder.flushed(self.record)

    def _guard(self, write, *args):
        try:
            write(*args)
        except OSError:
            raise ClientGone() from None
