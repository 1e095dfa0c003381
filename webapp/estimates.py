"""Learned estimates, standard library only: what kind of answer a prompt asks for, the spread of
this server's earlier output lengths (Kaplan-Meier, so a run cut at num_predict counts as "at
least N"), the length to expect given what has been generated so far, and the time left with a
range that says how sure it is."""
import math
import re
from dataclasses import dataclass, field
from statistics import median

RANGE = (0.2, 0.8)    # the range shown holds the truth 60 % of the time: its 20th to 80th percentile
CALIBRATION_RUNS = 60  # newest runs replayed to learn how far off the point estimate tends to be
PRIOR_SPREAD = (0.4, 2.5)  # how far off, until a model has enough runs to say
MIN_RUNS = 3          # runs (still going at the current count) a prompt kind needs before it is trusted
# Past every earlier run, history says nothing (and past all but one or two, little), so the
# guess moves on instead of parking: with nothing known of where a run ends, what has been
# generated is as likely any share of the whole as another, so the whole's q-quantile is the
# length known reached (this run's count, or further when an earlier run was cut past it) over
# (1 - q): twice it for the point, 1.25 and 5 times it for the range.
PAST_HISTORY = {q: 1 / (1 - q) for q in (0.5, *RANGE)}

# Words people use to ask for a length or a count, checked in this order.
NUMBER = r"(\d{1,3}|two|three|four|five|six|seven|eight|nine|ten|a dozen)"
HINTS = (
    ("word", re.compile(r"\b(one|single|1|a)[- ]word\b|\bin a word\b|\byes or no\b|\b\d{1,2} words\b")),
    ("sentence", re.compile(r"\b(one|a single|1|a) (short )?sentence\b|\b" + NUMBER + r" sentences\b")),
    ("list", re.compile(r"\b(list|top)\b.{0,20}?\b" + NUMBER + r"\b|\b" + NUMBER + r" (\w+ )?\w+s\b")),
    ("long", re.compile(r"\b(essay|in detail|detailed|comprehensive|step by step|thorough(ly)?|lengthy|"
                        r"in depth|in-depth|at length|article|story|elaborate)\b|\blong\b(?! is| does| do)")),
    ("short", re.compile(r"\b(brief(ly)?|short|concise(ly)?|succinct(ly)?|in a few words|tl;?dr|sum up|"
                         r"summar(y|ise|ize))\b")),
)


def prompt_kind(prompt, system=None):
    """A small key for prompts that ask for answers of a like length: the hint, the prompt's size,
    and whether a system prompt shapes the answer (e.g. 'list:m:s', 'plain:s:-')."""
    text = f"{system or ''}\n{prompt}".lower()
    hint = next((name for name, pattern in HINTS if pattern.search(text)), "plain")
    words = len(prompt.split())
    size = "s" if words < 25 else "m" if words < 200 else "l"
    return f"{hint}:{size}:{'s' if system else '-'}"


@dataclass(frozen=True)
class Run:
    """One earlier completed generation: its output length, whether num_predict cut it, its kind."""

    tokens: int
    cut: bool = False
    kind: str = "plain:s:-"
    speed: float | None = None  # tokens/s, Ollama's own figure


def survival(runs):
    """Kaplan-Meier steps [(length, share of runs longer than it)]: a cut run is known to go at
    least that far, so it stays in the count up to its length and is never taken as an end."""
    steps, at_risk, share = [], len(runs), 1.0
    ordered = sorted(runs, key=lambda run: run.tokens)
    i = 0
    while i < len(ordered):
        length, ended, cut = ordered[i].tokens, 0, 0
        while i < len(ordered) and ordered[i].tokens == length:
            cut, ended, i = cut + ordered[i].cut, ended + (not ordered[i].cut), i + 1
        if ended:
            share *= 1 - ended / at_risk
            steps.append((length, share))
        at_risk -= ended + cut
    return steps


def share_beyond(steps, seen):
    """The share of runs that went past `seen` tokens."""
    share = 1.0
    for length, value in steps:
        if length > seen:
            break
        share = value
    return share


