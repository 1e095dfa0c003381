"""What a run has generated so far, and how much of it the database already has."""
from webapp.output import KINDS


class Transcript:
    """The answer and the thinking, each as the pieces Ollama sent. Each progress write takes
    what is new since the last write that landed; a write that fails leaves it for the next one,
    so nothing is skipped and nothing is written twice. Callers hold the run's lock."""

    def __init__(self):
        self.parts = {kind: [] for kind in KINDS}
        self.written = dict.fromkeys(KINDS, 0)  # characters the database holds, per kind
        self.pending = {kind: [] for kind in KINDS}

    def add(self, kind, piece):
        if piece:
            self.parts[kind].append(piece)
            self.pending[kind].append(piece)

    def unwritten(self):
        """{kind: (offset, text)} of what the database does not have yet, and a token to pass to
        `landed` once it has it."""
        new = {kind: (self.written[kind], "".join(self.pending[kind])) for kind in KINDS}
        return new, {kind: len(self.pending[kind]) for kind in KINDS}

    def landed(self, new, taken):
        for kind in KINDS:
            del self.pending[kind][:taken[kind]]
            self.written[kind] += len(new[kind][1])

    def whole(self, kind):
        return "".join(self.parts[kind])

    def chars(self, new):
        """The row's character counts once `new` has landed."""
        return {"output_chars": new["text"][0] + len(new["text"][1]),
                "thinking_chars": new["thinking"][0] + len(new["thinking"][1])}
