"""Running totals for /metrics, added to in the transaction of the event they count: a job's end
(beside its batch's counters and its webhook), a batch's cancel, a webhook's try."""
import functools
from collections import Counter

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from webapp import statuses
from webapp.extensions import db
from webapp.models import Job, MetricTotal
from webapp.telemetry.reasons import reason

TABLE = MetricTotal.__table__
# Upper bounds of each histogram's buckets (+Inf follows), over completed jobs: seconds, or tokens/s.
HISTOGRAMS = {
    "wait_seconds": (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
    "load_seconds": (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    "generation_seconds": (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
    "tokens_per_second": (1, 2.5, 5, 10, 20, 30, 50, 75, 100, 150, 250, 500),
}
INF = "+Inf"
# What a job's end is read with (the row as its end left it, in the same transaction).
ENDED_COLUMNS = (Job.status, Job.model, Job.completion_tokens, Job.elapsed_time, Job.tokens_per_second,
                 Job.load_ms, Job.created_at, Job.started_at, Job.error_message)


def bound(value):
    """A bucket's upper bound as Prometheus writes it in `le` ('0.5', '10.0')."""
    return repr(float(value))


def bucket(histogram, value):
    return next((bound(upper) for upper in HISTOGRAMS[histogram] if value <= upper), INF)


def observations(job):
    """What the histograms count of a completed job: {histogram: value}."""
    seen = {"generation_seconds": (job.elapsed_time or 0) / 1000, "tokens_per_second": job.tokens_per_second or 0.0}
    if job.created_at is not None and job.started_at is not None:
        # The web and the worker stamp the two ends with their own clocks: a skew is not a wait.
        seen["wait_seconds"] = max(0.0, (job.started_at - job.created_at).total_seconds())
    if job.load_ms is not None:
        seen["load_seconds"] = job.load_ms / 1000
    return seen


def end_rows(job):
    """What one job's end adds to the totals: [(name, model, label, amount)]. Failures and
    cancels carry no model: a request may name any model, and a label must not take any value."""
    if job.status == statuses.FAILED:
        return [("jobs_failed", "", reason(job.error_message), 1)]
    if job.status == statuses.CANCELLED:
        return [("jobs_cancelled", "", "", 1)]
    rows = [("jobs_completed", job.model, "", 1), ("tokens", job.model, "", job.completion_tokens or 0)]
    for histogram, value in observations(job).items():
        # Sums in thousandths, so that every total is a whole number, exact in any database.
        rows += [(histogram, job.model, bucket(histogram, value), 1),
                 (f"{histogram}_sum", job.model, "", round(value * 1000))]
    return rows


def job_ended(job_pk):
    """Count the end of this job, which the current transaction has just written."""
    job = db.session.execute(sa.select(*ENDED_COLUMNS).where(Job.id == job_pk)).one_or_none()
    if job is not None and job.status in statuses.ENDED:
        add(end_rows(job))


def cancelled(count):
    """Count `count` jobs cancelled at once (a batch's queued items), in the cancel's transaction."""
    if count:
        add([("jobs_cancelled", "", "", count)])


def webhook_tried(result):
    """Count one webhook try: 'delivered', 'rejected' (the receiver answered, not 2xx) or 'error'."""
    add([("webhook_attempts", "", result, 1)])


def add(rows):
    """Add `rows` [(name, model, label, amount)] to the totals in the caller's transaction: one
    statement that makes a total the first time and adds to it after."""
    merged = Counter()
    for name, model, label, amount in rows:
        merged[name, model, label] += amount
    # In key order: two transactions that add to the same totals lock them in the same order.
    values = [{"name": name, "model": model, "label": label, "value": amount}
              for (name, model, label), amount in sorted(merged.items())]
    if values:
        db.session.execute(_upsert(db.session.get_bind().dialect.name), values)


@functools.cache
def _upsert(dialect):
    """Built once per dialect and sent with many rows: compiling a statement per end cost more
    than running it (bench/metrics_bench.py)."""
    if dialect in ("mysql", "mariadb"):
        statement = mysql.insert(TABLE)
        return statement.on_duplicate_key_update(value=TABLE.c.value + statement.inserted.value)
    statement = (postgresql if dialect == "postgresql" else sqlite).insert(TABLE)
    return statement.on_conflict_do_update(index_elements=[TABLE.c.name, TABLE.c.model, TABLE.c.label],
                                           set_={"value": TABLE.c.value + statement.excluded.value})


def read():
    """Every total: {(name, model, label): value}."""
    return {(row.name, row.model, row.label): row.value for row in db.session.execute(sa.select(TABLE))}
