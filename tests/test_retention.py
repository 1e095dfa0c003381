"""Retention: ended jobs past JOB_RETENTION_DAYS go, text and all; live jobs always stay."""
from datetime import timedelta

import sqlalchemy as sa

from webapp import output, queue, retention
from webapp.batches import store
from webapp.extensions import db
from webapp.models import Batch, Job, OutputPiece, utcnow
from webapp.worker import Worker

from helpers import both_backends


def ended_days_ago(days, status="completed"):
    job = queue.enqueue(prompt=f"ended {days} days ago", model="llama3.2")
    queue.claim("w1", 30)
    new = {"text": (0, "some text")}
    queue.heartbeat(job.id, "w1", 30, pieces=output.pieces(job.id, 1, new), output_chars=9)
    queue.finish(job.id, "w1", status, result="some text")
    db.session.execute(sa.update(Job).where(Job.id == job.id).values(completed_at=utcnow() - timedelta(days=days)))
    db.session.commit()
    return job


def remaining():
    return sorted(db.session.scalars(sa.select(Job.prompt)))


@both_backends
def test_purge_deletes_only_ended_jobs_past_the_age_with_their_text(app):
    old = [ended_days_ago(10).id, ended_days_ago(9, "failed").id]
    ended_days_ago(1)
    queue.enqueue(prompt="still queued", model="llama3.2")
    result = app.test_cli_runner().invoke(args=["jobs", "purge", "--older-than", "7"])
    assert result.exit_code == 0 and "Deleted 2 ended job(s) older than 7 day(s)." in result.output
    assert remaining() == ["ended 1 days ago", "still queued"]
    assert db.session.scalars(sa.select(OutputPiece.job_pk).where(OutputPiece.job_pk.in_(old))).all() == []


def test_purge_wants_an_age(app):
    result = app.test_cli_runner().invoke(args=["jobs", "purge", "--older-than", "-1"])
    assert result.exit_code == 2 and "older-than" in result.output


def test_the_worker_sweep_applies_the_retention_setting(app):
    ended_days_ago(40)
    worker = Worker(app, concurrency=1)
    worker._maybe_sweep()
    assert remaining() == ["ended 40 days ago"], "off by default"
    app.config["JOB_RETENTION_DAYS"] = 30
    worker.last_sweep = worker.last_prune = 0.0
    worker._maybe_sweep()
    assert remaining() == []


def ended_batch(days, prompts):
    """A batch whose items all ran to the end, ended `days` ago."""
    batch = store.create("key:1", [{"prompt": prompt, "model": "llama3.2"} for prompt in prompts], "llama3.2")
    while job := queue.claim("w1", 30):
        queue.finish(job.id, "w1", "completed", result="done")
    ago = utcnow() - timedelta(days=days)
    db.session.execute(sa.update(Batch).where(Batch.id == batch.id).values(completed_at=ago))
    db.session.execute(sa.update(Job).where(Job.batch_pk == batch.id).values(completed_at=ago))
    db.session.commit()
    return batch.id


@both_backends
def test_a_batch_goes_whole_once_it_ended_past_the_age_and_not_item_by_item(app):
    old = ended_batch(10, ["old one", "old two"])
    ended_batch(1, ["new one"])
    live = store.create("key:1", [{"prompt": "still queued", "model": "llama3.2"}], "llama3.2")
    db.session.execute(sa.update(Job).where(Job.batch_pk == live.id)  # an item that ended long ago,
                       .values(status="failed", completed_at=utcnow() - timedelta(days=10)))  # in a live batch
    db.session.commit()
    assert retention.purge(7) == 2
    assert remaining() == ["new one", "still queued"]
    assert db.session.get(Batch, old) is None
