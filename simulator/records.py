"""What the simulator sent for each generate/chat request, shared with tests under one Condition."""

import copy
import dataclasses
import threading
import time


@dataclasses.dataclass
class RequestRecord:
    """One /api/generate or /api/chat request as the simulator saw and answered it.

    status, chunks, text, thinking and final are updated just before the bytes are written, so a
    client that has read something always finds it here; sent_at gets each chunk's time once its
    write has returned, and finished turns true a moment after the client sees the end.
    """

    path: str
    body: dict | None = None
    status: int = 0
    chunks: list = dataclasses.field(default_factory=list)
    sent_at: list = dataclasses.field(default_factory=list)
    text: str = ""
    thinking: str = ""
    final: dict | None = None
    client_closed: bool = False
    finished: bool = False
    fault: str = "none"
    tokens: int = 0
    tokens_per_second: float = 0.0  # the speed this request was paced at (before per-token jitter)


def _texts(chunk):
    """(response text, thinking text) carried by a generate or chat chunk."""
    source = chunk.get("message") or chunk
    return source.get("response", source.get("content", "")), source.get("thinking", "")


def _tally(record, chunk):
    text, thinking = _texts(chunk)
    record.text += text
    record.thinking += thinking
    if chunk.get("done"):
        record.final = chunk


class Recorder:
    """Owns the records; every change notifies waiters, so tests wait instead of polling."""

    def __init__(self):
        self._cond = threading.Condition()
        self._records = []

    def new(self, path, fault):
        """Start the record for a request."""
        record = RequestRecord(path=path, fault=fault)
        with self._cond:
            self._records.append(record)
            self._cond.notify_all()
        return record

    def update(self, record, **fields):
        """Set fields on a record."""
        with self._cond:
            for name, value in fields.items():
                setattr(record, name, value)
            self._cond.notify_all()

    def count_token(self, record):
        """Note one more sampled token."""
        with self._cond:
            record.tokens += 1
            self._cond.notify_all()

    def sent(self, record, chunk):
        """Note a chunk about to be written: recorded first, so a client that has read it finds it here."""
        with self._cond:
            record.chunks.append(chunk)
            _tally(record, chunk)
            self._cond.notify_all()

    def unsend(self, record):
        """The write of the last chunk failed: it was never sent after all."""
        with self._cond:
            record.chunks.pop()
            record.text, record.thinking, record.final = "", "", None
            for chunk in record.chunks:
                _tally(record, chunk)
            self._cond.notify_all()

    def flushed(self, record):
        """The last chunk's write returned: stamp its send time."""
        with self._cond:
            record.sent_at.append(time.time())
            self._cond.notify_all()

    def snapshot(self):
        """Deep copies, so callers never see a record change under them."""
        with self._cond:
            return copy.deepcopy(self._records)

    def wait_for(self, predicate, timeout):
        """Block until predicate(snapshot) is true; return the snapshot or raise TimeoutError."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self._records), timeout):
                raise TimeoutError(f"simulator records did not reach the expected state in {timeout}s")
            return copy.deepcopy(self._records)
