"""The fault switch: which misbehaviour the next generate/chat requests get."""

import threading

FAULTS = (
    "none",
    "unknown_model",
    "bad_request",
    "busy",
    "load_fail",
    "error_midstream",
    "eof",
    "stall",
    "drop",
    "thinking",
    "merged",
    "missing_metrics",
)

# Faults that end the request with a real status before any chunk exists.
BAD_REQUEST = {
    "generate": "json: cannot unmarshal number into Go struct field GenerateRequest.prompt of type string",
    "chat": "json: cannot unmarshal number into Go struct field ChatRequest.messages of type []api.Message",
}
BUSY = "server busy, please try again.  maximum pending requests exceeded"  # two spaces, verbatim
LOAD_FAIL = "timed out waiting for llama runner to start - progress 0.00 - "
MIDSTREAM_ERROR = "an error was encountered while running the model: unexpected EOF"


class FaultSwitch:
    """Holds the current fault; with times=N it reverts to "none" after N requests."""

    def __init__(self, fault="none"):
        self._lock = threading.Lock()
        self._fault = "none"
        self._left = None
        self.set(fault)

    def set(self, fault, times=None):
        """Apply fault to the following requests (all of them, or only the next `times`)."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {', '.join(FAULTS)}")
        if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 0):
            raise ValueError(f"times must be a non-negative integer or None, not {times!r}")
        with self._lock:
            self._fault, self._left = (fault, times) if times != 0 else ("none", None)

    def take(self):
        """The fault for a request that is starting now; counts it against `times`."""
        with self._lock:
            fault = self._fault
            if self._left is not None:
                self._left -= 1
                if self._left <= 0:
                    self._fault, self._left = "none", None
            return fault
