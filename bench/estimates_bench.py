"""Estimates benchmark: how far off is the "time remaining" people are shown?

    .venv/bin/python bench/estimates_bench.py [--jobs 160] [--tps 80] [--seed 1] [--out DIR]
                                              [--database-url URL] [--timeout SECONDS]

A run of 160 jobs takes about 2.5 minutes on 2 cores (--tps sets the pace: higher is shorter).

It replays a day-like mix of generation jobs through the real worker (`python worker.py`, one
process, WORKER_CONCURRENCY=4) against the simulated Ollama in its realistic mode, and scores the
ETA people see against three other estimators computed offline from the same run.

The mix (seeded, so a run repeats): two models (llama3.2, qwen2.5:0.5b); prompts worded the way
people ask for short and long answers ("in one word", "in one sentence", "give me a list of 5",
plain questions, "explain in detail", "write an essay", "briefly"...), each made unique by a job
number and a topic; 40 % of jobs set options.num_predict to a value people pick (64 ... 1024).
The simulator varies each request's speed by +-20 %, loads a cold model in 0-3 s and unloads it
after a short keep_alive, so cold loads recur. Arrivals are Poisson, alternating busy and quiet
stretches sized from the mix's expected work, so a queue forms at times and models go cold in
the lulls. Jobs are submitted with the product's own `queue.enqueue`.

While jobs run, this process reads every live job every ~150 ms exactly as the status route
builds it (`snapshots_of(queue.get_many(ids))`): that is "new", what people are shown. Truth per
job comes from the clock at submit, the row's started_at (the claim) and the simulator's record
(each token's send time, the done chunk's time, eval_count, load_duration, done_reason). A job
"ended before t" when the simulator sent its done chunk before t: that is the history the offline
estimators may learn from. Only jobs that completed in one attempt are scored.

Four estimators of the time left at a moment t, all plain functions of the recorded events:
  new        the last snapshot read at or before t (estimated_remaining, and the
             estimated_remaining_low/high range when the product sends one), counted down from
             when it was read, as the card counts it down between updates;
  today      today's rule, offline: num_predict, else the median length of the model's last 20
             jobs that ended before t, else 300; speed over a 5 s window from the first token;
             nothing while queued or loading;
  original   the original design's rule: 2.5 x prompt tokens at tokens / time since the claim;
  reference  a simple learned rule: the median length of the model's earlier runs that went past
             the current count (capped at num_predict), at the job's own speed once tokens come
             (else the median earlier speed), plus the rest of the median earlier load before the
             first token; nothing while queued.

Scores: at 25, 50 and 75 % of each job's generation (first token -> done) and of its whole wait
(submit -> done), each estimator's remaining vs the true remaining as the factor it is off,
max(shown/true, true/shown) - 1, capped at 10; a blank or a 0 counts as 10. A job's score is the
mean of its three points; the table gives the median and p90 over jobs. Also: the share of time
with no ETA (on a 100 ms grid over each job: queued = submit -> claim, loading = claim -> first
token, generating = first token -> done), how long the bar sat still while tokens came (every
stretch of one `progress` value longer than 3 s during which current_tokens grew, counted
whole), the range's coverage (it claims 60 %), backwards steps and early 100s of the bar, and
the live speed (tokens_per_second of the last live snapshot) against eval_count / eval_duration.

A table goes to stdout and the same figures as JSON (with every job's events) to
bench/results/estimates-<timestamp>.json, or to DIR/estimates-<timestamp>.json with --out DIR.
The database is a SQLite file in a temporary directory unless --database-url names a MySQL/MariaDB
database whose name contains "bench" (its tables are dropped and migrated afresh). The run is
bounded (--timeout) and the worker is killed on any exit.
"""
import argparse
import bisect
import json
import math
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from flask_migrate import upgrade  # noqa: E402

from bench.worker_bench import WorkerProcess, git_describe, redact  # noqa: E402
from simulator import Simulator, lengths  # noqa: E402
from webapp import create_app, queue, statuses  # noqa: E402
from webapp.extensions import db  # noqa: E402
from webapp.models import Job  # noqa: E402
from webapp.snapshots import snapshots_of  # noqa: E402

RESULTS = ROOT / "bench" / "results"

