"""Fair turns with real `python worker.py` processes: one owner's long backlog does not make
another owner's job wait behind it; the job starts at the next free slot.

MariaDB/MySQL only (SKIP LOCKED between two processes claiming at once). Waits poll a condition
with a deadline; nothing sleeps a fixed time.
"""
import time

import pytest
import sqlalchemy as sa

from simulator import Simulator
from webapp import queue
from webapp.extensions import db
from webapp.models import Job

from helpers import wait_until

MYSQL_ONLY = pytest.mark.parametrize("backend", [pytest.param("mysql", marks=pytest.mark.mysql)],
                                     indirect=True)
X, Y = "key:x", "key:y"
TOKENS = 30
TPS = 20.0  # each job streams for TOKENS / TPS = 1.5 s


def scalar(query):
    db.session.commit()  # each poll is its own transaction: see what the workers committed
    return db.session.execute(query).scalar_one()


def count_of(owner, *where):
    return scalar(sa.select(sa.func.count()).select_from(Job).where(Job.owner == owner, *where))


@MYSQL_ONLY
def test_a_second_owners_job_starts_at_the_next_free_slot_not_after_the_first_owners_backlog(app, spawn):
    with Simulator(tokens_per_second=TPS, jitter=0.1, load_delay=0.0) as sim:
        xs = [queue.enqueue(prompt=f"X's job {n}: a story", model="llama3.2", options={"num_predict": TOKENS},
                            owner=X) for n in range(200)]
        workers = [spawn(sim.url, WORKER_CONCURRENCY=1) for _ in range(2)]
        assert len({worker.wait_ready() for worker in workers}) == 2

        # Both slots busy with X's jobs, streaming (so each has about a job's length left).
        wait_until(lambda: count_of(X, Job.status == "processing", Job.current_tokens > 0) == 2, 15,
                   "both workers to stream one of X's jobs")
        started_before = count_of(X, Job.started_at.is_not(None))
        asked = time.monotonic()
        y = queue.enqueue(prompt="Y's only job", model="llama3.2", options={"num_predict": 5}, owner=Y)

        def y_started():
            db.session.commit()
            return db.session.get(Job, y.id, populate_existing=True).started_at

        y_started_at = wait_until(y_started, 15, "Y's job to start")
        waited = time.monotonic() - asked
        x_before_y = count_of(X, Job.started_at <= y_started_at)
        x_total_started = count_of(X, Job.started_at.is_not(None))
        logs = "\n".join(worker.output() for worker in workers)
        for worker in workers:  # before the simulator stops: no stream is cut under a live worker
            worker.kill()

    # FIFO would have run X's whole backlog first (about 198 × 1.5 s / 2 slots). Here Y's job
    # waits for one of the two running jobs to end; a claim already under way in each worker
    # when Y arrived may still take one of X's.
    assert 2 <= started_before < 200 - 2
    assert x_before_y <= started_before + 2, (
        f"{x_before_y} of X's jobs had started when Y's did; {started_before} had when Y queued")
    # One slot comes free within a job's length (1.5 s), plus the worker's claim and start.
    assert waited < 2 * TOKENS / TPS + 1.0, f"Y's job waited {waited:.1f} s for a slot"
    assert x_total_started < len(xs)
    assert "Traceback" not in logs, logs
