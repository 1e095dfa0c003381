"""The streaming engine shared by the JSON and the HTML streams: snapshots read before the first
byte, then each change from the process's watcher (never from the database pool), pings, the
time limit, and the end."""
import time

from flask import Response

from webapp import output, queue, statuses
from webapp.extensions import db
from webapp.snapshots import snapshots_of
from webapp.web import sse, transcripts, watch

HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}


def read_snapshots(job_ids, positions=None, tails=False, readable=None):
    """Snapshots of these jobs (None for unknown ones, and for those `readable(job)` refuses),
    read before the first byte; the pooled connection goes back at once. For each job in
    `positions` (what the client has of its text, or None), the snapshot also carries the text
    the client lacks, as `_opening`; with `tails`, the last lines of each job's text."""
    try:
        rows = [job for job in queue.get_many(job_ids) if readable is None or readable(job)]
        found = {snap["job_id"]: snap for snap in snapshots_of(rows)}
        if tails:
            public = {job.id: job.job_id for job in rows}
            for pk, tail in output.tails(rows).items():
                found[public[pk]]["output_tail"] = tail
        if positions is not None:
            _read_opening_texts([job for job in rows if job.job_id in positions], positions, found)
        return {job_id: found.get(job_id) for job_id in job_ids}
    finally:
        db.session.remove()


def _read_opening_texts(rows, positions, snaps):
    """One read of the text every client of these jobs lacks: from its position when it has text
    of the row's attempt, else all of it (a reset, if it had any)."""
    starts, resets = {}, {}
    for job in rows:
        have = positions[job.job_id] or (output.attempt_of(job), 0, 0)
        goes_on = output.follows(have, output.position(job))
        starts[job.id] = dict(zip(output.KINDS, have[1:] if goes_on else (0, 0), strict=True))
        resets[job.id] = not goes_on
    texts = output.since(rows, starts)
    for job in rows:
        new = {kind: (starts[job.id][kind], texts.get(job.id, {}).get(kind, "")) for kind in output.KINDS}
        # Where the client stands after it: what was read (a missing piece would stop it short).
        now = (output.attempt_of(job), *(start + len(text) for start, text in new.values()))
        snaps[job.job_id]["_opening"] = (new, resets[job.id], now)


def event_stream(events):
    return Response(events, mimetype="text/event-stream", headers=HEADERS)


def once(snap, key, build):
    """`build()` once per snapshot and key: the watcher hands every subscriber the same dict, so
    what is built is kept on it (a thousand watchers cost one rendering, not a thousand)."""
    frames = snap.setdefault("_frames", {})
    if key not in frames:
        frames[key] = build()
    return frames[key]


def rendered_once(render):
    """`render(snap)` once for all the snapshot's subscribers."""
    return lambda snap: once(snap, render, lambda: render(snap))


def text_for(snap, sub, render):
    """For a client that is sent the text: `render(snap, had, texts, reset, now)` of what it lacks
    (all it missed, if it was slow), rendered once for every client that stands at the same
    place; the subscription then stands where the client does."""
    had = sub.positions[snap["job_id"]]

    def build():
        # None: this process's copy is behind what the client has; nothing to add yet.
        texts, reset, now = transcripts.missing(snap["_text"], had) or ({}, False, had)
        return render(snap, had, texts, reset, now), now

    rendered, sub.positions[snap["job_id"]] = once(snap, (render, had), build)
    return rendered


def follow(app, opening, snaps, emit, ping, ping_after, clock=time.monotonic, end="", positions=None,
           texts=False):
    """`retry:`, the `opening` frames at once, then `emit(snap, subscription)` for each change
    of the live jobs among `snaps` until they have all ended (then `end`), `SSE_MAX_DURATION`
    passes, or the process shuts down. A `ping` goes out after `ping_after` s without an event.
    `positions` (what the client has of each job's text) and `texts` go to the subscription."""
    yield sse.retry()
    yield from opening
    live = {snap["job_id"]: snap for snap in snaps if snap["status"] not in statuses.ENDED}
    if live:
        watcher = watch.get(app)
        sub = watcher.subscribe(list(live.values()), positions, texts)
        try:
            yield from changes(sub, live, emit, ping, app.config["SSE_MAX_DURATION"], ping_after, clock)
        finally:
            watcher.unsubscribe(sub)
    if not live and end:
        yield end


def changes(sub, live, emit, ping, max_duration, ping_after, clock):
    """The frames of one subscription until its jobs end, the time limit, or shutdown."""
    started = last_sent = clock()
    last = next(iter(live.values()))
    while live:
        now = clock()
        if now - started >= max_duration:
            # With text, the id stays the last event's (a position in the text): none is given.
            yield sse.event("timeout", {"status": last["status"], "message":
                                        "stream lasted SSE_MAX_DURATION; reconnect to go on"},
                            last["version"] if len(live) == 1 and not sub.positions else None)
            return
        snaps = sub.take(max(0.0, min(ping_after - (now - last_sent), max_duration - (now - started))))
        if sub.closed:
            yield sse.retry()  # shutting down: reconnect (to another process) soon
            return
        for snap in snaps:
            yield emit(snap, sub)
            last, last_sent = snap, clock()
            if snap["status"] in statuses.ENDED:
                live.pop(snap["job_id"], None)
        if live and clock() - last_sent >= ping_after:
            yield ping(last)
            last_sent = clock()
