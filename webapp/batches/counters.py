"""A batch's counters, kept as its items end: the statements that go into the transaction that
ends an item, so the counters always agree with the items."""
import sqlalchemy as sa

from webapp import statuses
from webapp.extensions import db
from webapp.models import Batch, Job, utcnow
from webapp.webhooks import outbox

TIMED = (statuses.COMPLETED, statuses.FAILED)  # the ends whose time says how long an item takes


def bump(**values):
    return {"version": Batch.version + 1, "last_update_at": utcnow(), **values}


def item_ended(job_pk, status):
    """The statements that count an item's end in its batch, to run in the transaction that
    ended it (for a job outside any batch they change nothing). The batch row's lock orders
    concurrent ends, so each item's log number is given in commit order."""
    batch_of = sa.select(Job.batch_pk).where(Job.id == job_pk).scalar_subquery()

    def own(column):
        value = column if column is Job.completed_at else sa.func.coalesce(column, 0)
        return sa.select(value).where(Job.id == job_pk).scalar_subquery()

    ended_at = own(Job.completed_at)
    count = (sa.update(Batch).where(Batch.id == batch_of)
             .values(bump(**{status: getattr(Batch, status) + 1}, log_seq=Batch.log_seq + 1,
                           tokens=Batch.tokens + own(Job.current_tokens),
                           # an item's time for the mean: only what ran to an end of its own
                           item_ms=Batch.item_ms + (own(Job.elapsed_time) if status in TIMED else 0),
                           last_ended_at=later(Batch.last_ended_at, ended_at))))
    # The item's number, and its end time no earlier than the end numbered before it.
    ours = sa.select(Batch.log_seq, Batch.last_ended_at).where(Batch.id == Job.batch_pk)
    number = (sa.update(Job).where(Job.id == job_pk, Job.batch_pk.is_not(None))
              .values(batch_seq=ours.with_only_columns(Batch.log_seq).scalar_subquery(),
                      completed_at=ours.with_only_columns(Batch.last_ended_at).scalar_subquery()))
    return [count, number, lambda: close_and_tell(job_pk)]


def close_and_tell(job_pk):
    """After an item's end is counted: its batch's end if that was the last, else one more item
    ended; each told to the batch's webhook, in the same transaction."""
    batch_pk = db.session.scalar(sa.select(Job.batch_pk).where(Job.id == job_pk))
    if batch_pk is None:
        return
    if db.session.execute(close(Batch.id == batch_pk)).rowcount:
        outbox.record_batch(batch_pk, "completed")
    else:
        outbox.record_batch_output(batch_pk)


def later(column, value):
    """The later of a nullable timestamp column and a value, in SQL either database speaks."""
    return sa.case((column.is_(None), value), (column > value, column), else_=value)


def close(which):
    """The batch ends once every item has: `cancelled` if a cancel was asked, else `completed`."""
    done = Batch.completed + Batch.failed + Batch.cancelled >= Batch.total
    ending = sa.case((Batch.cancel_requested.is_(True), statuses.CANCELLED), else_=statuses.COMPLETED)
    return (sa.update(Batch).where(which, done, Batch.status == statuses.PROCESSING)
            .values(bump(status=ending, completed_at=utcnow())))