# --- the job mix ---------------------------------------------------------------------------------
MODELS = (("llama3.2", 0.6), ("qwen2.5:0.5b", 0.4))
NUM_PREDICT_SHARE = 0.4
NUM_PREDICTS = ((64, 0.15), (128, 0.25), (256, 0.25), (512, 0.2), (1024, 0.15))
TOPICS = (
    "the water cycle", "sourdough bread", "black holes", "compound interest", "the French Revolution",
    "TCP congestion control", "photosynthesis", "the immune system", "jazz improvisation", "Kubernetes",
    "climate change", "the stock market", "meditation", "the Roman Empire", "quantum computing",
    "vaccines", "electric cars", "chess openings", "the printing press", "plate tectonics",
    "coffee roasting", "machine learning", "the Renaissance", "marathon training", "volcanoes",
    "the human heart", "recursion in programming", "honey bees", "supply and demand", "solar panels",
)
# (kind, weight, phrasings): how people ask for short and long answers.
ASKS = (
    ("word", 6, ("In one word, how would you describe {topic}?", "Describe {topic} in one word.",
                 "What's the single word that sums up {topic}?")),
    ("yes-no", 4, ("Yes or no: is it hard to learn about {topic}?",
                   "Should I spend a weekend reading about {topic}? Yes or no.")),
    ("sentence", 10, ("Explain {topic} in one sentence.", "In a sentence, what's the deal with {topic}?",
                      "Can you sum up {topic} in two sentences?")),
    ("list", 12, ("Give me a list of 5 facts about {topic}.", "List 10 tips for getting into {topic}.",
                  "What are 3 reasons people care about {topic}?", "Suggest 7 books about {topic}.")),
    ("plain", 30, ("What is there to know about {topic}?", "How would you explain {topic} to a friend?",
                   "Why should I care about {topic}?",
                   "Tell me about {topic}.", "What should a beginner know about {topic}?")),
    ("brief", 12, ("Briefly, what matters about {topic}?", "Give me a short overview of {topic}.",
                   "Summarise {topic} in a few words.", "What's the point of {topic}? Keep it brief.")),
    ("detail", 14, ("Explain {topic} in detail.", "Can you walk me through {topic} step by step?",
                    "Give me a detailed explanation of {topic}.")),
    ("essay", 8, ("Write an essay about {topic}.", "Write a long, thorough article on {topic}.",
                  "Write a comprehensive guide to {topic}.")),
)
BUSY, QUIET = 1.7, 0.3  # arrival rate multipliers of the alternating stretches (mean 1)


@dataclass(frozen=True)
class Planned:
    """One job to submit: `at` seconds after the start."""

    n: int
    prompt: str
    model: str
    kind: str
    num_predict: int | None
    at: float = 0.0

    @property
    def options(self):
        return {"num_predict": self.num_predict} if self.num_predict else None


def weighted(rng, pairs):
    values, weights = zip(*pairs, strict=True)
    return rng.choices(values, weights=weights)[0]


def plan_jobs(count, rng):
    """The prompts, models and num_predicts of `count` jobs (no arrival times yet)."""
    jobs = []
    for n in range(1, count + 1):
        kind, _, phrasings = rng.choices(ASKS, weights=[ask[1] for ask in ASKS])[0]
        prompt = f"#{n}. " + rng.choice(phrasings).format(topic=rng.choice(TOPICS))
        num_predict = weighted(rng, NUM_PREDICTS) if rng.random() < NUM_PREDICT_SHARE else None
        jobs.append(Planned(n, prompt, weighted(rng, MODELS), kind, num_predict))
    return jobs


def mean_service_seconds(jobs, tps, rng, draws=100):
    """Expected seconds one job holds a worker slot: its length (the simulator's own draw, cut at
    num_predict) at `tps`, plus about half a second for loads, prompt reading and writes."""
    means = []
    for job in jobs:
        cap = job.num_predict or math.inf
        tokens = statistics.fmean(min(lengths.draw(job.model, job.prompt, rng), cap) for _ in range(draws))
        means.append(tokens / tps + 0.5)
    return statistics.fmean(means)