def conditional_quantile(steps, seen, q):
    """The length by which a `q` share of runs that went past `seen` had ended, or None when the
    history does not reach that far."""
    start = share_beyond(steps, seen)
    if start <= 0:
        return None
    level = start * (1 - q)
    later = [step for step in steps if step[0] > seen]
    for i, (length, share) in enumerate(later):
        if math.isclose(share, level, rel_tol=1e-9, abs_tol=1e-12):
            # The share sits at the level all the way to the next end (an even count, say): the
            # quantile is halfway there, as a median of two is. The lower end would expect a
            # run to stop at the next length history saw, which with few runs left is too soon.
            return (length + later[i + 1][0]) / 2 if i + 1 < len(later) else length
        if share < level:
            return length
    return None


def runs_for(runs, kind, seen):
    """The runs to learn from: those of this exact kind, else of this hint, else all of the
    model's, whichever first has enough runs still going at `seen`."""
    hint = kind.split(":")[0]
    for keep in (lambda run: run.kind == kind, lambda run: run.kind.split(":")[0] == hint):
        chosen = [run for run in runs if keep(run)]
        if sum(run.tokens > seen for run in chosen) >= MIN_RUNS:
            return chosen
    return runs


@dataclass(frozen=True)
class Length:
    """Expected total output length (tokens) with its range."""

    point: float
    low: float
    high: float


def expected_length(runs, kind, seen, limit=None):
    """The length to expect given `seen` tokens so far (capped at num_predict `limit`), or None
    without history. Passing every earlier run moves the guess instead of parking it."""
    if not runs:
        return None
    chosen = runs_for(runs, kind, seen)
    steps = survival(chosen)
    # Where the spread runs out (every run so far ended, or the longest were cut by their
    # num_predict), go on from the furthest that any of them is known to have reached.
    reach = max([seen] + [run.tokens for run in chosen])
    thin = sum(run.tokens > seen for run in chosen) < MIN_RUNS
    values = [tail_quantile(steps, seen, q, reach, thin) for q in (0.5, *RANGE)]
    point, low, high = (max(v, seen + 1) for v in values)
    if limit:
        point, low, high = (min(v, limit) for v in (point, low, high))
    return Length(point, low, high)


def tail_quantile(steps, seen, q, reach, thin):
    """The q-quantile of the length given `seen`: the history's, else (past its reach) `reach`
    moved on by PAST_HISTORY[q]. A thin tail (fewer than MIN_RUNS runs went past `seen`) says
    little of where this run ends: the one run history saw beyond `seen` may have ended a token
    later, while this one goes on. So the guess is never below `seen` moved on as far."""
    value = conditional_quantile(steps, seen, q)
    if value is None:
        return reach * PAST_HISTORY[q] + 1
    return max(value, seen * PAST_HISTORY[q] + 1) if thin else value


def quantile(values, q):
    """The q-quantile of a list of numbers (linear between order statistics), or None."""
    if not values:
        return None
    ordered = sorted(values)
    at = q * (len(ordered) - 1)
    lower = math.floor(at)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (at - lower)


@dataclass
class History:
    """What this server learned of one model from its completed jobs (newest first)."""

    runs: list = field(default_factory=list)          # Run per completed job
    speeds: list = field(default_factory=list)        # tokens/s, Ollama's own figure
    _spread: tuple | None = field(default=None, repr=False)
    loads_cold: list = field(default_factory=list)    # seconds, model was not loaded
    loads_warm: list = field(default_factory=list)    # seconds, model was loaded
    prompt_rates: list = field(default_factory=list)  # seconds per prompt token

    def __bool__(self):
        """True once anything was learned."""
        return bool(self.runs)

    def speed(self):
        return median(self.speeds) if self.speeds else None

    def spread(self):
        """(low, high) multipliers of the remaining length that hold the truth RANGE of the
        time, learned by replaying this model's newest runs against the others (a split
        conformal check): the point estimate's own record, not the spread of lengths alone."""
        if self._spread is None:
            ratios = [ratio for i in range(min(len(self.runs), CALIBRATION_RUNS)) for ratio in self._replay(i)]
            self._spread = PRIOR_SPREAD if len(ratios) < 10 else (
                min(quantile(ratios, RANGE[0]), 1.0), max(quantile(ratios, RANGE[1]), 1.0))
        return self._spread

    def _replay(self, i):
        """True remaining over estimated remaining, for run i at a quarter, half and three
        quarters of its length, estimated from the other runs."""
        run, others = self.runs[i], self.runs[:i] + self.runs[i + 1:]
        # A run faster or slower than usual is off by that much too (the learned speed is used
        # until the run's own can be trusted).
        pace = self.speed() / run.speed if run.speed and self.speeds else 1.0
        for seen in {int(run.tokens * share) for share in (0.25, 0.5, 0.75)}:
            length = expected_length(others, run.kind, seen, run.tokens if run.cut else None)
            if length is not None and length.point > seen:
                yield (run.tokens - seen) / (length.point - seen) * pace

    def load(self, cold, q=0.5):
        """Learned load time (s) of a cold or warm start; the other kind when one has none."""
        loads = (self.loads_cold or self.loads_warm) if cold else (self.loads_warm or self.loads_cold)
        return quantile(loads, q) or 0.0

    def prompt_time(self, prompt_tokens, q=0.5):
        return (quantile(self.prompt_rates, q) or 0.0) * prompt_tokens


