"""What `flask jobs watch` draws with rich: the bar, the job's figures, and the end of its text."""
from rich.console import Group
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.text import Text

from webapp import statuses
from webapp.progress import duration_text as duration  # the card and the terminal say it alike

PHASES = {"waiting_model": "loading the model", "thinking": "thinking", "generating": "generating",
          "saving": "saving"}
SOON_MS = 1000  # less than this left reads "any moment now": no figure would be honest


class Seen:
    """What the watcher knows of the job: its latest figures, its text, and how it ended."""

    def __init__(self):
        self.figures, self.text, self.attempt, self.ended = {}, "", None, None

    def take(self, name, data):
        """One event of the stream (`ping`, `timeout` and `thinking` change nothing shown)."""
        if name == "output":
            self._add_text(data)
        elif name == "progress":
            self.figures = data  # a progress event leaves out what is unknown now: drop it too
        elif name == "complete":
            self.figures, self.ended = {**self.figures, **data, "progress": 100}, statuses.COMPLETED
        elif name == "error":
            self.figures, self.ended = {**self.figures, **data}, data["status"]

    def _add_text(self, data):
        if data.get("reset") or data["attempt"] != self.attempt:  # a new run starts the text over
            self.text, self.attempt = "", data["attempt"]
        self.text = self.text[:data["offset"]] + data["text"]

    def position(self):
        """(attempt, characters): how much of the text this watcher has."""
        return self.attempt, len(self.text)


class Screen:
    """The live view of a `Seen` job; rich's Live calls `__rich__` at each refresh. Once `done`,
    a completed job's text leaves the view: it is printed whole, to stdout."""

    def __init__(self, console, seen):
        self.console, self.seen, self.done = console, seen, False
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(bar_width=None), TaskProgressColumn(),
                            console=console, auto_refresh=False, expand=True)
        self.task = self.bar.add_task("connecting", total=100)

    def __rich__(self):
        figures, ended = self.seen.figures, self.seen.ended
        self.bar.update(self.task, completed=figures.get("progress", 0), description=headline(figures, ended))
        parts = [self.bar, Text(" · ".join(stats(figures, ended)))]
        if ended in (statuses.FAILED, statuses.CANCELLED):
            parts.append(Text(figures.get("error", ended), style="red"))
        if self.seen.text and not (self.done and ended == statuses.COMPLETED):
            parts.append(self._tail())
        return Group(*parts)

    def _tail(self):
        """The end of the text, as many lines as the terminal leaves room for."""
        width, rows = max(20, self.console.width - 4), max(3, self.console.height - 8)
        lines = Text(self.seen.text[-rows * width:]).wrap(self.console, width)
        return Panel(Text("\n").join(lines[-rows:]), title="text", title_align="left", border_style="dim")


def headline(figures, ended):
    if ended:
        return ended
    if figures.get("status") == statuses.QUEUED:
        place = figures.get("queue_position")
        return f"queued, number {place} in line" if place else "queued"
    return PHASES.get(figures.get("phase"), figures.get("status", "connecting"))


def stats(figures, ended):
    """Tokens, speed, elapsed and the time left (a queued job: how long it has waited)."""
    tokens = figures.get("completion_tokens") if ended == statuses.COMPLETED else figures.get("current_tokens")
    shown = [f"{tokens or 0} tokens", f"{figures.get('tokens_per_second') or 0:.1f} tok/s"]
    if figures.get("thinking_tokens"):
        shown.append(f"{figures['thinking_tokens']} thinking")
    if figures.get("status") == statuses.QUEUED:
        shown.append(f"waiting {duration(figures.get('time_since_submit'))}")
    else:
        shown.append(f"elapsed {duration(figures.get('elapsed_time'))}")
    if not ended and figures:
        shown.append(time_left(figures))
    return shown


def time_left(figures):
    """'about 20.0 s left (12.0 s–31.0 s)': the point estimate and its range, when there is one."""
    left, low, high = (figures.get(f"estimated_remaining{end}") for end in ("", "_low", "_high"))
    if left is None:
        return "no estimate yet"
    if left < SOON_MS:
        return "any moment now"
    spread = f" ({duration(low)}–{duration(high)})" if low is not None and high is not None else ""
    return f"about {duration(left)} left{spread}"


