"""The streaming engine shared by the JSON and the HTML streams: snapshots read before the first
byte, then each change from the process's watcher (never from the database pool), pings, the
time limit, and the end."""
import time

from flask import Response

from webapp import queue, statuses
from webapp.extensions import db
from webapp.snapshots import snapshots_of
from webapp.web import sse, watch

HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}


def read_snapshots(job_ids):
    """Snapshots of these jobs (None for unknown ones), read before the first byte; the pooled
    connection goes back at once."""
    try:
        found = {snap["job_id"]: snap for snap in snapshots_of(queue.get_many(job_ids))}
        return {job_id: found.get(job_id) for job_id in job_ids}
    finally:
        db.session.remove()


def event_stream(events):
    return Response(events, mimetype="text/event-stream", headers=HEADERS)


def rendered_once(render):
    """Render a snapshot once for all its subscribers: the watcher hands each of them the same
    dict, so the frame is kept on it (a thousand watchers cost one render, not a thousand)."""
    def render_once(snap):
        frames = snap.setdefault("_frames", {})
        if render not in frames:
            frames[render] = render(snap)
        return frames[render]
    return render_once


def follow(app, first, snaps, render, ping, ping_after, clock=time.monotonic, end=""):
    """`retry:`, the `first` snapshots at once, then each change of the live jobs among `snaps`
    until they have all ended (then `end`), `SSE_MAX_DURATION` passes, or the process shuts
    down. A `ping` goes out after `ping_after` s without an event."""
    yield sse.retry()
    for snap in first:
        yield render(snap)
    live = {snap["job_id"]: snap for snap in snaps if snap["status"] not in statuses.ENDED}
    if live:
        watcher = watch.get(app)
        sub = watcher.subscribe(list(live.values()))
        try:
            yield from changes(sub, live, render, ping, app.config["SSE_MAX_DURATION"], ping_after, clock)
        finally:
            watcher.unsubscribe(sub)
    if not live and end:
        yield end


def changes(sub, live, render, ping, max_duration, ping_after, clock):
    """The frames of one subscription until its jobs end, the time limit, or shutdown."""
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
            if snap["status"] in statuses.ENDED:
                live.pop(snap["job_id"], None)
        if live and clock() - last_sent >= ping_after:
            yield ping(last)
            last_sent = clock()
