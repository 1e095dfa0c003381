"""The batch pages: the form that takes many prompts (lines, or a JSONL or CSV file), the
browser's batches, and one batch's page: its counters, running items and log console, polled by
htmx, followed over SSE, and refreshing itself without JavaScript."""
import calendar
import collections
import time

from flask import (
    Blueprint,
    current_app,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)

from webapp import output, statuses
from webapp.batches import snapshots as views
from webapp.batches import store
from webapp.extensions import db
from webapp.models import Batch
from webapp.web import batch_stream, csrf, live, sse, watch, webhook_pages
from webapp.web.access import admit, browser_owner, own_batch_or_404, readable_batch_or_404
from webapp.web.batch_input import clean, from_file, from_lines
from webapp.web.validation import InvalidInput, form_defaults

bp = Blueprint("batch_pages", __name__)
STOP_POLLING = 286
PING_AFTER = 2.5  # as the cards' stream: the page polls again once SSE is quiet for longer


def page_view(batch, lines=None):
    """The batch as its page shows it: the snapshot, its running items with the end of their
    text, and the last lines of its log."""
    running = store.running_items(batch)
    tails = output.tails(running)
    snap = views.snapshot(batch, running)
    snap["running_items"] = [{"index": job.batch_index, "job_id": job.job_id, "prompt": job.prompt,
                              "tokens": job.current_tokens or 0, "tokens_per_second": job.tokens_per_second or 0.0,
                              "tail": tails.get(job.id, "")} for job in running]
    lines = lines if lines is not None else [views.log_line(job) for job in store.last_lines(batch)]
    snap["log"] = [views.log_text(line, batch.total) for line in lines]
    # The card's version for the page's "never take a card back" check: the batch's own version
    # moves only when an item ends, but the running items' figures move between (their rows'
    # last write, in ms, is later with every change of either).
    latest = max([batch.last_update_at, *(job.last_update_at for job in running)])
    snap["stamp"] = int(calendar.timegm(latest.timetuple()) * 1000 + latest.microsecond // 1000)
    return snap


@bp.get("/batches")
def index(error=None, form=None, code=200):
    owner = browser_owner(create=True)
    batches = [views.snapshot(batch, store.running_items(batch)) for batch in store.owned(owner, 20)]
    return render_template("batches.html", batches=batches, error=error, form=form or {}), code


@bp.post("/batches")
def create():
    # Before anything reads the form (the CSRF check does): a batch may be larger than a job.
    request.max_content_length = request.max_form_memory_size = current_app.config["MAX_BATCH_BYTES"]
    csrf.check()
    owner = browser_owner(create=True)
    form = {key: request.form.get(key, "").strip() for key in ("prompts", "model", "num_predict")}
    try:
        items = clean(_rows(form), form_defaults(form), current_app.config["DEFAULT_MODEL"])
    except InvalidInput as error:
        return index(str(error), form, 400)
    admit(owner, items=len(items))
    batch = store.create(owner, items, items[0]["model"])
    return redirect(url_for("batch_pages.page", batch_id=batch.batch_id), 303)


def _rows(form):
    upload = request.files.get("file")
    if upload and upload.filename:
        return from_file(upload.filename, upload.read())
    return from_lines(form["prompts"])


@bp.get("/batches/<batch_id>")
def page(batch_id):
    batch = readable_batch_or_404(batch_id)
    return render_template("batch.html", batch=page_view(batch), mine=batch.owner == browser_owner(),
                           deliveries=webhook_pages.of_batch(batch)[0])


@bp.get("/batches/<batch_id>/card")
def card(batch_id):
    snap = page_view(readable_batch_or_404(batch_id))
    code = STOP_POLLING if snap["status"] in statuses.ENDED else 200
    return render_template("_batch.html", batch=snap), code, {"X-Job-Version": str(snap["stamp"])}


@bp.post("/batches/<batch_id>/cancel")
def cancel(batch_id):
    csrf.check()
    store.cancel(own_batch_or_404(batch_id, browser_owner()))
    return _after_action(batch_id)


@bp.post("/batches/<batch_id>/retry")
def retry(batch_id):
    csrf.check()
    store.retry_failed(own_batch_or_404(batch_id, browser_owner()))
    return _after_action(batch_id)


def _after_action(batch_id):
    """htmx swaps in the card; a plain form goes back to the page."""
    if request.headers.get("HX-Request"):
        return render_template("_batch.html", batch=page_view(store.get(batch_id)))
    return redirect(url_for("batch_pages.page", batch_id=batch_id), 303)


@bp.get("/batches/<batch_id>/stream")
def stream(batch_id):
    """The batch's card as HTML events (`batch-<id>`) whenever it changes, then `close`."""
    try:
        batch = readable_batch_or_404(batch_id)
        lines = collections.deque((views.log_line(job) for job in store.last_lines(batch)), maxlen=store.LOG_LINES)
        pk, seq = batch.id, batch.log_seq
    finally:
        db.session.remove()
    app = current_app._get_current_object()
    return live.event_stream(stream_with_context(_card_events(app, pk, seq, lines)))


def _card_events(app, pk, seq, lines):
    yield sse.retry()
    started = last_sent = time.monotonic()
    shown = None
    while True:
        snap = _read_card(app, pk, seq, lines)
        if snap is None:  # deleted meanwhile
            yield sse.event("close", {})
            return
        seq = snap["log_seq"]
        key = snap["stamp"]
        if key != shown:
            shown, last_sent = key, time.monotonic()
            html = render_template("_batch.html", batch=snap, csrf_field=False)
            yield sse.html_event(f"batch-{snap['batch_id']}", html, snap["stamp"])
        if snap["status"] in statuses.ENDED:
            yield sse.event("close", {})
            return
        if time.monotonic() - started >= app.config["SSE_MAX_DURATION"] or watch.get(app).stopping:
            yield sse.retry()
            return
        if time.monotonic() - last_sent >= PING_AFTER:
            yield sse.ping()
            last_sent = time.monotonic()
        time.sleep(batch_stream.tick_seconds(app.config))


def _read_card(app, pk, seq, lines):
    """One tick: the batch row, its running items, the lines new since `seq` (kept in `lines`)."""
    with app.app_context():
        try:
            batch = db.session.get(Batch, pk, populate_existing=True)
            if batch is None:
                return None
            lines.extend(views.log_line(job) for job in store.log_of(pk, seq, store.LOG_LINES))
            snap = page_view(batch, list(lines))
            snap["log_seq"] = lines[-1]["seq"] if lines else seq
            return snap
        finally:
            db.session.remove()
