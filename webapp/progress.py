"""Progress arithmetic: token estimates, speed, ETA, honest percent. Standard library only."""
from collections import deque
from dataclasses import dataclass, field
from statistics import median

GENERATION_SHARE = 90.0  # generation fills 0-90 %; only completion shows 100 %
FALLBACK_EXPECTED_TOKENS = 300  # used when neither num_predict nor history says more
SPEED_WINDOW_SECONDS = 5.0
HISTORY_SIZE = 20


def estimate_tokens(piece):
    """Rough token count of one chunk's text: chunks are not tokens (OLLAMA.md §6). A chunk is
    usually one token; a merged chunk holds several words. Counting words undercounts long words
    a little, which is the safe side: Ollama's final eval_count replaces the estimate, and a
    count that overshot would have to go down."""
    if not piece:
        return 0
    return max(1, len(piece.split()))


def expected_tokens(num_predict, history):
    """(expected length, source): num_predict when set, else the median of earlier runs, else a fallback."""
    if num_predict and num_predict > 0:
        return num_predict, "num_predict"
    recent = [n for n in history if n and n > 0][:HISTORY_SIZE]
    if recent:
        return int(median(recent)), "history"
    return FALLBACK_EXPECTED_TOKENS, "fallback"


def generation_percent(tokens, expected, previous=0.0):
    """Percent for `tokens` of `expected`: never backwards, never 100 (only completion says 100)."""
    fraction = min(tokens / expected, 0.99) if expected and expected > 0 else 0.0
    return max(previous, round(GENERATION_SHARE * fraction, 1))


@dataclass
class Meter:
    """Live figures of one generation, fed with token counts and clock readings (seconds)."""

    started: float                       # when the worker took the job
    expected: int                        # expected completion tokens
    limit: int | None = None             # num_predict: the count can never pass it
    first_token_at: float | None = None
    tokens: int = 0
    percent: float = 0.0
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
        self.percent = generation_percent(self.tokens, self.expected, self.percent)
        speed = self.speed(now)
        return {
            "current_tokens": self.tokens,
            "tokens_per_second": round(speed, 2),
            "elapsed_time": int((now - self.started) * 1000),
            "estimated_time_remaining": eta_ms(self.tokens, self.expected, speed),
            "progress_percentage": self.percent,
        }

    def speed(self, now):
        """Tokens per second over the recent window, counted from the first token (load excluded)."""
        if self.first_token_at is None:
            return 0.0
        (t0, n0) = self.samples[0] if self.samples else (self.first_token_at, 0)
        if t0 < self.first_token_at or n0 == 0:
            t0, n0 = self.first_token_at, 0
        span = now - t0
        return (self.tokens - n0) / span if span >= 0.05 else 0.0


def eta_ms(tokens, expected, speed):
    """Milliseconds left at `speed`, or None when there is no honest figure."""
    if speed <= 0 or not expected or tokens >= expected:
        return None
    return int((expected - tokens) / speed * 1000)


def final_speed(eval_count, eval_duration_ns):
    """Ollama's own figure: eval_count / eval_duration * 1e9."""
    if not eval_count or not eval_duration_ns:
        return None
    return round(eval_count / eval_duration_ns * 1e9, 2)