def arrival_offsets(count, rate, rng, stretch):
    """Poisson arrivals at `rate` jobs/s on average, BUSY x rate and QUIET x rate in alternating
    stretches of `stretch` seconds (thinning); the first job arrives at 0."""
    offsets, t = [0.0], 0.0
    while len(offsets) < count:
        t += rng.expovariate(rate * BUSY)
        busy = int(t // stretch) % 2 == 0
        if rng.random() < (1.0 if busy else QUIET / BUSY):
            offsets.append(t)
    return offsets


def make_mix(args):
    """The seeded jobs with their arrival times, and the arrival rate chosen."""
    rng = random.Random(f"mix\x00{args.seed}")
    jobs = plan_jobs(args.jobs, rng)
    service = mean_service_seconds(jobs, args.tps, random.Random(f"service\x00{args.seed}"))
    rate = args.utilisation * args.concurrency / service
    offsets = arrival_offsets(args.jobs, rate, rng, args.stretch)
    return [Planned(**{**asdict(job), "at": at}) for job, at in zip(jobs, offsets, strict=True)], rate, service


# --- running it ----------------------------------------------------------------------------------
def epoch(stamp):
    """A naive-UTC datetime from the database as time.time() seconds."""
    return stamp.replace(tzinfo=UTC).timestamp() if stamp else None


def prepare_database(url, force):
    """Fresh tables: on MySQL/MariaDB drop every table of the (bench) database, then migrate."""
    parsed = sa.engine.make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        if "bench" not in (parsed.database or "") and not force:
            sys.exit(f"refusing to drop tables in database {parsed.database!r}: its name does not "
                     "contain 'bench' (pass --force to do it anyway)")
        engine = sa.create_engine(url)
        try:
            tables = sa.MetaData()
            tables.reflect(engine)
            tables.drop_all(engine)
        finally:
            engine.dispose()
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench"})
    with app.app_context():
        upgrade()
    return app


def worker_env(args, url, ollama_url):
    env = {key: value for key, value in os.environ.items()
           if key not in ("OLLAMA_HOST", "LIVEGEN_SIMULATOR", "DATABASE_URL")}
    env.update({"DATABASE_URL": url, "OLLAMA_URL": ollama_url, "WORKER_CONCURRENCY": str(args.concurrency),
                "PROGRESS_INTERVAL": str(args.interval), "SECRET_KEY": "bench", "LEASE_SECONDS": "30",
                "SHUTDOWN_GRACE": "5", "MAX_ATTEMPTS": "3", "OLLAMA_READ_TIMEOUT": "60",
                "PYTHONUNBUFFERED": "1"})
    return env


@dataclass(frozen=True)
class Sample:
    """One job's snapshot as read at `at` (time.time()); times left in seconds."""

    at: float
    status: str
    phase: str | None
    tokens: int
    speed: float
    progress: float
    remaining: float | None
    low: float | None
    high: float | None
    position: int | None


def seconds(ms):
    return None if ms is None else ms / 1000


def sample_of(snap, at):
    return Sample(at, snap["status"], snap.get("phase"), snap.get("current_tokens") or 0,
                  snap.get("tokens_per_second") or 0.0, snap.get("progress") or 0.0,
                  seconds(snap.get("estimated_remaining")), seconds(snap.get("estimated_remaining_low")),
                  seconds(snap.get("estimated_remaining_high")), snap.get("queue_position"))


def submit(job):
    """Enqueue one job (inside an app context); returns (pk, public id, submit time)."""
    at = time.time()  # the moment the person pressed the button
    row = queue.enqueue(prompt=job.prompt, model=job.model, options=job.options)
    pk, job_id = row.id, row.job_id
    db.session.remove()
    return pk, job_id, at


def read_live(job_ids):
    """What the status route would show for these jobs, and when it was read."""
    snaps = snapshots_of(queue.get_many(job_ids))
    at = time.time()
    db.session.remove()
    return snaps, at


def replay(app, planned, worker, period, deadline):
    """Submit the jobs on their schedule and read every live job each `period` seconds until all
    have ended. Returns ({n: (pk, job_id, submitted)}, {job_id: [Sample]}, read periods, timed out)."""
    submitted, samples, live, periods = {}, defaultdict(list), set(), []
    start = time.time()
    next_read, last_read, i = start, None, 0
    with app.app_context():
        while True:
            now = time.time()
            while i < len(planned) and start + planned[i].at <= now:
                pk, job_id, at = submit(planned[i])
                submitted[planned[i].n] = (pk, job_id, at)
                live.add(job_id)
                i += 1
            if now >= next_read:
                if last_read is not None:
                    periods.append(now - last_read)
                last_read = now
                snaps, at = read_live(sorted(live)) if live else ([], now)
                for snap in snaps:
                    samples[snap["job_id"]].append(sample_of(snap, at))
                    if snap["status"] in statuses.ENDED:
                        live.discard(snap["job_id"])
                next_read = max(next_read + period, time.time())
                if i == len(planned) and not live:
                    return submitted, samples, periods, False
            if worker.proc.poll() is not None:
                raise RuntimeError(f"worker exited early with {worker.proc.returncode}:\n{worker.log()}")
            if time.monotonic() > deadline:
                return submitted, samples, periods, True
            wake = min(next_read, start + planned[i].at if i < len(planned) else math.inf)
            time.sleep(max(0.0, wake - time.time()))


def final_rows(app, pks):
    with app.app_context():
        rows = db.session.execute(sa.select(Job.id, Job.status, Job.attempts, Job.started_at,
                                            Job.completed_at, Job.completion_tokens, Job.error_message)
                                  .where(Job.id.in_(pks))).all()
        db.session.remove()
    return {row.id: row for row in rows}


# --- the events of one job -----------------------------------------------------------------------
@dataclass
class JobRun:
    """Everything known about one completed job, times as time.time() seconds."""

    n: int
    job_id: str
    model: str
    kind: str
    prompt: str
    num_predict: int | None
    submit: float
    claim: float
    first_token: float
    done: float
    token_times: list          # send time of each token the simulator sent (a chunk carrying text)
    final_count: int           # Ollama's eval_count
    done_reason: str
    prompt_tokens: int
    load_seconds: float        # Ollama's load_duration
    final_speed: float         # eval_count / eval_duration
    samples: list = field(default_factory=list)  # [Sample], in order
    sample_times: list = field(default_factory=list)


def token_times(record):
    """Send times of the chunks that carried text (each is one sampled token)."""
    return [at for chunk, at in zip(record.chunks, record.sent_at, strict=False)
            if not chunk.get("done") and (chunk.get("response") or chunk.get("thinking"))]


def build_runs(planned, submitted, samples, rows, records):
    """JobRun per job that completed in one attempt; problems for the rest."""
    by_prompt = {}
    for record in records:
        prompt = (record.body or {}).get("prompt")
        if record.final is not None:
            by_prompt.setdefault(prompt, []).append(record)
    runs, problems = [], []
    for job in planned:
        if job.n not in submitted:
            problems.append(f"job #{job.n}: never submitted (timed out)")
            continue
        pk, job_id, at = submitted[job.n]
        row, finished = rows.get(pk), by_prompt.get(job.prompt, [])
        if row is None or row.status != statuses.COMPLETED or row.attempts != 1 or len(finished) != 1:
            problems.append(f"job #{job.n} (pk {pk}): status {row and row.status}, attempts "
                            f"{row and row.attempts}, finished requests {len(finished)}"
                            + (f", error: {row.error_message}" if row is not None and row.error_message else ""))
            continue
        record, final = finished[0], finished[0].final
        times = token_times(record)
        seen = samples.get(job_id, [])
        claim = epoch(row.started_at) or next((s.at for s in seen if s.status == statuses.PROCESSING), None)
        if not times or claim is None:
            problems.append(f"job #{job.n}: no tokens or no claim time")
            continue
        runs.append(JobRun(
            n=job.n, job_id=job_id, model=job.model, kind=job.kind, prompt=job.prompt,
            num_predict=job.num_predict, submit=at, claim=claim, first_token=times[0],
            done=record.sent_at[-1], token_times=times, final_count=final.get("eval_count", 0),
            done_reason=final.get("done_reason", ""), prompt_tokens=final.get("prompt_eval_count", 0),
            load_seconds=final.get("load_duration", 0) / 1e9,
            final_speed=final.get("eval_count", 0) / (final.get("eval_duration") or 1) * 1e9,
            samples=seen, sample_times=[s.at for s in seen]))
    return runs, problems


class History:
    """The runs of each model in the order they ended: what an estimator may learn from at t."""

    def __init__(self, runs):
        self.by_model = defaultdict(list)
        for run in sorted(runs, key=lambda r: r.done):
            self.by_model[run.model].append(run)
        self.ends = {model: [r.done for r in ended] for model, ended in self.by_model.items()}

    def before(self, model, t):
        """This model's runs that ended before t, oldest first."""
        return self.by_model[model][:bisect.bisect_left(self.ends.get(model, []), t)]


# --- the estimators: (run, t, earlier runs of the model) -> seconds left, or None (blank) -------
TODAY_HISTORY, TODAY_FALLBACK, SPEED_WINDOW = 20, 300, 5.0
ORIGINAL_FACTOR = 2.5
PAST_HISTORY = 1.3


def tokens_at(run, t):
    """Tokens the simulator had sent by t."""
    return bisect.bisect_right(run.token_times, t)


def last_sample(run, t):
    """The snapshot shown at t: the last one read at or before it, or None."""
    i = bisect.bisect_right(run.sample_times, t)
    return run.samples[i - 1] if i else None


def counted_down(value, sample, t):
    """A time left as the card shows it at t: the page counts it down from when it arrived, to
    a quarter of it at most (static/app.js)."""
    return None if value is None else max(value / 4, value - (t - sample.at))


def shown_new(run, t, earlier=None):
    """(1) What people were shown at t: the last snapshot, counted down as the card does."""
    sample = last_sample(run, t)
    return counted_down(sample.remaining, sample, t) if sample else None


def window_speed(run, t):
    """Tokens per second over the last SPEED_WINDOW seconds, counted from the first token (as
    the worker's meter does), or 0 before any token or within 50 ms of it."""
    if t < run.first_token:
        return 0.0
    start = max(run.first_token, t - SPEED_WINDOW)
    before = 0 if start == run.first_token else tokens_at(run, start)
    span = t - start
    return (tokens_at(run, t) - before) / span if span >= 0.05 else 0.0


def today_rule(run, t, earlier):
    """(2) Today's rule: num_predict, else the median of the last 20 lengths, else 300; the
    window speed; nothing while queued or loading."""
    if t < run.first_token:
        return None
    if run.num_predict:
        expected = run.num_predict
    elif earlier:
        expected = int(statistics.median(r.final_count for r in earlier[-TODAY_HISTORY:]))
    else:
        expected = TODAY_FALLBACK
    tokens, speed = tokens_at(run, t), window_speed(run, t)
    if speed <= 0 or tokens >= expected:
        return None
    return (expected - tokens) / speed


def original_rule(run, t, earlier=None):
    """(3) The original design: 2.5 x prompt tokens at tokens / time since the claim."""
    if t < run.claim:
        return None
    tokens = tokens_at(run, t)
    if tokens == 0 or t <= run.claim:
        return None
    speed = tokens / (t - run.claim)
    return max(0.0, ORIGINAL_FACTOR * run.prompt_tokens - tokens) / speed


def reference_length(run, tokens, earlier):
    """The median length of earlier runs that went past `tokens` (cut runs as they are), capped
    at num_predict; past every earlier run, 1.3 x what has come so far."""
    past = [r.final_count for r in earlier if r.final_count > tokens]
    expected = statistics.median(past) if past else tokens * PAST_HISTORY
    return min(expected, run.num_predict) if run.num_predict else expected


def reference_rule(run, t, earlier):
    """(4) A simple learned rule, from runs of the model that ended before t; nothing while queued."""
    if t < run.claim:
        return None
    tokens = tokens_at(run, t)
    expected = reference_length(run, tokens, earlier)
    if tokens and t > run.first_token:
        speed = tokens / (t - run.first_token)
    else:
        speed = statistics.median(r.final_speed for r in earlier) if earlier else None
    if not speed:
        return None
    if tokens == 0:
        load = statistics.median(r.load_seconds for r in earlier) if earlier else 0.0
        return max(0.0, load - (t - run.claim)) + expected / speed
    return max(0.0, expected - tokens) / speed


ESTIMATORS = {"new": shown_new, "today": today_rule, "original": original_rule, "reference": reference_rule}
LABELS = {"new": "new (shown)", "today": "today's rule", "original": "original design",
          "reference": "reference (learned)"}


def live_speeds(run, t):
    """Each estimator's idea of the speed at t (tokens/s), for comparison with Ollama's figure."""
    tokens = tokens_at(run, t)
    sample = last_sample(run, t)
    return {"new": sample.speed if sample else None,
            "today": window_speed(run, t),
            "original": tokens / (t - run.claim) if t > run.claim else None,
            "reference": tokens / (t - run.first_token) if tokens and t > run.first_token else None}


# --- scoring -------------------------------------------------------------------------------------
POINTS = (0.25, 0.5, 0.75)
CAP = 10.0
SPANS = ("generation", "whole_wait")


def factor(shown, true):
    """How many times off, minus one: 0 is exact, 1 is off by 2x. Blank or 0 counts as the cap."""
    if shown is None or shown <= 0 or true <= 0:
        return CAP
    return min(max(shown / true, true / shown) - 1, CAP)


def score_times(run):
    """The score points: 25, 50, 75 % of the generation and of the whole wait."""
    return {"generation": [run.first_token + q * (run.done - run.first_token) for q in POINTS],
            "whole_wait": [run.submit + q * (run.done - run.submit) for q in POINTS]}


def score_run(run, history):
    """{estimator: {span: [(shown, true) per point]}} of one run, seconds; shown None is a blank."""
    points = {name: {} for name in ESTIMATORS}
    for span, times in score_times(run).items():
        for name, estimate in ESTIMATORS.items():
            points[name][span] = [(estimate(run, t, history.before(run.model, t)), run.done - t) for t in times]
    return points


def job_score(points):
    """A job's score for one estimator and span: the mean factor of its points."""
    return statistics.fmean(factor(shown, true) for shown, true in points)


def pct(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def med_p90(values):
    return {"n": len(values), "median": round(pct(values, 50), 3), "p90": round(pct(values, 90), 3)} if values else None


def score_summary(runs, scores, keep=lambda run: True):
    """{estimator: {span: {n, median, p90} of the per-job scores}}, and the share of points that
    were blank, and that counted as the cap (blank, 0, or 11 x off and more)."""
    chosen = [scores[run.n] for run in runs if keep(run)]
    out = {}
    for name in ESTIMATORS:
        out[name] = {span: med_p90([job_score(job[name][span]) for job in chosen]) for span in SPANS}
        points = {span: [point for job in chosen for point in job[name][span]] for span in SPANS}
        out[name]["blank_points"] = {span: share(sum(shown is None for shown, _ in points[span]), len(points[span]))
                                     for span in SPANS}
        out[name]["capped_points"] = {span: share(sum(factor(*point) == CAP for point in points[span]),
                                                  len(points[span])) for span in SPANS}
    return out


def share(part, whole):
    return round(part / whole, 4) if whole else None


# --- the other figures ---------------------------------------------------------------------------
def phase_at(run, t):
    if t < run.claim:
        return "queued"
    return "loading" if t < run.first_token else "generating"


def blank_shares(runs, history, step):
    """Per estimator, the share of time with no ETA (a grid of `step` seconds over each job,
    from the bench's first read of it):
    while generating (all, and once the model has a completed job), and while queued or loading
    once the model has one."""
    counts = {name: Counter() for name in ESTIMATORS}
    for run in runs:
        # From the first read on: before it (at most one sampling period after the submit) the
        # bench has not looked yet, which says nothing of what a page would show.
        t = max(run.submit, run.sample_times[0]) if run.sample_times else run.submit
        while t < run.done:
            phase = phase_at(run, t)
            earlier = history.before(run.model, t)
            keys = ["generating"] if phase == "generating" else []
            if earlier:
                keys.append("generating_with_history" if phase == "generating" else "waiting_with_history")
                if phase != "generating":
                    keys.append(f"{phase}_with_history")
            for name, estimate in ESTIMATORS.items():
                blank = estimate(run, t, earlier) is None
                for key in keys:
                    counts[name][key] += 1
                    counts[name][key + "_blank"] += blank
            t += step
    return {name: {key: share(c[key + "_blank"], c[key]) for key in
                   ("generating", "generating_with_history", "waiting_with_history", "queued_with_history",
                    "loading_with_history")}
            for name, c in counts.items()}


def frozen_bar_seconds(run, stuck=3.0):
    """Seconds of the generation during which the shown bar stayed at one value for more than
    `stuck` seconds while the shown token count grew (the whole of each such stretch)."""
    shown = [s for s in run.samples if run.first_token <= s.at <= run.done and s.status == statuses.PROCESSING]
    frozen, i = 0.0, 0
    while i < len(shown):
        j = i
        while j + 1 < len(shown) and shown[j + 1].progress == shown[i].progress:
            j += 1
        end = shown[j + 1].at if j + 1 < len(shown) else run.done
        if end - shown[i].at > stuck and shown[j].tokens > shown[i].tokens:
            frozen += end - shown[i].at
        i = j + 1
    return frozen


def bar_faults(run):
    """(backwards steps of the bar, snapshots showing 100 % before completion)."""
    backwards = sum(1 for a, b in zip(run.samples, run.samples[1:], strict=False) if b.progress < a.progress)
    early = sum(1 for s in run.samples if s.progress >= 100 and s.status != statuses.COMPLETED)
    return backwards, early


def range_coverage(runs):
    """Per span: the share of score points whose truth lies in the shown [low, high], and the
    share of points that had a range at all."""
    out = {}
    for span in SPANS:
        points = inside = ranged = 0
        for run in runs:
            for t in score_times(run)[span]:
                points += 1
                sample = last_sample(run, t)
                if sample and sample.low is not None and sample.high is not None:
                    ranged += 1
                    low, high = (counted_down(value, sample, t) for value in (sample.low, sample.high))
                    inside += low <= run.done - t <= high
        out[span] = {"covered": share(inside, points), "with_a_range": share(ranged, points),
                     "covered_of_ranged": share(inside, ranged)}
    return out


def speed_errors(runs):
    """|live - final| / final per estimator, at the last live snapshot with a speed."""
    errors = defaultdict(list)
    for run in runs:
        live = [s for s in run.samples if s.status == statuses.PROCESSING and s.speed > 0]
        if not live or not run.final_speed:
            continue
        for name, speed in live_speeds(run, live[-1].at).items():
            if speed:
                errors[name].append(abs(speed - run.final_speed) / run.final_speed)
    return {name: med_p90(errors[name]) for name in ESTIMATORS}


def bar_figures(runs):
    generating = sum(run.done - run.first_token for run in runs)
    frozen = sum(frozen_bar_seconds(run) for run in runs)
    faults = [bar_faults(run) for run in runs]
    return {"frozen_bar_share_of_generating_time": share(frozen, generating),
            "frozen_bar_seconds": round(frozen, 2),
            "backwards_steps": sum(b for b, _ in faults), "jobs_with_backwards_steps": sum(1 for b, _ in faults if b),
            "early_100_snapshots": sum(e for _, e in faults), "jobs_with_early_100": sum(1 for _, e in faults if e)}


def run_figures(runs, samples, periods, sim_requests):
    """What the run looked like: queueing, cold loads, lengths, the simulator's pace."""
    queued = [max((s.position or 0) for s in seen) for seen in samples.values()] or [0]
    queue_waits = [run.claim - run.submit for run in runs]
    gen_rates = [(len(run.token_times) - 1) / (run.token_times[-1] - run.token_times[0])
                 for run in runs if len(run.token_times) > 1 and run.token_times[-1] > run.token_times[0]]
    finals = [r.final for r in sim_requests if r.final]
    return {
        "jobs_by_model": dict(Counter(run.model for run in runs)),
        "jobs_with_num_predict": sum(1 for run in runs if run.num_predict),
        "done_reasons": dict(Counter(run.done_reason for run in runs)),
        "completion_tokens": {m: med_p90([r.final_count for r in runs if r.model == m]) for m, _ in MODELS},
        "requests_that_waited_for_a_load": sum(1 for f in finals if f.get("load_duration", 0) > 0.05e9),
        "longest_queue_seen": max(queued),
        "jobs_queued_over_1s": sum(1 for w in queue_waits if w > 1.0),
        "queue_wait_seconds": med_p90(queue_waits),
        "generation_seconds": med_p90([run.done - run.first_token for run in runs]),
        "whole_wait_seconds": med_p90([run.done - run.submit for run in runs]),
        "simulator_tokens_per_second_per_stream": med_p90(gen_rates),
        "read_period_seconds": med_p90(periods),
    }


def analyse(runs, samples, periods, sim_requests, step):
    history = History(runs)
    scores = {run.n: score_run(run, history) for run in runs}
    has_np = lambda run: bool(run.num_predict)  # noqa: E731
    return {
        "scores": score_summary(runs, scores),
        "scores_by_model": {m: score_summary(runs, scores, lambda r, m=m: r.model == m) for m, _ in MODELS},
        "scores_with_num_predict": score_summary(runs, scores, has_np),
        "scores_without_num_predict": score_summary(runs, scores, lambda r: not has_np(r)),
        "no_eta_share": blank_shares(runs, history, step),
        "bar": bar_figures(runs),
        "range_coverage": range_coverage(runs),
        "speed_error": speed_errors(runs),
        "run": run_figures(runs, samples, periods, sim_requests),
    }, scores


# --- output --------------------------------------------------------------------------------------
def fmt(d, digits=2):
    return "n/a" if not d else f"{d['median']:.{digits}f} / {d['p90']:.{digits}f}"


def pc(value):
    return "n/a" if value is None else f"{value:.0%}"


def print_table(meta, s, problems):
    r = s["run"]
    print(f"  {meta['jobs']} jobs ({meta['jobs_completed']} scored), {meta['tps']} tok/s +-20 %, "
          f"concurrency {meta['concurrency']}, {meta['database']}, nproc {meta['nproc']}, "
          f"wall {meta['wall_seconds']:.0f} s")
    print(f"  models {r['jobs_by_model']}, num_predict set on {r['jobs_with_num_predict']}, "
          f"done_reason {r['done_reasons']}, requests that waited for a load {r['requests_that_waited_for_a_load']}")
    print(f"  arrivals {meta['arrival_rate']:.2f}/s (busy x{BUSY}, quiet x{QUIET}, {meta['stretch']:.0f} s "
          f"stretches); longest queue {r['longest_queue_seen']}, jobs queued > 1 s {r['jobs_queued_over_1s']}, "
          f"queue wait median/p90 {fmt(r['queue_wait_seconds'], 1)} s")
    print(f"  generation median/p90 {fmt(r['generation_seconds'], 1)} s, "
          f"whole wait {fmt(r['whole_wait_seconds'], 1)} s, "
          f"simulator tok/s per stream {fmt(r['simulator_tokens_per_second_per_stream'], 0)}, "
          f"reads every {fmt(r['read_period_seconds'], 3)} s")
    print()
    names = list(ESTIMATORS)
    width = 46
    print(f"  {'factor off (median / p90 of per-job means)':<{width}}" + "".join(f"{LABELS[n]:>22}" for n in names))

    def row(label, cell):
        print(f"  {label:<{width}}" + "".join(f"{cell(n):>22}" for n in names))

    spans = (("generation", "generation (first token -> done)"), ("whole_wait", "whole wait (submit -> done)"))
    for span, label in spans:
        row(label, lambda n, span=span: fmt(s["scores"][n][span]))
        for model, _ in MODELS:
            row(f"  {model}", lambda n, span=span, model=model: fmt(s["scores_by_model"][model][n][span]))
        row("  with num_predict", lambda n, span=span: fmt(s["scores_with_num_predict"][n][span]))
        row("  without num_predict", lambda n, span=span: fmt(s["scores_without_num_predict"][n][span]))
        row("  points blank / at the cap", lambda n, span=span: f"{pc(s['scores'][n]['blank_points'][span])} / "
                                                                 f"{pc(s['scores'][n]['capped_points'][span])}")
    blank = s["no_eta_share"]
    row("no ETA: share of generating time", lambda n: pc(blank[n]["generating"]))
    row("  once the model has a completed job", lambda n: pc(blank[n]["generating_with_history"]))
    row("no ETA queued or loading, model has history", lambda n: pc(blank[n]["waiting_with_history"]))
    row("  queued / loading", lambda n: f"{pc(blank[n]['queued_with_history'])} / "
                                         f"{pc(blank[n]['loading_with_history'])}")
    row("live speed vs final: |live-final|/final", lambda n: fmt(s["speed_error"][n], 3))
    bar, cover = s["bar"], s["range_coverage"]
    print()
    print(f"  new only: bar still > 3 s while tokens grew: {pc(bar['frozen_bar_share_of_generating_time'])} of "
          f"generating time; backwards steps {bar['backwards_steps']} ({bar['jobs_with_backwards_steps']} jobs); "
          f"early 100s {bar['early_100_snapshots']} snapshots ({bar['jobs_with_early_100']} jobs)")
    for span in SPANS:
        c = cover[span]
        print(f"  new only: range [low, high] holds the truth ({span}): {pc(c['covered'])} of points "
              f"(claims 60 %); points with a range {pc(c['with_a_range'])}, "
              f"covered of those {pc(c['covered_of_ranged'])}")
    for problem in problems:
        print("  PROBLEM:", problem)


def shown_path(path):
    """The results file as printed: relative to the repository when inside it, else as given."""
    resolved = path.resolve()
    return resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else path


def rounded(value):
    return None if value is None else round(value, 3)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as info:
            return next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), None)
    except OSError:
        return None