@dataclass(frozen=True)
class Estimate:
    """Time left in milliseconds: the point estimate and the range around it."""

    point: int
    low: int
    high: int

    def plus(self, seconds_point, seconds_low, seconds_high):
        return Estimate(self.point + ms(seconds_point), self.low + ms(seconds_low), self.high + ms(seconds_high))


def ms(seconds):
    return int(max(seconds, 0.0) * 1000)


def generating_left(history, kind, seen, limit, speed, length=None):
    """Time left while tokens arrive: the rest of the expected length (given, or worked out) at
    `speed` tokens/s, and its range as far off as this model's estimates have tended to be."""
    length = length or expected_length(history.runs, kind, seen, limit)
    speed = speed or history.speed()
    if length is None or not speed:
        return None
    rest = length.point - seen
    low, high = (rest * factor for factor in history.spread())
    if limit:
        high = min(high, limit - seen)
    return Estimate(ms(rest / speed), ms(min(low, rest) / speed), ms(max(high, rest) / speed))


def before_first_token_left(history, kind, limit, cold, prompt_tokens, waited):
    """Time left before any token: the rest of the load and the prompt's reading (learned), then
    the whole expected answer. `waited` is the time since the claim (s)."""
    answer = generating_left(history, kind, 0, limit, None)
    if answer is None:
        return None
    ahead = [history.load(cold, q) + history.prompt_time(prompt_tokens, q) - waited for q in (0.5, *RANGE)]
    return answer.plus(*ahead)


def most_at_once(spans):
    """The most of these (start, end) spans that were under way at one moment: how many jobs
    this server ran side by side. A span ending as another starts is one slot used twice."""
    moments = sorted([(start, 1) for start, _end in spans] + [(end, -1) for _start, end in spans])
    running = most = 0
    for _moment, change in moments:  # at one moment ends (-1) sort before starts (+1)
        running += change
        most = max(most, running)
    return most


def queued_left(run, place, slots, per_slot):
    """Time left for a queued job whose own run is estimated as `run` (before_first_token_left):
    its place in line at this server's pace (`slots` jobs at a time, each taking `per_slot`
    seconds as (median, low, high)), then that run."""
    if run is None or not per_slot:
        return run
    return run.plus(*(place * seconds / max(slots, 1) for seconds in per_slot))


def batch_left(queued, running, per_item, server_slots=1):
    """Time left for a batch: its queued items at the pace of the slots serving it now or, while
    none is, of the slots this server runs side by side (history.pace), plus what is left of those
    running (half an item each, on average). `per_item` is an item's time in seconds as (median,
    low, high)."""
    slots = running or max(server_slots, 1)
    rounds = queued / slots + (0.5 if running else 0.0)
    return Estimate(*(ms(rounds * seconds) for seconds in per_item))


def batch_item_time(own_mean, pace):
    """An item's time (s) as (median, low, high): the batch's own mean once it has one, spread as
    this server's jobs spread (`pace`: its median, 20th and 80th percentile); else the pace."""
    if pace is None:
        return None if own_mean is None else (own_mean, own_mean, own_mean)
    if own_mean is None:
        return pace
    median_took = pace[0] or 1.0
    return own_mean, own_mean * pace[1] / median_took, own_mean * pace[2] / median_took
