"""The outbox: a webhook delivery is recorded in the transaction of the change it tells of (so a
change is never made without its delivery, or the other way round), then claimed by a sender,
tried, and settled: delivered, due again later, or failed once its tries run out."""
import json
import secrets
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa

from webapp import output, snapshots
from webapp.batches import snapshots as batch_snapshots
from webapp.extensions import db
from webapp.models import Batch, Job, WebhookDelivery, utcnow

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
# An `output` that failed a try is not tried again once newer text (or the end) is on its way:
# the newer message carries all of it, and a stale one must not hold up `completed` for a day.
SUPERSEDED = "superseded"
OUTPUT_EVERY = timedelta(milliseconds=500)  # an output delivery waits this long, taking in newer text


def new_delivery_id():
    return "msg_" + secrets.token_urlsafe(24)


def wants(subject, event):
    """Whether a job's or batch's webhook asked for this event."""
    return bool(subject is not None and subject.webhook and event in (subject.webhook_events or "").split(","))


def record_job(job_pk, event):
    """In the caller's transaction: the job's delivery of `event`, if its webhook wants it."""
    job = db.session.get(Job, job_pk, populate_existing=True)
    if wants(job, event):
        _supersede_outputs(job_pk=job.id)
        _add(event, job.webhook, job_body(job, event), job_pk=job.id)


def record_batch(batch_pk, event):
    batch = db.session.get(Batch, batch_pk, populate_existing=True)
    if wants(batch, event):
        _supersede_outputs(batch_pk=batch.id)
        _add(event, batch.webhook, batch_body(batch, event), batch_pk=batch.id)


def record_job_output(job_pk):
    """The job's text so far: one delivery not yet tried takes the newer text instead of a
    second being added, so a slow receiver gets one message per try, never a backlog."""
    job = db.session.get(Job, job_pk, populate_existing=True)
    if wants(job, "output"):
        _add_or_refresh("output", job.webhook, job_body(job, "output"), job_pk=job.id)


def record_batch_output(batch_pk):
    batch = db.session.get(Batch, batch_pk, populate_existing=True)
    if wants(batch, "output"):
        _add_or_refresh("output", batch.webhook, batch_body(batch, "output"), batch_pk=batch.id)


def job_body(job, event):
    """The job as its status route shows it, with its text for `output` and `completed`."""
    data = snapshots.snapshot(job)
    if event != "start":
        data["output"] = output.text_of(job)["text"]
    return _envelope(f"job.{event}", data)


def batch_body(batch, event):
    from webapp.batches import store  # store imports the outbox: a batch's start is recorded as it is made
    return _envelope(f"batch.{event}", batch_snapshots.snapshot(batch, store.running_items(batch)))


def _envelope(kind, data):
    """Standard Webhooks' recommended shape: type, timestamp, data."""
    return json.dumps({"type": kind, "timestamp": snapshots.iso(utcnow()), "data": data}, separators=(",", ":"))


def _add(event, url, body, due=None, **source):
    """`source` is job_pk= or batch_pk=: whose delivery it is."""
    now = utcnow()
    db.session.execute(sa.insert(WebhookDelivery).values(
        delivery_id=new_delivery_id(), event=event, url=url, body=body, status=PENDING, attempts=0,
        next_attempt_at=due or now, created_at=now, **source))


def _of(source):
    (column, pk), = source.items()
    return getattr(WebhookDelivery, column) == pk


def _add_or_refresh(event, url, body, **source):
    untried = (_of(source), WebhookDelivery.event == event, WebhookDelivery.status == PENDING,
               WebhookDelivery.attempts == 0, WebhookDelivery.lease_until.is_(None))
    if not db.session.execute(sa.update(WebhookDelivery).where(*untried).values(body=body)
                              .execution_options(synchronize_session=False)).rowcount:
        _supersede_outputs(**source)
        _add(event, url, body, due=utcnow() + OUTPUT_EVERY, **source)


def _supersede_outputs(**source):
    """Pending `output` deliveries that already failed a try, or whose sender died holding them,
    give way to the newer message being recorded. One being tried now is left to its sender,
    whose `settle` supersedes it if the try fails."""
    not_held = sa.or_(WebhookDelivery.lease_until.is_(None), WebhookDelivery.lease_until < utcnow())
    stale = (_of(source), WebhookDelivery.event == "output", WebhookDelivery.status == PENDING,
             sa.or_(WebhookDelivery.attempts > 0, WebhookDelivery.lease_until.is_not(None)), not_held)
    db.session.execute(sa.update(WebhookDelivery).where(*stale).values(status=SUPERSEDED)
                       .execution_options(synchronize_session=False))


# --- the sender's side ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Taken:
    """A claimed delivery, as the sender needs it (no row: it is sent outside any session)."""
    id: int
    delivery_id: str
    event: str
    url: str
    body: str
    attempts: int