def per_job(run, scores, t0):
    at = lambda x: round(x - t0, 3)  # noqa: E731
    return {"n": run.n, "model": run.model, "kind": run.kind, "prompt": run.prompt, "num_predict": run.num_predict,
            "submit": at(run.submit), "claim": at(run.claim), "first_token": at(run.first_token),
            "done": at(run.done), "final_count": run.final_count, "done_reason": run.done_reason,
            "prompt_tokens": run.prompt_tokens, "load_seconds": round(run.load_seconds, 3),
            "final_speed": round(run.final_speed, 2),
            "points_shown_true_factor": {name: {span: [[rounded(shown), round(true, 3), round(factor(shown, true), 3)]
                                                       for shown, true in points]
                                                for span, points in spans.items()}
                                         for name, spans in scores[run.n].items()},
            "token_times": [at(x) for x in run.token_times],
            "samples_at_status_phase_tokens_speed_progress_remaining_low_high_position": [
                [at(s.at), s.status, s.phase, s.tokens, s.speed, s.progress, s.remaining, s.low, s.high, s.position]
                for s in run.samples]}


# --- main ----------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temporary directory")
    parser.add_argument("--jobs", type=int, default=160)
    parser.add_argument("--tps", type=float, default=80.0, help="simulator tokens per second (each request +-20 %%)")
    parser.add_argument("--concurrency", type=int, default=4, help="the worker's WORKER_CONCURRENCY")
    parser.add_argument("--interval", type=float, default=0.5, help="the worker's PROGRESS_INTERVAL")
    parser.add_argument("--utilisation", type=float, default=0.85,
                        help="mean offered load as a share of the worker's slots (busy stretches: x1.7)")
    parser.add_argument("--stretch", type=float, default=20.0, help="seconds of each busy or quiet stretch")
    parser.add_argument("--keep-alive", type=float, default=5.0, help="simulator keep_alive seconds")
    parser.add_argument("--sample-ms", type=float, default=150.0, help="period of the status reads")
    parser.add_argument("--grid-ms", type=float, default=100.0, help="time step of the no-ETA shares")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, help="give up after this many seconds "
                        "(default: the last arrival + 180)")
    parser.add_argument("--force", action="store_true",
                        help="allow dropping the tables of a database whose name lacks 'bench'")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="directory of the JSON results (default: bench/results in the repository)")
    parser.add_argument("--no-save", action="store_true", help="do not write the JSON results")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    planned, rate, service = make_mix(args)
    timeout = args.timeout or planned[-1].at + 180
    commit = git_describe()
    tmpdir = tempfile.mkdtemp(prefix="livegen-estimates-")
    url = args.database_url or f"sqlite:///{tmpdir}/bench.sqlite3"
    if url.startswith("mysql://"):
        url = "mysql+pymysql://" + url[len("mysql://"):]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # through the finally: the worker dies too
    worker = sim = None
    try:
        app = prepare_database(url, args.force)
        sim = Simulator(tokens_per_second=args.tps, lengths="realistic", speed_spread=0.2, load_delay=(0.0, 3.0),
                        keep_alive=args.keep_alive, seed=args.seed, models=tuple(m for m, _ in MODELS)).start()
        worker = WorkerProcess(Path(tmpdir) / "worker.log", worker_env(args, url, sim.url))
        worker.wait_ready(30)
        t0 = time.time()
        submitted, samples, periods, timed_out = replay(app, planned, worker, args.sample_ms / 1000,
                                                        time.monotonic() + timeout)
        wall = time.time() - t0
        worker.stop()
        rows = final_rows(app, [pk for pk, _, _ in submitted.values()])
        records = sim.requests
        runs, problems = build_runs(planned, submitted, samples, rows, records)
        if timed_out:
            problems.insert(0, f"timed out after {timeout:.0f} s")
        summary, scores = analyse(runs, samples, periods, records, args.grid_ms / 1000)
        warnings = [line for line in worker.log().splitlines() if " WARNING " in line or " ERROR " in line]
        meta = {"benchmark": "estimates", "command": " ".join([Path(sys.executable).name, *sys.argv]),
                "started_at": datetime.fromtimestamp(t0, UTC).isoformat(),
                "database": redact(url).split("?")[0] if not url.startswith("sqlite") else "sqlite (temp file)",
                "jobs": args.jobs, "jobs_completed": len(runs), "tps": args.tps, "concurrency": args.concurrency,
                "interval": args.interval, "utilisation": args.utilisation, "stretch": args.stretch,
                "keep_alive": args.keep_alive, "sample_ms": args.sample_ms, "seed": args.seed,
                "arrival_rate": round(rate, 3), "mean_service_seconds_expected": round(service, 3),
                "wall_seconds": round(wall, 1), "nproc": os.cpu_count(), "cpu": cpu_model(),
                "python": sys.version.split()[0], "commit": commit}
        print_table(meta, summary, problems)
        for line in warnings[:5]:
            print("  worker log:", line)
        if not args.no_save:
            args.out.mkdir(parents=True, exist_ok=True)
            path = args.out / f"estimates-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
            path.write_text(json.dumps({**meta, **summary, "problems": problems, "worker_log_warnings": warnings[:20],
                                        "per_job": [per_job(run, scores, t0) for run in runs]}) + "\n")
            print(f"  results: {shown_path(path)}")
        return 1 if problems else 0
    finally:
        if worker is not None:
            worker.kill()
        if sim is not None:
            sim.stop()
        shutil.rmtree(tmpdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
