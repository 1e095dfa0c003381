"""A batch's SSE stream: `progress` (its counters), `item` (an item ended), then `complete`. Each
event's id is the batch's log number so far, so a reconnect with Last-Event-ID gets exactly the
items it missed. Each tick is one short read (the batch row, its running items, its new log
lines: a constant number of rows however large the batch); no connection is held in between."""
import time

from flask import Blueprint, current_app, request

from webapp import statuses
from webapp.batches import snapshots as views
from webapp.batches import store
from webapp.extensions import db
from webapp.models import Batch
from webapp.web import live, sse, watch
from webapp.web.access import readable_batch_or_404
from webapp.web.validation import InvalidInput, whole_numbers

bp = Blueprint("batch_stream", __name__, url_prefix="/api/v1/ai/generation/batches")
PAGE = 200  # log lines per tick: a client far behind catches up over a few ticks


@bp.get("/<batch_id>/progress")
def progress(batch_id):
    """`?after=N` (or Last-Event-ID) starts the items after log number N; from the first by default."""
    after = _resume_point()
    try:
        pk = readable_batch_or_404(batch_id).id
    finally:
        db.session.remove()
    app = current_app._get_current_object()
    return live.event_stream(events(app, pk, after))


def _resume_point():
    raw = request.headers.get("Last-Event-ID") or request.args.get("after") or "0"
    number = whole_numbers(raw, 1)
    if number is None:
        raise InvalidInput("after", "must be a whole number: the id of the last event you have")
    return number[0]


def read(app, pk, after):
    """(snapshot, new log lines) or (None, []) once the batch is gone; the connection goes back."""
    with app.app_context():
        try:
            batch = db.session.get(Batch, pk, populate_existing=True)
            if batch is None:
                return None, []
            lines = [views.log_line(job) for job in store.log_of(pk, after, PAGE)]
            return views.snapshot(batch, store.running_items(batch)), lines
        finally:
            db.session.remove()


def events(app, pk, seq, clock=time.monotonic):
    yield sse.retry()
    started = last_sent = clock()
    shown = None
    stopping = watch.get(app)
    while True:
        snap, lines = read(app, pk, seq)
        if snap is None:
            return
        for line in lines:
            seq = line["seq"]
            yield sse.event("item", line, seq)
        if _change(snap) != shown or lines:
            shown, last_sent = _change(snap), clock()
            yield sse.event("progress", snap, seq)
        if snap["status"] in statuses.ENDED and len(lines) < PAGE:
            yield sse.event("complete", snap, seq)
            return
        if clock() - started >= app.config["SSE_MAX_DURATION"] or stopping.stopping:
            yield sse.event("timeout", {"status": snap["status"], "message":
                                        "stream lasted SSE_MAX_DURATION; reconnect to go on"}, seq)
            return
        if clock() - last_sent >= app.config["SSE_PING_INTERVAL"]:
            yield sse.ping(seq)
            last_sent = clock()
        if len(lines) < PAGE:
            time.sleep(tick_seconds(app.config))


def tick_seconds(config):
    """How often a batch's stream reads it: no more often than the worker writes progress (a
    batch stream reads for itself; the job streams share one watcher per process)."""
    return max(config["SSE_POLL_INTERVAL"], config["PROGRESS_INTERVAL"])


def _change(snap):
    """What a client is sent a new `progress` for: the counters and the tokens (not the clock)."""
    return snap["version"], snap["running"], snap["tokens"], snap["status"]
