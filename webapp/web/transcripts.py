"""The watcher's copy of each watched job's text: read from the database once, piece by piece,
and handed to every stream of the process, which takes what its client has not seen yet."""
import bisect

from webapp import output
from webapp.output import KINDS, last_lines

TAIL_WINDOW = 400  # characters a card's last lines are taken from


class Parts:
    """One kind of text (answer or thinking) as a list of pieces: appending costs the piece, and
    reading from an offset costs what is read."""

    def __init__(self):
        self.starts, self.parts, self.length = [], [], 0

    def append(self, text):
        if text:
            self.starts.append(self.length)
            self.parts.append(text)
            self.length += len(text)

    def between(self, start, end):
        """The text from character `start` to `end`."""
        if start >= end:
            return ""
        first = max(0, bisect.bisect_right(self.starts, start) - 1)
        last = bisect.bisect_left(self.starts, end)
        joined = "".join(self.parts[first:last])
        offset = self.starts[first] if self.starts else 0
        return joined[start - offset:end - offset]


class LiveText:
    """One run's text and thinking. Only ever appended to: a new run is a new LiveText, so a View
    taken earlier keeps reading what it saw."""

    def __init__(self, attempt):
        self.attempt = attempt
        self.kinds = {kind: Parts() for kind in KINDS}

    def extend(self, new):
        for kind, text in new.items():
            self.kinds[kind].append(text)

    def lengths(self):
        return tuple(self.kinds[kind].length for kind in KINDS)

    def position(self):
        return (self.attempt, *self.lengths())

    def view(self):
        return View(self, self.lengths())


class View:
    """A transcript as it stood at one tick: what a snapshot of that tick carries."""

    def __init__(self, transcript, lengths):
        self.transcript, self.lengths = transcript, dict(zip(KINDS, lengths, strict=True))
        self.attempt = transcript.attempt

    def since(self, kind, start):
        return self.transcript.kinds[kind].between(start, self.lengths[kind])

    def tail(self):
        end = self.lengths["text"]
        return last_lines(self.since("text", max(0, end - TAIL_WINDOW)))

    def position(self):
        return self.attempt, self.lengths["text"], self.lengths["thinking"]


def missing(view, position):
    """What a client at `position` ((attempt, text chars, thinking chars); None: nothing yet)
    lacks of `view`: ({kind: (offset, text)}, reset, the client's position after it), or None
    while the view is behind the client (a later tick brings it)."""
    have = position or (view.attempt, 0, 0)
    if output.follows(have, view.position()):
        starts, reset = have[1:], False
    elif have[0] >= view.attempt:
        return None
    else:
        starts, reset = (0, 0), True  # an earlier run's text: start over
    texts = {kind: (start, view.since(kind, start)) for kind, start in zip(KINDS, starts, strict=True)}
    return texts, reset, view.position()
