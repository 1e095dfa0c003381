"""Fair turns: which queued job runs next, and each queued job's expected place in line.

The rule: the runnable job of the owner with the fewest jobs running goes first; among owners
with as many running, the oldest job. So an owner's m-th queued job takes its turn at
(jobs that owner has running + m - 1, its id), and the queue runs in the order of that pair:
one owner's 500 queued jobs take turns with everyone else's instead of going first."""
import time

import sqlalchemy as sa

from webapp import statuses
from webapp.extensions import db
from webapp.models import Job, utcnow

SLOW_PLACES = 0.02  # s: a pass over the queue slower than this is kept a while (see places)
_kept = {}  # (database, job pks) -> (until when, places)


def running_counts():
    """{owner: jobs running}: few rows (no more than the workers' slots)."""
    query = (sa.select(Job.owner, sa.func.count()).where(Job.status == statuses.PROCESSING)
             .group_by(Job.owner))
    return dict(db.session.execute(query).all())


def next_job(now):
    """The pk of the job whose turn it is, or None. On MySQL the row taken is locked with SKIP
    LOCKED, so concurrent claimers pass over each other's pick instead of waiting on it."""
    running = running_counts()
    for level in sorted({0, *running.values()}):
        if level == 0:  # the owners with nothing running: one scan for all of them, the pick locked
            pick = _head(now, Job.owner.not_in(list(running)) if running else sa.true(), lock=True)
            if pick is not None:
                return pick
            continue
        # An owner at a time (each one short read of its own line), then only the pick is locked:
        # a concurrent claimer must not skip the other heads for a second job of this owner.
        heads = sorted(pk for owner, count in running.items() if count == level
                       if (pk := _head(now, Job.owner == owner, lock=False)) is not None)
        for pk in heads:
            if _lock(pk):
                return pk
    return None


def _runnable(now):
    return Job.status == statuses.QUEUED, Job.run_after <= now, Job.cancel_requested.is_(False)


def _locking(query):
    return query.with_for_update(skip_locked=True) if db.engine.dialect.name in ("mysql", "mariadb") else query


def _head(now, where, lock):
    query = sa.select(Job.id).where(*_runnable(now), where).order_by(Job.id).limit(1)
    return db.session.execute(_locking(query) if lock else query).scalar_one_or_none()


def _lock(pk):
    """Whether this queued job could be locked (on SQLite the claim's conditional UPDATE decides)."""
    query = sa.select(Job.id).where(Job.id == pk, Job.status == statuses.QUEUED)
    return db.session.execute(_locking(query)).scalar_one_or_none() is not None


def places(jobs, clock=time.monotonic):
    """{pk: expected place in line} for these queued jobs (1 = the next to start), in two reads:
    the running counts, and one pass over the runnable queue counting, per owner, its jobs and
    those older than each of `jobs`. Jobs that arrive later or end meanwhile can change it.
    The pass is index-only (ix_jobs_queue_head) and sends back a row per owner, but it costs
    what the queue holds: when it takes long (a queue of 100,000), its answer is kept for ten
    times as long, so asking about the same jobs spends at most a tenth of the time on it."""
    if not jobs:
        return {}
    key = (str(db.engine.url), tuple(sorted(job.id for job in jobs)))
    kept = _kept.get(key)
    if kept and kept[0] > clock():
        return kept[1]
    started = clock()
    found = _count_places(jobs)
    took = clock() - started
    if took > SLOW_PLACES:
        if len(_kept) > 256:
            _kept.clear()
        _kept[key] = (clock() + 10 * took, found)
    return found


def _count_places(jobs):
    running = running_counts()
    older = [sa.func.sum(sa.case((Job.id < job.id, 1), else_=0)) for job in jobs]
    query = sa.select(Job.owner, sa.func.count(), *older).where(*_runnable(utcnow())).group_by(Job.owner)
    lines = {owner: (queued, [int(n or 0) for n in ahead]) for owner, queued, *ahead in db.session.execute(query)}
    return {job.id: _place(job, index, lines, running) for index, job in enumerate(jobs)}


def _place(job, index, lines, running):
    """1 + the queued jobs whose turn comes first: the owner's own older ones, and from every
    other owner those whose (running + place in its own line) is lower, or equal and older."""
    own_ahead = lines.get(job.owner, (0, [0] * (index + 1)))[1][index]
    turn = running.get(job.owner, 0) + own_ahead
    place = 1 + own_ahead
    for owner, (queued, ahead) in lines.items():
        if owner != job.owner:
            lead = turn - running.get(owner, 0)  # how many of its jobs come first outright
            place += min(queued, max(0, lead + (ahead[index] > lead)))
    return place
