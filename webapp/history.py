"""What this server has learned, read from its own completed jobs: per model the newest runs (a
bounded query on the model's index, never a scan of all history), and the pace of the queue
(how long a job takes, and how many run side by side).
Each is kept a few seconds per process, so a busy page or worker reads it once, not per job."""
import time

import sqlalchemy as sa

from webapp import statuses
from webapp.estimates import History, Run, most_at_once, quantile
from webapp.extensions import db
from webapp.models import Job

RUNS = 200          # newest completed runs of a model to learn from
PACE_RUNS = 50      # newest completed runs (any model) that set the queue's pace
KEEP_SECONDS = 5.0  # how long a process reuses what it read
KEEP_EMPTY_SECONDS = 0.5
KEEP_AT_MOST = 1000  # entries before stale ones are dropped
_kept = {}          # key -> (read at, value)


def _kept_for(key, read, clock=time.monotonic):
    key = (str(db.engine.url), *key)  # one process may serve several databases (tests)
    at, value = _kept.get(key, (None, None))
    # Nothing learned yet is kept only a moment: the model's first job may just have ended.
    if at is None or clock() - at > (KEEP_SECONDS if value else KEEP_EMPTY_SECONDS):
        value = read()
        if len(_kept) >= KEEP_AT_MOST:  # any client may name models: drop what has gone stale
            for old in [k for k, (when, _v) in _kept.items() if clock() - when > KEEP_SECONDS]:
                del _kept[old]
        _kept[key] = (clock(), value)
    return value


def forget():
    """Drop what this process keeps (tests; a new database)."""
    _kept.clear()


def learned(model):
    """The model's History: output lengths (cut runs marked), speeds, load and prompt times."""
    return _kept_for(("model", model), lambda: _read_history(model))


def _read_history(model):
    columns = (Job.completion_tokens, Job.done_reason, Job.prompt_kind, Job.tokens_per_second, Job.load_ms,
               Job.cold_start, Job.prompt_eval_ms, Job.prompt_tokens)
    query = (sa.select(*columns).where(Job.model == model, Job.status == statuses.COMPLETED,
                                       Job.completion_tokens > 0)
             .order_by(Job.completed_at.desc()).limit(RUNS))
    history = History()
    for row in db.session.execute(query):
        _learn(history, row)
    return history


def _learn(history, row):
    history.runs.append(Run(row.completion_tokens, cut=row.done_reason == "length",
                            kind=row.prompt_kind or "plain:s:-", speed=row.tokens_per_second or None))
    if row.tokens_per_second:
        history.speeds.append(row.tokens_per_second)
    if row.load_ms is not None:
        (history.loads_cold if row.cold_start else history.loads_warm).append(row.load_ms / 1000)
    if row.prompt_eval_ms is not None and row.prompt_tokens:
        history.prompt_rates.append(row.prompt_eval_ms / 1000 / row.prompt_tokens)


def pace():
    """(worker slots, seconds one job takes as (median, 20th, 80th percentile)) over the newest
    completed jobs of any model, or (0, None) without any. The slots are the jobs running
    now or, when more, the most of those newest jobs that ran side by side: a queue that formed
    while nothing ran is still served that many at a time."""
    return _kept_for(("pace",), _read_pace) or (0, None)


def _read_pace():
    running = db.session.scalar(sa.select(sa.func.count()).where(Job.status == statuses.PROCESSING))
    # The newest completed, read backwards through (status, id): left to itself MariaDB may walk
    # the primary key back past every newer job instead (a large batch's queued items).
    query = (sa.select(Job.started_at, Job.completed_at, Job.runs).where(Job.status == statuses.COMPLETED)
             .order_by(Job.id.desc()).limit(PACE_RUNS)
             .with_hint(Job, "FORCE INDEX (ix_jobs_queue_head)", "mysql")
             .with_hint(Job, "FORCE INDEX (ix_jobs_queue_head)", "mariadb"))
    # A job run more than once (released at a shutdown, retried) started with its first run: its
    # span holds its waits too, and would count as a slot it did not use.
    spans = [(started, done) for started, done, runs in db.session.execute(query) if started and done and runs <= 1]
    if not spans:
        return None
    took = [(done - started).total_seconds() for started, done in spans]
    return max(running, most_at_once(spans)), tuple(quantile(took, q) for q in (0.5, 0.2, 0.8))
