"""What the operator's page reads (queue, turns, workers, failures, models), each read bounded."""
import time
from dataclasses import dataclass

import sqlalchemy as sa

from webapp import history, owners, statuses, turns
from webapp.estimates import quantile
from webapp.extensions import db
from webapp.models import ApiKey, Job, utcnow

SLOW_PASS = 0.02     # s: a pass over the queue slower than this is kept a while (queue_heads)
IN_LINE = 10         # queued jobs shown in the order they will start
RUNNING_CAP = 200    # running jobs read at most: more than a fleet's slots
FAILURES = 20
MODELS = 8           # models shown, the most recently completed first
MODEL_WINDOW = 1000  # newest completed jobs whose models are shown
SHOWN_CHARS = 300    # of a prompt or an error message: the page lists, it does not read
SPREAD = (0.1, 0.5, 0.9)
_kept = {}  # database -> (until when, queue heads)


@dataclass(frozen=True)
class Spread:
    """The 10th, 50th and 90th percentile of some figures, and how many there were."""

    low: float
    median: float
    high: float
    count: int


def spread(values):
    return Spread(*(quantile(values, q) for q in SPREAD), len(values)) if values else None


def ms_between(later, earlier):
    return None if later is None or earlier is None else int((later - earlier).total_seconds() * 1000)


def ms_since(now, moment):
    """Never below 0: a row written just after `now` was taken is not in the future."""
    since = ms_between(now, moment)
    return None if since is None else max(since, 0)


def _by_id(query):
    # Read through (status, id): left to itself MariaDB may walk the primary key past every job
    # of another status instead (as history._read_pace found).
    for dialect in ("mysql", "mariadb"):
        query = query.with_hint(Job, "FORCE INDEX (ix_jobs_queue_head)", dialect)
    return query


def queue_heads(clock=time.monotonic):
    """{owner: (its oldest queued job's pk, its queued jobs)}: one index-only pass over the queue
    (ix_jobs_turns), which sends back a row per owner. Like `turns.places`, a pass that took long
    (a queue of 100,000) is kept ten times as long as it took, so a polled page spends at most a
    tenth of its time on it."""
    key = str(db.engine.url)  # one process may serve several databases (tests)
    until, heads = _kept.get(key, (0.0, None))
    if heads is not None and until > clock():
        return heads
    started = clock()
    query = (sa.select(Job.owner, sa.func.min(Job.id), sa.func.count()).where(Job.status == statuses.QUEUED)
             .group_by(Job.owner))
    heads = {owner: (head, count) for owner, head, count in db.session.execute(query)}
    took = clock() - started
    _kept[key] = (clock() + 10 * took if took > SLOW_PASS else 0.0, heads)
    return heads


def queue_summary(heads, now=None):
    """How many jobs wait, and how long the oldest has waited (ms)."""
    oldest = min((head for head, _count in heads.values()), default=None)
    created = db.session.scalar(sa.select(Job.created_at).where(Job.id == oldest)) if oldest is not None else None
    _running, took = history.pace()  # seconds a job takes: median, 20th and 80th percentile
    return {"queued": sum(count for _head, count in heads.values()),
            "oldest_wait_ms": ms_since(now or utcnow(), created),
            "pace": dict(zip(("median", "low", "high"), took, strict=True)) if took else None}


def next_in_line(heads, now=None, limit=IN_LINE):
    """The next `limit` runnable queued jobs in the order the claim takes them (`turns`): an
    owner's k-th runnable job at (its running jobs + k, id). Owners are read `limit` at a time in
    the order of their first possible turn, until `limit` jobs found come before the next owner's
    first job, and so before all its others: usually one round, however many owners wait."""
    now = now or utcnow()
    running = turns.running_counts()
    firsts = sorted((running.get(owner, 0) + 1, head, owner) for owner, (head, _count) in heads.items())
    found = []
    for start in range(0, len(firsts), limit):
        if len(found) >= limit and found[limit - 1] < firsts[start][:2]:
            break
        batch = firsts[start:start + limit]
        lines = _lines([owner for *_first, owner in batch], now, limit)
        found = sorted(found + [(turn + rank, pk) for turn, _head, owner in batch
                                for rank, pk in enumerate(lines[owner])])
    pks = [pk for _turn, pk in found[:limit]]
    rows = {row.id: row for row in db.session.execute(_listed(Job.id, Job.created_at).where(Job.id.in_(pks)))}
    return [{**row._asdict(), "place": place, "wait_ms": ms_since(now, row.created_at)}
            for place, row in enumerate((rows[pk] for pk in pks if pk in rows), 1)]


