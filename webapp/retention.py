"""Retention: ended jobs past JOB_RETENTION_DAYS are deleted, text and all; a batch goes whole,
once it has ended, with its items."""
from datetime import timedelta

import sqlalchemy as sa

from webapp import statuses
from webapp.extensions import db
from webapp.models import Batch, Job, OutputPiece, WebhookDelivery, utcnow

BATCH = 1000  # jobs per transaction: a first purge of a large table must not hold locks for long


def purge(older_than_days, now=None):
    """Delete the jobs that ended more than `older_than_days` ago (queued and running ones stay),
    with their text pieces, and the batches that ended before then with all their items; returns
    how many jobs went."""
    before = (now or utcnow()) - timedelta(days=older_than_days)
    single = sa.select(Job.id).where(Job.status.in_(statuses.ENDED), Job.completed_at < before,
                                     Job.batch_pk.is_(None))
    deleted = _delete_jobs(single)
    ended = (Batch.status.in_(statuses.ENDED), Batch.completed_at < before)
    for batch_pk in db.session.scalars(sa.select(Batch.id).where(*ended)).all():
        deleted += _delete_batch(batch_pk, ended)
    return deleted


def _delete_batch(batch_pk, ended):
    """One batch with its items and their pieces, in one transaction, if it has still ended (a
    retry may have opened it again since it was listed)."""
    items = sa.select(Job.id).where(Job.batch_pk == batch_pk)
    count = db.session.scalar(sa.select(sa.func.count()).select_from(items.subquery()))
    if not db.session.execute(sa.delete(Batch).where(Batch.id == batch_pk, *ended)).rowcount:
        db.session.rollback()
        return 0
    # MySQL's ON DELETE CASCADE took the items and pieces already; SQLite does not enforce it.
    db.session.execute(sa.delete(OutputPiece).where(OutputPiece.job_pk.in_(items)))
    db.session.execute(sa.delete(WebhookDelivery).where(WebhookDelivery.batch_pk == batch_pk))
    db.session.execute(sa.delete(Job).where(Job.batch_pk == batch_pk))
    db.session.commit()
    return count


def _delete_jobs(query):
    """Delete the jobs `query` selects, BATCH at a time, each with its text pieces."""
    deleted = 0
    while ids := db.session.scalars(query.order_by(Job.id).limit(BATCH)).all():
        # The pieces first: SQLite does not enforce the foreign key's ON DELETE CASCADE.
        db.session.execute(sa.delete(OutputPiece).where(OutputPiece.job_pk.in_(ids)))
        db.session.execute(sa.delete(WebhookDelivery).where(WebhookDelivery.job_pk.in_(ids)))
        deleted += db.session.execute(sa.delete(Job).where(Job.id.in_(ids))).rowcount
        db.session.commit()
    return deleted