def claim(now, lease_seconds, limit=8):
    """Up to `limit` deliveries due now, each the oldest pending one of its job or batch (so
    `start` goes before `completed`), leased to the caller."""
    ahead = sa.orm.aliased(WebhookDelivery)
    earlier = sa.exists().where(ahead.status == PENDING, ahead.id < WebhookDelivery.id, sa.or_(
        sa.and_(WebhookDelivery.job_pk.is_not(None), ahead.job_pk == WebhookDelivery.job_pk),
        sa.and_(WebhookDelivery.batch_pk.is_not(None), ahead.batch_pk == WebhookDelivery.batch_pk)))
    free = sa.or_(WebhookDelivery.lease_until.is_(None), WebhookDelivery.lease_until < now)
    due = (WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= now, free)
    pks = db.session.scalars(sa.select(WebhookDelivery.id).where(*due, ~earlier)
                             .order_by(WebhookDelivery.next_attempt_at).limit(limit)).all()
    taken = []
    for pk in pks:  # the conditional UPDATE is the arbiter between senders
        won = db.session.execute(sa.update(WebhookDelivery).where(WebhookDelivery.id == pk, *due)
                                 .values(lease_until=now + timedelta(seconds=lease_seconds))
                                 .execution_options(synchronize_session=False)).rowcount
        if won:
            row = db.session.get(WebhookDelivery, pk, populate_existing=True)
            taken.append(Taken(row.id, row.delivery_id, row.event, row.url, row.body, row.attempts))
        db.session.commit()
    db.session.commit()
    return taken


def settle(delivery, ok, status_code, error, delays):
    """After one try: delivered; or due again after the next of `delays`; or failed. Fenced: a
    sender whose lease ran out while it tried (another took the delivery since) writes nothing."""
    now = utcnow()
    tries = delivery.attempts + 1
    values = {"attempts": tries, "lease_until": None, "last_status_code": status_code, "last_error": error}
    if ok:
        values.update(status=DELIVERED, delivered_at=now, last_error=None)
    elif delivery.event == "output" and _overtaken(delivery.id):
        values.update(status=SUPERSEDED)  # newer text or the end was recorded while this was tried
    elif tries > len(delays):
        values.update(status=FAILED)
    else:
        values.update(next_attempt_at=now + timedelta(seconds=delays[tries - 1]))
    ours = (WebhookDelivery.id == delivery.id, WebhookDelivery.status == PENDING,
            WebhookDelivery.attempts == delivery.attempts)
    db.session.execute(sa.update(WebhookDelivery).where(*ours).values(**values)
                       .execution_options(synchronize_session=False))
    db.session.commit()


def _overtaken(pk):
    """Whether a later delivery of the same job or batch exists."""
    job_pk, batch_pk = db.session.execute(sa.select(WebhookDelivery.job_pk, WebhookDelivery.batch_pk)
                                          .where(WebhookDelivery.id == pk)).one()
    source = {"job_pk": job_pk} if job_pk is not None else {"batch_pk": batch_pk}
    return db.session.scalar(sa.select(WebhookDelivery.id).where(_of(source), WebhookDelivery.id > pk)
                             .limit(1)) is not None


# --- what the page and the API show --------------------------------------------------------------

def of_job(job_pk, limit=100):
    return _listed(WebhookDelivery.job_pk == job_pk, limit)


def of_batch(batch_pk, limit=100):
    return _listed(WebhookDelivery.batch_pk == batch_pk, limit)


def _listed(where, limit):
    """The newest `limit` deliveries, oldest first (a long job's outputs never hide its end)."""
    newest = db.session.scalars(sa.select(WebhookDelivery).where(where)
                                .order_by(WebhookDelivery.id.desc()).limit(limit)).all()
    return list(reversed(newest))


def prune(older_than, limit=1000):
    """Delete up to `limit` settled deliveries (delivered, failed, superseded) last scheduled
    before `older_than` (through ix_deliveries_due): their bodies are whole texts, which the job
    keeps anyway. Returns how many went; the next prune takes the rest."""
    settled = (WebhookDelivery.status.in_([DELIVERED, FAILED, SUPERSEDED]),
               WebhookDelivery.next_attempt_at < older_than)
    pks = db.session.scalars(sa.select(WebhookDelivery.id).where(*settled).limit(limit)).all()
    if pks:
        db.session.execute(sa.delete(WebhookDelivery).where(WebhookDelivery.id.in_(pks))
                           .execution_options(synchronize_session=False))
    db.session.commit()
    return len(pks)


def shown(delivery):
    """A delivery as the API shows it."""
    return {"id": delivery.delivery_id, "event": delivery.event, "status": delivery.status,
            "attempts": delivery.attempts, "last_status_code": delivery.last_status_code,
            "last_error": delivery.last_error,
            "next_attempt_at": snapshots.iso(delivery.next_attempt_at) if delivery.status == PENDING else None,
            "created_at": snapshots.iso(delivery.created_at), "delivered_at": snapshots.iso(delivery.delivered_at)}
