"""A TCP proxy the tests drive: the database blinks, resets its connections or goes silent."""
import queue
import selectors
import socket
import struct
import threading

FORWARD, CUT, SILENT = "forward", "cut", "silent"
ABORT = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends an RST instead of a FIN


class TcpProxy:
    """Forwards 127.0.0.1:<port> to `target`, until told otherwise:

    - `cut()` closes every connection and refuses new ones;
    - `reset()` aborts every open connection with an RST; new ones are forwarded;
    - `reset_when_client_sends(marker)` does that the moment a client sends `marker`, unforwarded;
    - `silence()` turns every open connection into a black hole for good (a peer that takes
      bytes and never answers, as after a failover) and holds new ones the same way;
    - `restore()` forwards new connections again.

    One thread does all of it, so a command has taken effect when its call returns."""

    def __init__(self, target_host, target_port):
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.mode = FORWARD
        self.upstream_of = {}  # client socket -> upstream socket, or None for a black hole
        self.client_of = {}    # either socket of a connection -> its client socket
        self.marker = None
        self.marker_seen = threading.Event()
        self.swallowed = threading.Event()  # a black hole was sent something: a client is waiting
        self.selector = selectors.DefaultSelector()
        self.commands = queue.SimpleQueue()
        self.waker, wake_end = socket.socketpair()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.selector.register(wake_end, selectors.EVENT_READ)
        self.thread = threading.Thread(target=self._loop, args=(wake_end,), daemon=True)
        self.thread.start()

    # Commands: each runs on the proxy thread, between two reads.

    def cut(self):
        self._command(self._cut)

    def reset(self):
        self._command(self._reset)

    def reset_when_client_sends(self, marker):
        """Arm a one-shot reset; returns an Event set when it has fired."""
        self.marker_seen.clear()
        self._command(setattr, self, "marker", marker)
        return self.marker_seen

    def silence(self):
        self.swallowed.clear()
        self._command(self._silence)

    def restore(self):
        self._command(setattr, self, "mode", FORWARD)

    def close(self):
        self._command(self._cut)
        self._command(None)
        self.thread.join(5)
        self.waker.close()

    def _command(self, function, *args):
        done = threading.Event()
        self.commands.put((function, args, done))
        self.waker.send(b"!")
        if not done.wait(5):
            raise RuntimeError("the proxy thread did not run the command")

    # The proxy thread.

    def _loop(self, wake_end):
        while True:
            for key, _ in self.selector.select():
                if key.fileobj is self.listener:
                    self._accept()
                elif key.fileobj is wake_end:
                    wake_end.recv(4096)
                    if not self._run_commands():
                        self._shut(wake_end)
                        return
                else:
                    self._relay(key.fileobj)

    def _run_commands(self):
        """Run what is queued; False once told to stop."""
        while not self.commands.empty():
            function, args, done = self.commands.get()
            if function is None:
                done.set()
                return False
            function(*args)
            done.set()
        return True

    def _shut(self, wake_end):
        self.selector.close()
        self.listener.close()
        wake_end.close()

    def _accept(self):
        client, _ = self.listener.accept()
        if self.mode == CUT:
            client.close()
            return
        try:
            upstream = socket.create_connection(self.target) if self.mode == FORWARD else None
        except OSError:  # the real server is down: the client sees it go away, the proxy lives on
            client.close()
            return
        self.upstream_of[client] = upstream
        for sock in (client, upstream):
            if sock is not None:
                self.client_of[sock] = client
                self.selector.register(sock, selectors.EVENT_READ)

    def _relay(self, sock):
        client = self.client_of.get(sock)
        if client is None:  # dropped earlier in this same round of events
            return
        upstream = self.upstream_of[client]
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._drop(client)
        elif upstream is None:
            self.swallowed.set()
        elif sock is client and self.marker and self.marker in data:
            self.marker = None
            self.marker_seen.set()  # first: whoever waits on the reset hears of it after this
            self._reset()
        else:
            self._send(upstream if sock is client else client, data)

    def _send(self, sock, data):
        try:
            sock.sendall(data)
        except OSError:
            self._drop(self.client_of[sock])

    def _drop(self, client, abort=False):
        """Close a connection, both sides: with a FIN, or with an RST when `abort`."""
        upstream = self.upstream_of.pop(client)
        if abort:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, ABORT)
        for sock in (client, upstream):
            if sock is not None:
                self._forget(sock)

    def _forget(self, sock):
        self.selector.unregister(sock)
        del self.client_of[sock]
        sock.close()

    def _cut(self):
        self.mode = CUT
        for client in list(self.upstream_of):
            self._drop(client)

    def _reset(self):
        for client in list(self.upstream_of):
            self._drop(client, abort=True)

    def _silence(self):
        """The server side of every open connection goes away; the client side stays open."""
        self.mode = SILENT
        for client, upstream in list(self.upstream_of.items()):
            if upstream is not None:
                self._forget(upstream)
                self.upstream_of[client] = None