def _lines(names, now, limit):
    """{owner: its first `limit` runnable queued jobs' pks}, in two reads for all these owners:
    each one's first 2 x `limit` queued jobs (index-only, ix_jobs_turns), then which of them may
    run (the claim's rule, as in turns: no back-off pending, no cancel asked for). Asked for both
    at once, SQLite walks the whole queue in id order instead. An owner with more than `limit` of
    its first jobs waiting out a back-off shows fewer than it might: a rare, passing state."""
    firsts = [sa.select(Job.id, Job.owner).where(Job.status == statuses.QUEUED, Job.owner == owner)
              .order_by(Job.id).limit(2 * limit).subquery().select() for owner in names]
    queued = dict(db.session.execute(sa.union_all(*firsts)).all())  # pk -> owner
    may_run = sa.select(Job.id).where(Job.id.in_(list(queued)), Job.run_after <= now, Job.cancel_requested.is_(False))
    lines = {owner: [] for owner in names}
    for pk in db.session.scalars(may_run.order_by(Job.id)):
        if len(lines[queued[pk]]) < limit:
            lines[queued[pk]].append(pk)
    return lines


def _listed(*columns):
    """What every list shows of a job, and the start of its prompt (never the whole text)."""
    return sa.select(Job.job_id, Job.owner, Job.model, Job.batch_pk, Job.attempts,
                     sa.func.substr(Job.prompt, 1, SHOWN_CHARS).label("prompt"), *columns)


def running_by_worker(now=None):
    """{worker id: its running jobs}, each with how long ago its row was last written (a progress
    write renews the lease) and how long its lease has left (negative: run out, to be recovered)."""
    now = now or utcnow()
    query = (_listed(Job.worker_id, Job.phase, Job.started_at, Job.lease_until, Job.last_update_at,
                     Job.current_tokens, Job.tokens_per_second)
             .where(Job.status == statuses.PROCESSING).order_by(Job.worker_id, Job.id).limit(RUNNING_CAP))
    workers = {}
    for row in db.session.execute(query):
        workers.setdefault(row.worker_id or "(no worker)", []).append({
            **row._asdict(), "running_ms": ms_since(now, row.started_at),
            "written_ms": ms_since(now, row.last_update_at), "lease_left_ms": ms_between(row.lease_until, now)})
    return workers


def recent_failures(limit=FAILURES):
    """The newest failed jobs (the last made first: read back through (status, id)), each with its
    error message."""
    query = (_listed(Job.completed_at, sa.func.substr(Job.error_message, 1, SHOWN_CHARS).label("error"))
             .where(Job.status == statuses.FAILED).order_by(Job.id.desc()).limit(limit))
    return [row._asdict() for row in db.session.execute(_by_id(query))]


def recent_models(limit=MODELS, window=MODEL_WINDOW):
    """The models of the newest `window` completed jobs, the latest first: a bounded read back
    through (status, id), whatever the table holds (grouping every completed job by model would
    walk them all on SQLite)."""
    newest = _by_id(sa.select(Job.model).where(Job.status == statuses.COMPLETED).order_by(Job.id.desc()).limit(window))
    return list(dict.fromkeys(db.session.scalars(newest)))[:limit]


def model_figures(model):
    """What the estimates learned of `model` (`history.learned`: its newest completed runs):
    speed, output length of runs that ended by themselves (a run cut by num_predict says only
    "at least"), cold and warm load times (ms), and the series the charts draw."""
    learned = history.learned(model)
    lengths = [run.tokens for run in learned.runs if not run.cut]
    return {"model": model, "runs": len(learned.runs), "cut": len(learned.runs) - len(lengths),
            "speed": spread(learned.speeds), "length": spread(lengths),
            "load_cold": spread([s * 1000 for s in learned.loads_cold]),
            "load_warm": spread([s * 1000 for s in learned.loads_warm]),
            "lengths": lengths, "speeds": [run.speed for run in reversed(learned.runs) if run.speed]}


def key_names(limit=1000):
    """{owner name: key name} for the keys there are: a short table, made by hand with `flask keys`."""
    rows = db.session.execute(sa.select(ApiKey.name, ApiKey.secret_hash).order_by(ApiKey.id).limit(limit))
    return {owners.key(secret_hash): name for name, secret_hash in rows}
