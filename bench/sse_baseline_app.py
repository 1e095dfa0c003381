"""Baseline for the SSE benchmark: the seeds' design, one database read per client per interval.

    PYTHONPATH=. gunicorn -c gunicorn.conf.py bench.sse_baseline_app:app

This is livegen's own app (`create_app()`, every product route unchanged) with one extra blueprint:

  GET /baseline/<job_id>/progress   the same `text/event-stream` as the product's
                                    `/api/v1/ai/generation/<job_id>/progress` (same headers, same
                                    `retry:`, same first snapshot, same event bytes), but each
                                    client loops: sleep(SSE_POLL_INTERVAL); one SELECT of its job
                                    row in its own short session (the pooled connection goes back
                                    at once); an event when the row's version changed.
  GET /sse-bench/stats              JSON counters of this process (bench/sse_counters.py): every
                                    SELECT it sent, and here also the baseline's reads, failed
                                    reads and open baseline streams.

So the two modes served under the same gunicorn config differ only in the fan-out: the product
reads once per process per tick for every watched job; this reads once per client per tick.
Failed reads (a pool timeout under load) are counted and the stream goes on, which is kinder to
the baseline than a seed that would have dropped the client.
"""
import time

import sqlalchemy as sa
from flask import Blueprint, current_app
from sqlalchemy.exc import SQLAlchemyError

from bench.sse_counters import instrument
from webapp import statuses
from webapp.extensions import db
from webapp.models import Job
from webapp.snapshots import snapshot
from webapp.web import create_app, sse
from webapp.web.errors import api_error
from webapp.web.live import event_stream, read_snapshots
from webapp.web.streams import json_event as _json_event

STATS = {"baseline_reads": 0, "baseline_read_errors": 0, "baseline_streams": 0, "baseline_streams_total": 0}

bp = Blueprint("sse_baseline", __name__, url_prefix="/baseline")


@bp.get("/<job_id>/progress")
def progress(job_id):
    snap = read_snapshots([job_id])[job_id]
    if snap is None:
        return api_error(404, f"No job with id '{job_id[:64]}'.")
    app = current_app._get_current_object()
    return event_stream(poll_each_client(app, job_id, snap))


def poll_each_client(app, job_id, snap, clock=time.monotonic):
    """The seeds' loop: this client's own read of its own row, every interval."""
    interval = app.config["SSE_POLL_INTERVAL"]
    max_duration = app.config["SSE_MAX_DURATION"]
    yield sse.retry()
    yield _json_event(snap)
    if snap["status"] in statuses.ENDED:
        return
    STATS["baseline_streams"] += 1
    STATS["baseline_streams_total"] += 1
    started = last_sent = clock()
    version = snap["version"]
    try:
        while clock() - started < max_duration:
            time.sleep(interval)
            try:
                with app.app_context():
                    try:
                        query = sa.select(Job).where(Job.job_id == job_id)
                        job = db.session.execute(query).scalar_one_or_none()
                        fresh = snapshot(job) if job is not None else None
                    finally:
                        db.session.remove()
            except SQLAlchemyError:
                STATS["baseline_read_errors"] += 1
                continue
            STATS["baseline_reads"] += 1
            if fresh is None:
                return
            if fresh["version"] != version:
                version, snap, last_sent = fresh["version"], fresh, clock()
                yield _json_event(fresh)
                if fresh["status"] in statuses.ENDED:
                    return
            elif clock() - last_sent >= app.config["SSE_PING_INTERVAL"]:
                yield sse.ping(version)
                last_sent = clock()
        yield sse.event("timeout", {"status": snap["status"], "message":
                                    "stream lasted SSE_MAX_DURATION; reconnect to go on"}, version)
    finally:
        STATS["baseline_streams"] -= 1


app = create_app()
app.register_blueprint(bp)
instrument(app, STATS)
