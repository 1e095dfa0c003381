"""The worker's log: a progress line per running job every few seconds, one line per final state."""
import logging
import re
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from webapp import queue
from webapp.extensions import db
from webapp.models import Job, utcnow
from webapp.worker import run as run_module
from webapp.worker.run import LOG_EVERY, Run

from helpers import WorkerThread, highest, row, run_next, wait_until

PROGRESS = re.compile(r"job \d+: \d+ tokens \| \d+\.\d tok/s \| \d+% \| \d+\.\d s elapsed \| \w+$")


@pytest.fixture
def logged(caplog):
    """The worker's log lines (its loop and its runs), as they read."""
    caplog.set_level(logging.INFO, logger="webapp.worker")
    return lambda: [r.getMessage() for r in caplog.records if r.name.startswith("webapp.worker")]


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def enqueue(**options):
    return queue.enqueue(prompt="Tell me a story", model="llama3.2", options=options)


def test_a_progress_line_every_few_seconds_on_the_runs_clock(app, logged):
    job = enqueue(num_predict=600)
    clock = FakeClock()
    run = Run(app, queue.claim("w1", 30), "w1", clock=clock)
    run.phase = "generating"  # the stream is played by hand here: 6 tokens per 0.5 s tick
    for _ in range(24):  # 12 s of ticks, each what the ticker does every PROGRESS_INTERVAL
        clock.now += 0.5
        run.meter.add(6, clock.now)
        run._write_progress({})
    assert LOG_EVERY == 5.0
    assert logged() == [f"job {job.id}: 60 tokens | 12.0 tok/s | 9% | 5.0 s elapsed | generating",
                        f"job {job.id}: 120 tokens | 12.0 tok/s | 18% | 10.0 s elapsed | generating"]
    assert row(job.job_id).current_tokens == 144  # every tick was written, only some logged


def test_a_job_run_by_the_worker_logs_progress_then_completed(app, sim, logged, monkeypatch):
    monkeypatch.setattr(run_module, "LOG_EVERY", 0.0)  # a line per progress write
    app.config["OLLAMA_URL"] = sim.url
    sim.tokens_per_second = 100.0
    job = enqueue(num_predict=30)
    with WorkerThread(app, concurrency=1):
        wait_until(lambda: row(job.job_id).status == "completed", 10, "the job to complete")
    done = row(job.job_id)
    lines = [line for line in logged() if line.startswith(f"job {job.id}: ")]
    progress = [line for line in lines if PROGRESS.match(line)]
    assert any(line.endswith("| generating") and " 0 tokens" not in line for line in progress), lines
    assert lines[-1] == (f"job {job.id}: completed: 30 tokens | {done.tokens_per_second:.1f} tok/s | "
                         f"{done.elapsed_time / 1000:.1f} s")


def test_a_retry_and_a_failure_each_log_their_reason(app, sim, logged):
    app.config.update(OLLAMA_URL=sim.url, MAX_ATTEMPTS=2)
    sim.set_fault("eof")
    job = enqueue(num_predict=30)
    run_next(app, rand=highest)
    _backdate_run_after(job.id)  # instead of waiting out the 4 s back-off
    run_next(app)
    reason = "Ollama ended the stream before the generation was done (no final chunk)."
    assert logged()[-2:] == [
        f"job {job.id}: {reason} Retry scheduled in 4.0 s (attempt 2 of 2).",
        f"job {job.id}: failed: {reason} Tried 2 times.",
    ]


def test_a_cancel_while_generating_logs_the_tokens_kept(app, sim, logged):
    app.config["OLLAMA_URL"] = sim.url
    sim.tokens_per_second = 40.0
    job = enqueue(num_predict=200)
    run = Run(app, queue.claim("w1", 30), "w1")
    thread = _start(app, run)
    wait_until(lambda: row(job.job_id).current_tokens > 0, 10, "the first progress write")
    queue.request_cancel(row(job.job_id))
    thread.join(10)
    kept = row(job.job_id).current_tokens
    assert row(job.job_id).status == "cancelled"
    assert logged()[-1] == f"job {job.id}: cancelled while generating, after {kept} tokens"


def test_a_shutdown_during_a_model_load_releases_the_job_without_waiting_for_the_load(app, sim, logged):
    app.config["OLLAMA_URL"] = sim.url
    sim.load_delay = 60.0  # the job's thread stays blocked on the load until the simulator stops
    job = enqueue(num_predict=5)
    with WorkerThread(app, concurrency=1, grace=0.1) as worker:
        sim.wait_for_requests(1)
    blocked = [thread for _, thread in worker.running.values()]
    assert blocked and all(thread.is_alive() for thread in blocked), "the drain waited for the load"
    released = row(job.job_id)
    assert (released.status, released.attempts, released.worker_id) == ("queued", 0, None)
    assert f"job {job.id}: released to the queue (attempt refunded)" in logged()
    assert not any("no longer ours" in line for line in logged())


def _start(app, run):
    def serve():
        with app.app_context():
            run.run()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def _backdate_run_after(pk):
    db.session.execute(sa.update(Job).where(Job.id == pk).values(run_after=utcnow() - timedelta(seconds=1)))
    db.session.commit()

