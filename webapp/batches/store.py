"""Batches made (a few multi-row inserts), read (a constant number of rows, however large),
cancelled and retried as a whole."""
import sqlalchemy as sa

from webapp import statuses
from webapp.batches.counters import bump, close
from webapp.estimates import prompt_kind
from webapp.extensions import commit_keeping, db
from webapp.models import Batch, Job, new_job_id, utcnow
from webapp.telemetry import totals
from webapp.webhooks import outbox

MAX_ITEMS = 10_000
INSERT_ROWS = 1_000  # rows per executemany: multi-row INSERTs (the driver splits them by size), one transaction
LOG_LINES = 200      # the page shows the newest lines; the download has them all
# What a batch item is back to when its failure is retried: queued, from the start.
RETRIED = {"status": statuses.QUEUED, "phase": None, "worker_id": None, "lease_until": None,
           "current_tokens": 0, "progress_percentage": 0.0, "tokens_per_second": 0.0, "elapsed_time": 0,
           "estimated_time_remaining": None, "estimated_time_remaining_low": None,
           "estimated_time_remaining_high": None, "expected_tokens": None, "output_chars": 0,
           "thinking_chars": 0, "thinking_tokens": 0, "output_latest": None, "result": None, "thinking": None,
           "attempts": 0, "error_message": None, "completed_at": None, "started_at": None,
           "cancel_requested": False, "batch_seq": None, "prompt_tokens": None, "completion_tokens": None,
           "total_tokens": None}


def create(owner, items, model, webhook=None, webhook_events=None):
    """A batch of `items` (cleaned job requests: prompt, model, system, options), all queued in one
    transaction, in multi-row inserts, with its webhook's `start` delivery. `model` is the batch's
    default, shown as its model."""
    now = utcnow()
    batch = Batch(batch_id=new_job_id(), owner=owner, model=model, total=len(items), status=statuses.PROCESSING,
                  completed=0, failed=0, cancelled=0, tokens=0, item_ms=0, log_seq=0, cancel_requested=False,
                  version=1, created_at=now, last_update_at=now, webhook=webhook, webhook_events=webhook_events)
    db.session.add(batch)
    db.session.flush()
    rows = [_item_row(batch.id, owner, index, item, now) for index, item in enumerate(items)]
    for start in range(0, len(rows), INSERT_ROWS):
        db.session.execute(sa.insert(Job), rows[start:start + INSERT_ROWS])
    outbox.record_batch(batch.id, "start")
    commit_keeping(batch, "id", "batch_id", "total")  # the 202 says them
    return batch


def _item_row(batch_pk, owner, index, item, now):
    return {"job_id": new_job_id(), "owner": owner, "batch_pk": batch_pk, "batch_index": index,
            "status": statuses.QUEUED, "prompt": item["prompt"], "system": item.get("system"),
            "model": item["model"], "options": item.get("options") or {},
            "prompt_kind": prompt_kind(item["prompt"], item.get("system")),
            "created_at": now, "run_after": now, "last_update_at": now}


def get(batch_id):
    """The batch with this public id, read fresh, or None."""
    if not isinstance(batch_id, str) or len(batch_id) > 64:
        return None
    query = sa.select(Batch).where(Batch.batch_id == batch_id).execution_options(populate_existing=True)
    return db.session.execute(query).scalar_one_or_none()


def of_item(job):
    """The batch a job is an item of, or None."""
    return db.session.get(Batch, job.batch_pk) if job.batch_pk is not None else None


def owned(owner, limit, after=None):
    """This owner's batches, newest first, older than the batch `after` (a pk)."""
    query = sa.select(Batch).where(Batch.owner == owner).order_by(Batch.id.desc()).limit(limit)
    if after is not None:
        query = query.where(Batch.id < after)
    return list(db.session.scalars(query))


def running_items(batch):
    """The batch's items running now, read in one statement with the batch row itself (refreshed
    in place): counters and running items of one moment, so an item that ends meanwhile is never
    counted in neither. No more rows than the workers have slots: the items are reached through
    the owner's running jobs (ix_jobs_turns), not through the batch's items."""
    running = sa.and_(Job.batch_pk == Batch.id, Job.status == statuses.PROCESSING, Job.owner == Batch.owner)
    query = (sa.select(Batch, Job).outerjoin(Job, running).where(Batch.id == batch.id)
             .order_by(Job.batch_index).execution_options(populate_existing=True))
    return [job for _batch, job in db.session.execute(query) if job is not None]


def items(batch, after=-1, limit=100):
    """The batch's items in order, from index `after` + 1."""
    return items_of(batch.id, after, limit)


def items_of(batch_pk, after=-1, limit=100):
    query = (sa.select(Job).where(Job.batch_pk == batch_pk, Job.batch_index > after)
             .order_by(Job.batch_index).limit(limit))
    return list(db.session.scalars(query))


