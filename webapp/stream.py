"""The public SSE route: a job's progress as `progress` / `complete` / `error` / `timeout` events."""
import time

from flask import Blueprint, Response, current_app, request

from webapp import jobs, sse
from webapp.errors import api_error
from webapp.extensions import db
from webapp.progress import sse_event
from webapp.snapshots import snapshot_of

bp = Blueprint("stream", __name__, url_prefix="/api/v1/ai/generation")
HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}
PING_AFTER = 15.0


def read_snapshot(job_id):
    """One short read; the pooled connection goes back before anything is streamed."""
    try:
        job = jobs.get(job_id)
        return snapshot_of(job) if job else None
    finally:
        db.session.remove()


@bp.get("/<job_id>/progress")
def progress(job_id):
    snap = read_snapshot(job_id)
    if snap is None:
        return api_error(404, f"No job with id '{job_id[:64]}'.")
    last_id = request.headers.get("Last-Event-ID", "")
    app = current_app._get_current_object()
    return Response(_events(app, job_id, snap, last_id), mimetype="text/event-stream",
                    headers=HEADERS)


def _events(app, job_id, snap, last_id, clock=time.monotonic):
    """Snapshot at once (unless the client already has this version), then each change."""
    yield sse.retry()
    if str(snap["version"]) != last_id or snap["status"] in ("completed", "failed", "cancelled"):
        yield _frame(snap)
    config = app.config
    started = quiet_since = clock()
    while snap["status"] not in ("completed", "failed", "cancelled"):
        if clock() - started >= config["SSE_MAX_DURATION"]:
            yield sse.event("timeout", {"status": snap["status"], "message":
                                        "stream lasted SSE_MAX_DURATION; reconnect to go on"},
                            snap["version"])
            return
        time.sleep(config["SSE_POLL_INTERVAL"])
        with app.app_context():
            fresh = read_snapshot(job_id) or snap
        if fresh["version"] != snap["version"]:
            snap, quiet_since = fresh, clock()
            yield _frame(snap)
        elif clock() - quiet_since >= PING_AFTER:
            quiet_since = clock()
            yield sse.ping(snap["version"])


def _frame(snap):
    name, data = sse_event(snap)
    return sse.event(name, data, snap["version"])
