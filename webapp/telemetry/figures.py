"""What /metrics shows from the database, read at each scrape: the running totals (a few hundred
rows, however many jobs there are) and the state now (index ranges over the queued and running
jobs and the pending webhooks: they cost what is live, not what has ever been)."""
import logging
import time
from collections import Counter
from dataclasses import dataclass

import sqlalchemy as sa
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from sqlalchemy.exc import SQLAlchemyError

from webapp import statuses
from webapp.extensions import db, discard_session
from webapp.models import Job, WebhookDelivery, utcnow
from webapp.telemetry import reasons, totals
from webapp.webhooks import outbox

log = logging.getLogger(__name__)
HISTOGRAM_HELP = {
    "wait_seconds": "Completed jobs: seconds from creation until a worker first took them.",
    "load_seconds": "Completed jobs: seconds Ollama spent loading the model (0 when it was loaded).",
    "generation_seconds": "Completed jobs: seconds from a worker taking them to their end.",
    "tokens_per_second": "Completed jobs: their generation speed (Ollama's own count and clock).",
}
WEBHOOK_RESULTS = ("delivered", "rejected", "error")


@dataclass
class Live:
    """The state now: queued (all, and runnable now), the oldest queued job's creation, the
    running jobs as (model, worker, count, tokens/s), the webhooks pending and failed."""

    queued: int
    ready: int
    oldest_queued: object
    running: list
    webhooks: dict
    oldest_due: object


class DatabaseFigures:
    """A prometheus_client collector: the database's figures, read when scraped. A database that
    does not answer gives livegen_database_up 0, and the process figures are served as ever."""

    def __init__(self, app):
        self.app = app

    def collect(self):
        started = time.monotonic()
        families = self.read()
        yield from families or ()
        yield gauge("livegen_database_up", "1 when this scrape read the database, else 0.", int(families is not None))
        yield gauge("livegen_metrics_database_seconds", "Seconds this scrape spent reading the database.",
                    time.monotonic() - started)

    def read(self):
        """The database's metric families, or None when it did not answer."""
        with self.app.app_context():  # a session of its own, given back at once
            try:
                now = utcnow()
                return [*from_totals(totals.read()), *from_live(read_live(now), now)]
            except SQLAlchemyError as error:
                log.warning("metrics: the database did not answer: %s", error)
                return None
            finally:
                discard_session()


def _by_status(query):
    # Through (status, id): left to itself MariaDB may walk the primary key past every ended job.
    for dialect in ("mysql", "mariadb"):
        query = query.with_hint(Job, "FORCE INDEX (ix_jobs_queue_head)", dialect)
    return query


def read_live(now):
    """The queued and running jobs and the webhooks to send, through index ranges (_by_status)."""
    runnable = sa.and_(Job.run_after <= now, Job.cancel_requested.is_(False))
    queued, ready = db.session.execute(_by_status(sa.select(
        sa.func.count(), sa.func.sum(sa.case((runnable, 1), else_=0))).where(Job.status == statuses.QUEUED))).one()
    oldest = db.session.scalar(_by_status(sa.select(Job.created_at).where(Job.status == statuses.QUEUED)
                                          .order_by(Job.id).limit(1)))
    running = db.session.execute(
        sa.select(Job.model, Job.worker_id, sa.func.count(), sa.func.sum(Job.tokens_per_second))
        .where(Job.status == statuses.PROCESSING).group_by(Job.model, Job.worker_id)).all()
    webhooks, oldest_due = read_webhooks(now)
    return Live(queued, int(ready or 0), oldest, running, webhooks, oldest_due)


def read_webhooks(now):
    """({status: count} of the pending and the failed deliveries, the oldest due one's due time)."""
    due = sa.case((WebhookDelivery.next_attempt_at <= now, WebhookDelivery.next_attempt_at))
    rows = db.session.execute(
        sa.select(WebhookDelivery.status, sa.func.count(), sa.func.min(due))
        .where(WebhookDelivery.status.in_([outbox.PENDING, outbox.FAILED])).group_by(WebhookDelivery.status)).all()
    counts = {outbox.PENDING: 0, outbox.FAILED: 0} | {status: count for status, count, _due in rows}
    return counts, next((oldest for status, _count, oldest in rows if status == outbox.PENDING), None)


def gauge(name, documentation, value=None, labels=(), samples=()):
    family = GaugeMetricFamily(name, documentation, value=value, labels=labels or None)
    for label_values, sample in samples:
        family.add_metric(label_values, sample)
    return family


