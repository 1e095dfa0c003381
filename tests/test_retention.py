"""Retention: ended jobs past JOB_RETENTION_DAYS go, text and all; live jobs always stay."""
from datetime import timedelta

import sqlalchemy as sa

from webapp import output, queue
from webapp.extensions import db
from webapp.models import Job, OutputPiece, utcnow
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