def log(batch, after=0, limit=LOG_LINES):
    """The items that ended after log number `after`, in the order they ended."""
    return log_of(batch.id, after, limit)


def log_of(batch_pk, after=0, limit=LOG_LINES):
    query = (sa.select(Job).where(Job.batch_pk == batch_pk, Job.batch_seq > after)
             .order_by(Job.batch_seq).limit(limit))
    return list(db.session.scalars(query))


def last_lines(batch, count=LOG_LINES):
    """The newest `count` ended items, oldest first (what the page's console shows)."""
    query = (sa.select(Job).where(Job.batch_pk == batch.id, Job.batch_seq.is_not(None))
             .order_by(Job.batch_seq.desc()).limit(count))
    return list(reversed(db.session.scalars(query).all()))


def cancel(batch):
    """Cancel the batch: its queued items at once, in one transaction (so none starts after it),
    its running ones asked to stop (their worker ends them `cancelled`, text kept). Returns the
    number of items cancelled at once, or None when the batch had already ended."""
    now = utcnow()
    # The items' rows first, then the batch's: the order in which an item's end takes them, so
    # the two never wait on each other in a circle. A claim skips an item flagged here.
    live = (Job.batch_pk == batch.id, Job.status.in_([statuses.QUEUED, statuses.PROCESSING]))
    db.session.execute(sa.update(Job).where(*live).values(cancel_requested=True, version=Job.version + 1,
                                                           last_update_at=now)
                       .execution_options(synchronize_session=False))
    asked = db.session.execute(sa.update(Batch).where(Batch.id == batch.id, Batch.status == statuses.PROCESSING,
                                                      Batch.cancel_requested.is_(False))
                               .values(bump(cancel_requested=True))).rowcount
    if not asked:  # ended (None), or a cancel already under way (0: nothing more to do)
        db.session.rollback()
        return None if batch_ended(batch.id) else 0
    base, last_end = db.session.execute(sa.select(Batch.log_seq, Batch.last_ended_at)
                                        .where(Batch.id == batch.id)).one()
    now = max(now, last_end or now)  # the log's times never run backwards
    queued = (sa.update(Job).where(Job.batch_pk == batch.id, Job.status == statuses.QUEUED)
              .values(status=statuses.CANCELLED, completed_at=now, error_message="Cancelled with its batch.",
                      batch_seq=base + 1 + Job.batch_index, version=Job.version + 1, last_update_at=now))
    cancelled = db.session.execute(queued.execution_options(synchronize_session=False)).rowcount
    db.session.execute(sa.update(Batch).where(Batch.id == batch.id)
                       .values(cancelled=Batch.cancelled + cancelled, log_seq=base + 1 + batch.total,
                               last_ended_at=now if cancelled else last_end))
    totals.cancelled(cancelled)
    if db.session.execute(close(Batch.id == batch.id)).rowcount:
        outbox.record_batch(batch.id, "completed")
    db.session.commit()
    return cancelled


def batch_ended(batch_pk):
    return db.session.scalar(sa.select(Batch.status).where(Batch.id == batch_pk)) in statuses.ENDED


def remaining_items(owner):
    """How many items this owner's unfinished batches have yet to end (from the batch rows)."""
    left = sa.func.coalesce(sa.func.sum(Batch.total - Batch.completed - Batch.failed - Batch.cancelled), 0)
    return int(db.session.scalar(sa.select(left).where(Batch.owner == owner, Batch.status == statuses.PROCESSING)))


def retry_failed(batch):
    """Queue the batch's failed items again, from the start; returns how many. What they had
    counted comes off the counters, and their lines leave the log (an item's line is its latest end)."""
    failed = (Job.batch_pk == batch.id, Job.status == statuses.FAILED)
    # The items' rows first (locked by this read), then the batch's: the order an item's end
    # takes them, so the two never wait on each other in a circle.
    count, tokens, took = db.session.execute(sa.select(
        sa.func.count(), sa.func.coalesce(sa.func.sum(Job.current_tokens), 0),
        sa.func.coalesce(sa.func.sum(Job.elapsed_time), 0)).where(*failed).with_for_update()).one()
    if count:
        again = sa.update(Job).where(*failed).values(**RETRIED, run_after=utcnow(), version=Job.version + 1,
                                                     last_update_at=utcnow())
        db.session.execute(again.execution_options(synchronize_session=False))
        db.session.execute(sa.update(Batch).where(Batch.id == batch.id).values(bump(
            failed=Batch.failed - count, tokens=Batch.tokens - int(tokens), item_ms=Batch.item_ms - int(took),
            status=statuses.PROCESSING, completed_at=None, cancel_requested=False)))
    db.session.commit()
    return count
