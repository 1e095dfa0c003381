"""Helpers shared by the tests: backend parametrization, fresh row reads, a worker in a thread,
waiting for a condition with a deadline."""
import threading
import time

import pytest
import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import Job


def both_backends(test):
    """Run a test on SQLite and on MySQL."""
    return pytest.mark.parametrize("backend", ["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)],
                                   indirect=True)(test)


def row(job_id):
    """The job's row as the database has it now (not the session's cached copy)."""
    db.session.expire_all()
    return db.session.execute(sa.select(Job).where(Job.job_id == job_id)).scalar_one()


def run_next(app, worker_id="w1", **run_options):
    """Claim the next job and run it to its end, in this thread; returns its row."""
    from webapp import queue
    from webapp.worker.run import Run

    job = queue.claim(worker_id, app.config["LEASE_SECONDS"])
    assert job is not None, "nothing to claim"
    Run(app, job, worker_id, **run_options).run()
    return row(job.job_id)


def highest(low, high):
    """The back-off's random draw at its top: the longest wait."""
    return high


def lowest(low, high):
    """The back-off's random draw at its bottom: no wait at all."""
    return low


class WorkerThread:
    """A real Worker serving in a thread until stopped (tests' stand-in for `python worker.py`)."""

    def __init__(self, app, concurrency=2, **kwargs):
        from webapp.worker import Worker

        self.worker = Worker(app, concurrency=concurrency, **kwargs)
        self.thread = threading.Thread(target=self.worker.serve, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self.worker

    def __exit__(self, *exc):
        self.worker.stop()
        self.thread.join(30)


def wait_until(predicate, timeout, what, interval=0.02, detail=None):
    """The first truthy value of `predicate()`, polled every `interval` s until `timeout` s; fails
    saying `what`, and `detail()` when given (say, the last state seen)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}"
                         + (f"; last seen: {detail()}" if detail else ""))
