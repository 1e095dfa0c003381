"""Fair turns: which queued job runs next, and each queued job's expected place in line.

The rule: the runnable job of the owner with the fewest jobs running goes first; among owners
with as many running, the oldest job. So an owner's m-th queued job takes its turn at
(jobs that owner has running + m - 1, its id), and the queue runs in the order of that pair:
one owner's 500 queued jobs take turns with everyone else's instead of going first."""
import sqlalchemy as sa

from webapp import statuses
from webapp.extensions import db
from webapp.models import Job


def running_counts():
    """{owner: jobs running}: few rows (no more than the workers' slots)."""
    query = (sa.select(Job.owner, sa.func.count()).where(Job.status == statuses.PROCESSING)
             .group_by(Job.owner))
    return dict(db.session.execute(query).all())


def next_job(now):
    """The pk of the job whose turn it is, or None. On MySQL the rows read are locked with SKIP
    LOCKED, so concurrent claimers pass over each other's picks instead of waiting on them."""
    running = running_counts()
    for level in sorted({0, *running.values()}):
        if level == 0:  # the owners with nothing running: one scan for all of them
            wheres = [Job.owner.not_in(list(running))] if running else [sa.true()]
        else:  # an owner at a time: each is one short read of its own line (ix_jobs_turns)
            wheres = [Job.owner == owner for owner, count in running.items() if count == level]
        heads = [pk for pk in (_head(now, where) for where in wheres) if pk is not None]
        if heads:
            return min(heads)
    return None


def _head(now, where):
    query = (sa.select(Job.id)
             .where(Job.status == statuses.QUEUED, where, Job.run_after <= now, Job.cancel_requested.is_(False))
             .order_by(Job.id).limit(1))
    if db.engine.dialect.name in ("mysql", "mariadb"):
        query = query.with_for_update(skip_locked=True)
    return db.session.execute(query).scalar_one_or_none()


def places(jobs):
    """{pk: expected place in line} for these queued jobs (1 = the next to start), in two reads:
    the running counts, and one pass over the queue counting, per owner, its queued jobs and
    those older than each of `jobs`. Jobs that arrive later or end meanwhile can change it."""
    if not jobs:
        return {}
    running = running_counts()
    older = [sa.func.sum(sa.case((Job.id < job.id, 1), else_=0)) for job in jobs]
    query = (sa.select(Job.owner, sa.func.count(), *older).where(Job.status == statuses.QUEUED)
             .group_by(Job.owner))
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
