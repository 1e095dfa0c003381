"""Server-Sent Events routes: one job's progress (the public contract) and many jobs on one
connection. Streams read from the process's watcher, never from the database pool."""
import re
import time

from flask import Blueprint, Response, current_app, request

from webapp import jobs, sse, watch
from webapp.errors import api_error
from webapp.extensions import db
from webapp.progress import sse_event
from webapp.snapshots import snapshots_of

bp = Blueprint("stream", __name__, url_prefix="/api/v1/ai/generation")
HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}
PING_AFTER = 15.0
MAX_JOBS = 50
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def read_snapshots(job_ids):
    """Snapshots of these jobs (None for unknown ones), read before the first byte; the pooled
    connection goes back at once."""
    try:
        found = {snap["job_id"]: snap for snap in snapshots_of(jobs.get_many(job_ids))}
        return {job_id: found.get(job_id) for job_id in job_ids}
    finally:
        db.session.remove()


@bp.get("/<job_id>/progress")
def progress(job_id):
    snap = read_snapshots([job_id])[job_id]
    if snap is None:
        return api_error(404, f"No job with id '{job_id[:64]}'.")
    resumed = request.headers.get("Last-Event-ID", "") == str(snap["version"]) and not watch.ended(snap)
    app = current_app._get_current_object()
    events = stream(app, [] if resumed else [snap], [snap], _json_event,
                    lambda last: sse.ping(last["version"]))
    return event_stream(events)


@bp.get("/progress")
def progress_many():
    """`?jobs=id1,id2,...`: every job on one connection (browsers allow ~6 per origin); each
    event's data names its job. Every connect gets full snapshots."""
    job_ids = [j for j in request.args.get("jobs", "").split(",") if j]
    if not job_ids or len(job_ids) > MAX_JOBS or not all(JOB_ID.fullmatch(j) for j in job_ids):
        return api_error(400, f"jobs: give 1 to {MAX_JOBS} job ids, separated by commas.", field="jobs")
    snaps = read_snapshots(dict.fromkeys(job_ids))
    unknown = [job_id for job_id, snap in snaps.items() if snap is None]
    if unknown:
        return api_error(404, f"No job with id '{unknown[0]}'.")
    events = stream(current_app._get_current_object(), list(snaps.values()), list(snaps.values()), _json_event_of_job,
                    lambda last: sse.ping())
    return event_stream(events)


def event_stream(events):
    return Response(events, mimetype="text/event-stream", headers=HEADERS)


def shared(render):
    """Render a snapshot once for all its subscribers: the watcher hands each of them the same
    dict, so the frame is kept on it (a thousand watchers cost one render, not a thousand)."""
    def render_once(snap):
        frames = snap.setdefault("_frames", {})
        if render not in frames:
            frames[render] = render(snap)
        return frames[render]
    return render_once


@shared
def _json_event(snap):
    name, data = sse_event(snap)
    return sse.event(name, data, snap["version"])


@shared
def _json_event_of_job(snap):
    name, data = sse_event(snap)
    return sse.event(name, {"job_id": snap["job_id"], **data}, f"{snap['job_id']}.{snap['version']}")


def stream(app, first, snaps, render, ping, ping_after=PING_AFTER, clock=time.monotonic, end=""):
    """`retry:`, the `first` snapshots at once, then each change of the live jobs among `snaps`
    until they have all ended (then `end`), `SSE_MAX_DURATION` passes, or the process shuts
    down. A `ping` goes out after `ping_after` s without an event."""
    yield sse.retry()
    for snap in first:
        yield render(snap)
    live = {snap["job_id"]: snap for snap in snaps if not watch.ended(snap)}
    if live:
        watcher = watch.get(app)
        sub = watcher.subscribe(list(live.values()))
        try:
            yield from _follow(sub, live, render, ping, app.config["SSE_MAX_DURATION"], ping_after, clock)
        finally:
            watcher.unsubscribe(sub)
    if not live and end:
        yield end


def _follow(sub, live, render, ping, max_duration, ping_after, clock):
    started = last_sent = clock()
    last = next(iter(live.values()))
    while live:
        now = clock()
        if now - started >= max_duration:
            yield sse.event("timeout", {"status": last["status"], "message":
                                        "stream lasted SSE_MAX_DURATION; reconnect to go on"},
                            last["version"] if len(live) == 1 else None)
            return
        snaps = sub.take(max(0.0, min(ping_after - (now - last_sent), max_duration - (now - started))))
        if sub.closed:
            yield sse.retry()  # shutting down: reconnect (to another process) soon
            return
        for snap in snaps:
            yield render(snap)
            last, last_sent = snap, clock()
            if watch.ended(snap):
                live.pop(snap["job_id"], None)
        if live and clock() - last_sent >= ping_after:
            yield ping(last)
            last_sent = clock()
