"""The queue: enqueue, claim, fenced progress writes, finish, retry, recover, cancel."""
from datetime import timedelta

import sqlalchemy as sa

from webapp import owners, statuses, turns
from webapp.batches import counters
from webapp.estimates import prompt_kind
from webapp.extensions import commit_keeping, db
from webapp.models import Job, new_job_id, utcnow
from webapp.telemetry import totals
from webapp.webhooks import outbox


def _bump(**values):
    """Every write changes `version` (the change counter and SSE id) and `last_update_at`."""
    return {"version": Job.version + 1, "last_update_at": utcnow(), **values}


def _update(where, then=None, **values):
    """One conditional UPDATE in its own short transaction; returns the number of rows changed.
    `then` (a statement or a function, or a list of them) runs in the same transaction, only if
    the UPDATE changed the row."""
    statement = sa.update(Job).where(*where).values(**_bump(**values))
    # No ORM synchronisation: callers re-read what they need; it would cost a SELECT per write.
    result = db.session.execute(statement.execution_options(synchronize_session=False))
    if result.rowcount and then is not None:
        for follow_up in then if isinstance(then, list) else [then]:
            if callable(follow_up):
                follow_up()
            elif follow_up is not None:
                db.session.execute(follow_up)
    db.session.commit()
    return result.rowcount


def _ended(job_pk, status):
    """What goes with a job's end, in its transaction: its batch's counters, its webhook, and the
    totals /metrics shows (last: every end takes their locks after the others)."""
    return [*counters.item_ended(job_pk, status), lambda: outbox.record_job(job_pk, "completed"),
            lambda: totals.job_ended(job_pk)]


def enqueue(prompt, model, system=None, options=None, owner=owners.ANONYMOUS, webhook=None, webhook_events=None):
    """A new queued job, its ids readable after the commit without a query (commit_keeping)."""
    job = Job(job_id=new_job_id(), owner=owner, prompt=prompt, model=model, system=system,
              options=options or {}, status=statuses.QUEUED, prompt_kind=prompt_kind(prompt, system),
              webhook=webhook, webhook_events=webhook_events)
    db.session.add(job)
    db.session.flush()
    commit_keeping(job, "id", "job_id")
    return job


def get(job_id):
    """The job with this public id, read fresh, or None."""
    if not isinstance(job_id, str) or len(job_id) > 64:
        return None
    query = sa.select(Job).where(Job.job_id == job_id).execution_options(populate_existing=True)
    return db.session.execute(query).scalar_one_or_none()


def recent(owner, limit=20):
    """This owner's newest single jobs (a batch's items show on its page)."""
    query = (sa.select(Job).where(Job.owner == owner, Job.batch_pk.is_(None))
             .order_by(Job.id.desc()).limit(limit))
    return list(db.session.scalars(query))


def owned(owner_names, limit, after=None, status=None, model=None):
    """These owners' single jobs (not batch items), newest first: `limit` of them, older than the
    job `after` (a pk)."""
    query = (sa.select(Job).where(Job.owner.in_(list(owner_names)), Job.batch_pk.is_(None))
             .order_by(Job.id.desc()).limit(limit))
    if after is not None:
        query = query.where(Job.id < after)
    if status:
        query = query.where(Job.status == status)
    if model:
        query = query.where(Job.model == model)
    return list(db.session.scalars(query))


def queued_count(owner, cap):
    """How many single jobs (not batch items) this owner has queued, counted up to `cap`."""
    mine = (sa.select(Job.id).where(Job.status == statuses.QUEUED, Job.owner == owner, Job.batch_pk.is_(None))
            .limit(cap))
    return db.session.scalar(sa.select(sa.func.count()).select_from(mine.subquery()))


def get_many(job_ids):
    """The jobs with these public ids that exist, read fresh, in one query."""
    query = (sa.select(Job).where(Job.job_id.in_(list(job_ids)))
             .execution_options(populate_existing=True))
    return list(db.session.scalars(query))


def queue_positions(queued_jobs):
    """{pk: expected place in line} for these queued jobs (1 = the next to be claimed)."""
    return turns.places(queued_jobs)


def claim(worker_id, lease_seconds):
    """Take the runnable queued job whose turn it is (`turns`) for `worker_id`, or None. Safe
    under many claimers."""
    now = utcnow()
    for _ in range(5):
        job_pk = turns.next_job(now)
        if job_pk is None:
            db.session.commit()
            return None
        # The conditional UPDATE is the arbiter: on SQLite, whoever changes the row won it.
        won = _update((Job.id == job_pk, Job.status == statuses.QUEUED), then=_told(job_pk, "start"),
                      status=statuses.PROCESSING,
                      phase="waiting_model", worker_id=worker_id, attempts=Job.attempts + 1, runs=Job.runs + 1,
                      error_message=None,  # a retry's "trying again" note is over; last_error stays
                      started_at=sa.func.coalesce(Job.started_at, now),
                      lease_until=now + timedelta(seconds=lease_seconds))
        if won:
            return db.session.get(Job, job_pk, populate_existing=True)
    return None


