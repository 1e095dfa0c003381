"""Retention: ended jobs past JOB_RETENTION_DAYS are deleted, text and all."""
from datetime import timedelta

import sqlalchemy as sa

from webapp import statuses
from webapp.extensions import db
from webapp.models import Job, OutputPiece, utcnow

BATCH = 1000  # jobs per transaction: a first purge of a large table must not hold locks for long


def purge(older_than_days, now=None):
    """Delete the jobs that ended more than `older_than_days` ago (queued and running ones stay),
    with their text pieces; returns how many jobs went."""
    before = (now or utcnow()) - timedelta(days=older_than_days)
    old = (sa.select(Job.id).where(Job.status.in_(statuses.ENDED), Job.completed_at < before)
           .order_by(Job.id).limit(BATCH))
    deleted = 0
    while ids := db.session.scalars(old).all():
        # The pieces first: SQLite does not enforce the foreign key's ON DELETE CASCADE.
        db.session.execute(sa.delete(OutputPiece).where(OutputPiece.job_pk.in_(ids)))
        deleted += db.session.execute(sa.delete(Job).where(Job.id.in_(ids))).rowcount
        db.session.commit()
    return deleted