def counter(name, documentation, labels, samples):
    family = CounterMetricFamily(name, documentation, labels=labels)
    for label_values, sample in samples:
        family.add_metric(label_values, sample)
    return family


def age(now, moment):
    return max(0.0, (now - moment).total_seconds()) if moment is not None else 0.0


def added_up(running):
    """({model: jobs}, {model: tokens/s}, {worker: jobs}) of the running jobs' (model, worker, count, speed)."""
    by_model, speed, leases = Counter(), Counter(), Counter()
    for model, worker, count, tokens_per_second in running:
        by_model[model] += count
        speed[model] += float(tokens_per_second or 0)
        leases[worker or ""] += count
    return by_model, speed, leases


def from_live(live, now):
    by_model, speed, leases = added_up(live.running)
    return [
        gauge("livegen_jobs", "Jobs queued and running now (ended ones: the _total counters).", labels=["status"],
              samples=[([statuses.QUEUED], live.queued), ([statuses.PROCESSING], sum(by_model.values()))]),
        gauge("livegen_queue_depth", "Queued jobs a worker may take now (not waiting out a retry's back-off).",
              live.ready),
        gauge("livegen_queue_oldest_age_seconds", "Seconds since the oldest queued job was made (0: none).",
              age(now, live.oldest_queued)),
        gauge("livegen_jobs_running", "Jobs running now, by model.", labels=["model"],
              samples=[([model], count) for model, count in sorted(by_model.items())]),
        gauge("livegen_tokens_per_second", "The running jobs' speeds added up, by model: tokens/s now.",
              labels=["model"], samples=[([model], value) for model, value in sorted(speed.items())]),
        gauge("livegen_worker_leases", "Jobs each worker process holds a lease on (runs) now.", labels=["worker"],
              samples=[([worker], count) for worker, count in sorted(leases.items())]),
        gauge("livegen_webhook_deliveries", "Webhook deliveries waiting to be sent, and given up on.",
              labels=["status"], samples=[([status], count) for status, count in sorted(live.webhooks.items())]),
        gauge("livegen_webhook_oldest_due_age_seconds", "Seconds the oldest due webhook delivery has waited.",
              age(now, live.oldest_due)),
    ]


def from_totals(found):
    """The counters and histograms, from {(name, model, label): value}."""
    def by(name, position):  # {model or label: value} of one kind of total
        return {key[position]: value for key, value in found.items() if key[0] == name}

    def with_zeros(values, names):  # every known label, 0 until counted: rate() sees the first one
        return [([name], values.get(name, 0)) for name in sorted({*names, *values})]

    return [
        counter("livegen_jobs_completed", "Jobs completed, by model.", ["model"],
                [([model], value) for model, value in sorted(by("jobs_completed", 1).items())]),
        counter("livegen_tokens_generated", "Tokens generated by completed jobs, by model.", ["model"],
                [([model], value) for model, value in sorted(by("tokens", 1).items())]),
        counter("livegen_jobs_failed", "Jobs failed (after their last try), by reason.", ["reason"],
                with_zeros(by("jobs_failed", 2), reasons.ALL)),
        counter("livegen_jobs_cancelled", "Jobs cancelled.", [], [([], sum(by("jobs_cancelled", 2).values()))]),
        counter("livegen_webhook_attempts", "Webhook tries, by result: delivered (2xx), rejected (another "
                "answer), error (no answer).", ["result"], with_zeros(by("webhook_attempts", 2), WEBHOOK_RESULTS)),
        *(histogram(name, found) for name in totals.HISTOGRAMS),
    ]


def histogram(name, found):
    """One histogram per model, cumulative over the stored buckets and the current bounds (a
    bound taken out of HISTOGRAMS keeps the jobs it counted)."""
    family = HistogramMetricFamily(f"livegen_job_{name}", HISTOGRAM_HELP[name], labels=["model"])
    models = sorted({model for (kind, model, _label) in found if kind == name})
    for model in models:
        counts = {label: value for (kind, m, label), value in found.items() if kind == name and m == model}
        bounds = sorted({*map(totals.bound, totals.HISTOGRAMS[name]), *counts} - {totals.INF}, key=float)
        running, buckets = 0, []
        for le in [*bounds, totals.INF]:
            running += counts.get(le, 0)
            buckets.append((le, running))
        family.add_metric([model], buckets, sum_value=found.get((f"{name}_sum", model, ""), 0) / 1000)
    return family