def _told(job_pk, event):
    return lambda: outbox.record_job(job_pk, event)


def _owned(job_pk, worker_id):
    return (Job.id == job_pk, Job.worker_id == worker_id, Job.status == statuses.PROCESSING)


def heartbeat(job_pk, worker_id, lease_seconds, pieces=None, tell_output=False, **fields):
    """Fenced progress write that renews the lease, with the text's new `pieces` (an INSERT of
    output rows) in the same transaction: the row's character counts and the pieces always agree;
    and, with `tell_output`, the webhook's `output` delivery. False: the job is no longer ours to
    run (cancel requested, recovered by the sweep, or taken by another worker), and nothing was
    written."""
    where = (*_owned(job_pk, worker_id), Job.cancel_requested.is_(False))
    lease = utcnow() + timedelta(seconds=lease_seconds)
    then = [pieces, (lambda: outbox.record_job_output(job_pk)) if tell_output else None]
    return _update(where, then=then, lease_until=lease, **fields) == 1


def finish(job_pk, worker_id, status, **fields):
    """Fenced final write: `completed`, `failed` or `cancelled`. A cancel that came after the
    generation finished does not stop it from being completed."""
    return _update(_owned(job_pk, worker_id), then=_ended(job_pk, status), status=status,
                   completed_at=utcnow(), phase=None, worker_id=None, lease_until=None, output_latest=None,
                   **fields) == 1


# A job back in the queue starts its progress and its text over (and says why it is there).
REQUEUED = {"status": statuses.QUEUED, "phase": None, "worker_id": None, "lease_until": None,
            "current_tokens": 0, "progress_percentage": 0.0, "tokens_per_second": 0.0, "elapsed_time": 0,
            "estimated_time_remaining": None, "estimated_time_remaining_low": None,
            "estimated_time_remaining_high": None, "expected_tokens": None,
            "output_chars": 0, "thinking_chars": 0, "thinking_tokens": 0, "output_latest": None}


def retry_later(job_pk, worker_id, delay_seconds, message, last_error=None):
    """Back to the queue after `delay_seconds`. `message` is what people see while it waits;
    `last_error` (the bare reason, default `message`) is shown while the next attempt runs."""
    return _update(_owned(job_pk, worker_id), **REQUEUED, error_message=message,
                   last_error=last_error or message,
                   run_after=utcnow() + timedelta(seconds=delay_seconds)) == 1


def release(job_pk, worker_id):
    """Give an unfinished job back (shutdown): queued again, the attempt refunded."""
    return _update(_owned(job_pk, worker_id), **REQUEUED, attempts=Job.attempts - 1) == 1


def cancel_requested(job_pk):
    return bool(db.session.execute(
        sa.select(Job.cancel_requested).where(Job.id == job_pk)).scalar_one_or_none())


def request_cancel(job):
    """'cancelled' (a queued job, at once), 'requested' (a running job; the worker stops it),
    or None once the job has ended."""
    if _update((Job.id == job.id, Job.status == statuses.QUEUED), then=_ended(job.id, statuses.CANCELLED),
               status=statuses.CANCELLED, completed_at=utcnow(), error_message="Cancelled before it started."):
        return statuses.CANCELLED
    if _update((Job.id == job.id, Job.status == statuses.PROCESSING), cancel_requested=True):
        return "requested"
    return None


def recover_expired(max_attempts):
    """Sweep jobs whose worker stopped renewing its lease. Idempotent; returns rows changed."""
    now = utcnow()
    expired = (Job.status == statuses.PROCESSING, Job.lease_until < now)
    changed = _end_each((*expired, Job.cancel_requested.is_(True)), statuses.CANCELLED,
                        worker_id=None, lease_until=None, phase=None, completed_at=now, error_message="Cancelled.")
    changed += _update((*expired, Job.attempts < max_attempts), **REQUEUED, run_after=now,
                       error_message="The worker running this job was lost; it was queued again.",
                       last_error="The worker running it was lost.")
    # A cancel that came while the job was being put back in the queue.
    changed += _end_each((Job.status == statuses.QUEUED, Job.cancel_requested.is_(True)), statuses.CANCELLED,
                         completed_at=now, error_message="Cancelled.")
    changed += _end_each(expired, statuses.FAILED, worker_id=None, lease_until=None, phase=None, completed_at=now,
                         error_message=f"The worker was lost {max_attempts} times; giving up.")
    return changed


def _end_each(where, status, limit=500, **values):
    """End the jobs `where` holds, one short transaction each, so a batch counts every end (the
    sweep finds few: a lost worker's jobs). The next sweep takes any past `limit`."""
    pks = db.session.scalars(sa.select(Job.id).where(*where).limit(limit)).all()
    db.session.commit()
    return sum(_update((Job.id == pk, *where), then=_ended(pk, status), status=status, **values)
               for pk in pks)
