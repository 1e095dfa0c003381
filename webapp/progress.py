"""Progress arithmetic: token counts, live speed, the bar, and the time left as the worker writes
them. Standard library only (and the learned estimates, which are too)."""
from collections import deque
from dataclasses import dataclass, field

from webapp.estimates import History, before_first_token_left, expected_length, generating_left

GENERATION_SHARE = 90.0  # generation fills 0-90 %; only completion shows 100 %
BAR_CAP = GENERATION_SHARE * 0.999
MIN_STEP = 0.01  # the bar's smallest move when tokens came (what a 2-decimal percent can show)
FALLBACK_EXPECTED_TOKENS = 300  # the bar's guess when neither num_predict nor history says more
SPEED_WINDOW_SECONDS = 5.0
TRUSTED_SPEED_SECONDS = 1.0  # this run's own speed beats history's after this long
TRUSTED_SPEED_TOKENS = 5     # and this many tokens
CHARS_PER_TOKEN = 4  # a prompt's token count before Ollama says it


def estimate_tokens(piece):
    """Rough token count of one chunk's text: chunks are not tokens (OLLAMA.md §6). A chunk is
    usually one token; a merged chunk holds several words. Counting words undercounts long words
    a little, which is the safe side: Ollama's final eval_count replaces the estimate, and a
    count that overshot would have to go down."""
    if not piece:
        return 0
    return max(1, len(piece.split()))


def advance_percent(previous, previous_tokens, tokens, ahead_of):
    """The bar after `tokens` (it was at `previous` with `previous_tokens`): the part of the bar
    still ahead stands for the tokens up to `ahead_of` (a generous guess of the total, so a long
    answer leaves room), and every new token moves it at least a visible step. Never
    backwards, never 100 (only completion says 100)."""
    if tokens <= previous_tokens or not ahead_of:
        return previous
    ahead = max(ahead_of - previous_tokens, tokens - previous_tokens, 1)
    moved = previous + (BAR_CAP - previous) * (tokens - previous_tokens) / ahead
    return round(min(max(moved, previous + MIN_STEP), BAR_CAP), 2)


@dataclass
class Meter:
    """Live figures of one generation, fed with token counts and clock readings (seconds), and
    what this server learned of the model (`history`) for the time left."""

    started: float                       # when the worker took the job
    history: History = field(default_factory=History)
    kind: str = "plain:s:-"              # the prompt's kind (estimates.prompt_kind)
    limit: int | None = None             # num_predict: the count can never pass it
    cold: bool = False                   # the model was not loaded when the job was taken
    prompt_tokens: int = 0               # guessed from the prompt's length
    first_token_at: float | None = None
    tokens: int = 0
    percent: float = 0.0
    percent_tokens: int = 0              # the count the bar last moved for
    samples: deque = field(default_factory=lambda: deque(maxlen=64))

    def add(self, count, now):
        """Count `count` more (estimated) tokens seen at `now`."""
        if count and self.first_token_at is None:
            self.first_token_at = now
        self.tokens += count
        if self.limit:
            self.tokens = min(self.tokens, self.limit)

    def sample(self, now):
        """Take a reading for a progress write; returns the row's live fields."""
        self.samples.append((now, self.tokens))
        while len(self.samples) > 2 and now - self.samples[0][0] > SPEED_WINDOW_SECONDS:
            self.samples.popleft()
        speed = self.speed(now)
        length = expected_length(self.history.runs, self.kind, self.tokens, self.limit)
        expected, generous = self.expected(length)
        self.percent = advance_percent(self.percent, self.percent_tokens, self.tokens, generous)
        self.percent_tokens = max(self.percent_tokens, self.tokens)
        left = self.time_left(now, speed, length)
        return {
            "current_tokens": self.tokens,
            "tokens_per_second": round(speed, 2),
            "elapsed_time": int((now - self.started) * 1000),
            "expected_tokens": round(expected),
            "estimated_time_remaining": left and left.point,
            "estimated_time_remaining_low": left and left.low,
            "estimated_time_remaining_high": left and left.high,
            "progress_percentage": self.percent,
        }

    def expected(self, length):
        """(the total length to expect, a generous one for the bar): the learned `length`,
        conditional on the count so far, else num_predict or a fallback."""
        if length is not None:
            return length.point, length.high
        guess = max(self.limit or FALLBACK_EXPECTED_TOKENS, self.tokens + 1)
        return guess, guess

    def time_left(self, now, speed, length):
        """The learned Estimate of the time left, or None while the model has no history."""
        if self.first_token_at is None:
            return before_first_token_left(self.history, self.kind, self.limit, self.cold,
                                           self.prompt_tokens, now - self.started)
        trusted = now - self.first_token_at >= TRUSTED_SPEED_SECONDS and self.tokens >= TRUSTED_SPEED_TOKENS
        return generating_left(self.history, self.kind, self.tokens, self.limit, speed if trusted else None, length)

    def speed(self, now):
        """Tokens per second over the recent window, counted from the first token (load excluded)."""
        if self.first_token_at is None:
            return 0.0
        (t0, n0) = self.samples[0] if self.samples else (self.first_token_at, 0)
        if t0 < self.first_token_at or n0 == 0:
            t0, n0 = self.first_token_at, 0
        span = now - t0
        return (self.tokens - n0) / span if span >= 0.05 else 0.0


def prompt_tokens_guess(prompt, system=None):
    return (len(prompt) + len(system or "")) // CHARS_PER_TOKEN + 10


def final_speed(eval_count, eval_duration_ns):
    """Ollama's own figure: eval_count / eval_duration * 1e9."""
    if not eval_count or not eval_duration_ns:
        return None
    return round(eval_count / eval_duration_ns * 1e9, 2)


def duration_text(ms):
    """'1.2 s', '3 min 05 s'; an em dash when unknown (the card's and the terminal's words)."""
    if ms is None:
        return "—"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes} min {seconds:02d} s"
