"""The HTTP side of the fake Ollama: routing, Ollama's endpoints, the /_sim control API."""

import contextlib
import dataclasses
import json
import selectors
import socket
import socketserver
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from simulator import catalog, gojson
from simulator.gojson import RequestError
from simulator.session import Session
from simulator.wire import JSON, Wire

VERSION = "0.12.6"

# path -> {method: handler method name}; a known path with another method gets 405.
ROUTES = {
    "/": {"GET": "root", "HEAD": "root"},
    "/api/version": {"GET": "version", "HEAD": "version"},
    "/api/tags": {"GET": "tags", "HEAD": "tags"},
    "/api/ps": {"GET": "ps"},
    "/api/show": {"POST": "show"},
    "/api/generate": {"POST": "generate"},
    "/api/chat": {"POST": "chat"},
    "/_sim/fault": {"POST": "sim_fault"},
    "/_sim/requests": {"GET": "sim_requests"},
}


class Handler(BaseHTTPRequestHandler):
    """Routes requests the way Ollama's gin router does and answers them."""

    protocol_version = "HTTP/1.1"  # chunked streaming needs it; HTTP/1.0 makes clients buffer

    def setup(self):
        super().setup()
        self.server.track(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def do_GET(self):
        self.dispatch()

    do_POST = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def dispatch(self):
        """Read the body (so keep-alive stays in step), then route."""
        raw = self.read_body()
        methods = ROUTES.get(urllib.parse.urlsplit(self.path).path)
        if methods is None:
            return self.send_text(404, "404 page not found")
        name = methods.get(self.command)
        if name is None:
            return self.send_text(405, "405 method not allowed")
        getattr(self, "route_" + name)(raw)

    def read_body(self):
        """The request body, from Content-Length or chunked transfer encoding."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self):
        parts = []
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            parts.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # trailers
        return b"".join(parts)

    def start_response(self, status, content_type, length):
        """Status line and headers like Go's net/http; length None means chunked."""
        self.send_response_only(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Date", self.date_time_string())
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        self.log_request(status)

    def send_text(self, status, text):
        """A plain-text answer (health check and router errors)."""
        body = text.encode()
        self.start_response(status, "text/plain; charset=utf-8" if status == 200 else "text/plain", len(body))
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status, obj):
        """A whole JSON object with Content-Length."""
        body = gojson.encode(obj)
        self.start_response(status, JSON, len(body))
        if self.command != "HEAD":
            self.wfile.write(body)

    def route_root(self, raw):
        self.send_text(200, "Ollama is running")

    def route_version(self, raw):
        self.send_json(200, {"version": VERSION})

    def route_tags(self, raw):
        self.send_json(200, {"models": [catalog.tag_entry(name) for name in self.server.sim.models]})

    def route_ps(self, raw):
        self.send_json(200, {"models": self.server.sim.loaded_models()})

    def route_show(self, raw):
        try:
            body = gojson.decode_object(raw, "ShowRequest")
            name = body.get("model") or body.get("name") or ""
            if not isinstance(name, str) or not name:
                raise RequestError(400, "model is required")
            if not self.server.sim.has_model(name):
                raise RequestError(404, f"model '{name}' not found")
            self.send_json(200, catalog.show_entry(name))
        except RequestError as exc:
            self.send_json(exc.status, {"error": exc.message})

    def route_generate(self, raw):
        self._run_session("generate", raw)

    def route_chat(self, raw):
        self._run_session("chat", raw)

    def _run_session(self, kind, raw):
        sim = self.server.sim
        record = sim.recorder.new(self.path, sim.faults.take())
        Session(sim, kind, record, Wire(self, sim.recorder, record)).run(raw)

    def route_sim_fault(self, raw):
        try:
            body = json.loads(raw or b"{}")
            self.server.sim.set_fault(body.get("fault", "none"), body.get("times"))
        except (ValueError, AttributeError) as exc:
            return self.send_json(400, {"error": str(exc)})
        self.send_json(200, {"ok": True})

    def route_sim_requests(self, raw):
        self.send_json(200, [dataclasses.asdict(record) for record in self.server.sim.requests])

    def log_message(self, format, *args):
        if self.server.sim.log_requests:
            super().log_message(format, *args)


class Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its open connections, so stop() can end them."""

    daemon_threads = True

    def __init__(self, address, sim):
        self.sim = sim
        self._lock = threading.Lock()
        self._open = {}  # socket -> handler thread
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        # Made first: socketserver calls server_close() (which closes these) if binding fails.
        self._wake_r, self._wake_w = socket.socketpair()
        super().__init__(address, Handler)

    def serve(self):
        """Accept connections until sim.stopping is set and wake() is called."""
        # serve_forever() only notices shutdown() at its next poll; a wake-up socket ends at once.
        with selectors.DefaultSelector() as selector:
            selector.register(self, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self.sim.stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self and not self.sim.stopping.is_set():
                        self.handle_request()

    def wake(self):
        """Make serve() look at sim.stopping now."""
        self._wake_w.send(b"x")

    def server_close(self):
        super().server_close()
        self._wake_r.close()
        self._wake_w.close()

    def server_bind(self):
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can stall; skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def track(self, sock):
        with self._lock:
            self._open[sock] = threading.current_thread()
        if self.sim.stopping.is_set():
            _shutdown(sock)  # accepted just as stop() ran

    def untrack(self, sock):
        with self._lock:
            self._open.pop(sock, None)

    def close_connections(self, timeout):
        """Shut every open connection (waking blocked reads) and wait for the handler threads."""
        with self._lock:
            open_now = list(self._open.items())
        for sock, _ in open_now:
            _shutdown(sock)
        deadline = time.monotonic() + timeout
        for _, thread in open_now:
            thread.join(max(0.0, deadline - time.monotonic()))

    def handle_error(self, request, client_address):
        # Clients hanging up is routine for this server; anything else is a bug worth printing.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def _shutdown(sock):
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
