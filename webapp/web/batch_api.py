"""The batches API: create a batch, list the caller's, read one (counters, items, log), cancel it,
retry its failed items, and download its results (JSONL, CSV) and its log."""
import csv
import io
import json

from flask import Blueprint, Response, current_app, jsonify, request, stream_with_context, url_for
from werkzeug.exceptions import Conflict

from webapp.batches import snapshots as views
from webapp.batches import store
from webapp.extensions import db
from webapp.web.access import admit, api_owner, own_batch_or_404, readable_batch_or_404
from webapp.web.api import deliveries_of, read_json
from webapp.web.batch_input import from_json
from webapp.web.validation import InvalidInput, list_filters, whole_numbers
from webapp.web.webhook_input import checked, take_webhook_fields
from webapp.webhooks import outbox

bp = Blueprint("batches", __name__, url_prefix="/api/v1/ai/generation/batches")
EXPORT_PAGE = 500  # items per read while a download streams (the connection goes back between reads)
CSV_FIELDS = ("index", "job_id", "status", "prompt", "output", "error", "prompt_tokens", "completion_tokens",
              "elapsed_time", "tokens_per_second", "started_at", "completed_at")


def links(batch_id):
    names = {"status": "batches.status", "items": "batches.items", "progress": "batch_stream.progress",
             "results_jsonl": "batches.results_jsonl", "results_csv": "batches.results_csv",
             "log": "batches.log_text", "page": "batch_pages.page"}
    return {name: url_for(endpoint, batch_id=batch_id) for name, endpoint in names.items()
            if endpoint in current_app.view_functions}


def batch_view(batch):
    return views.snapshot(batch, store.running_items(batch))


@bp.post("")
def create():
    owner = api_owner()
    request.max_content_length = current_app.config["MAX_BATCH_BYTES"]
    body = read_json()
    asked = take_webhook_fields(body)
    items = from_json(body, current_app.config["DEFAULT_MODEL"])
    admit(owner, items=len(items))
    batch = store.create(owner, items, items[0]["model"], **checked(asked))
    response = jsonify(success=True, batch_id=batch.batch_id, total=batch.total, links=links(batch.batch_id))
    response.status_code = 202
    response.headers["Location"] = url_for("batches.status", batch_id=batch.batch_id)
    return response


@bp.get("")
def listing():
    """The caller's batches, newest first, a page at a time (`limit`, `after`)."""
    owner = api_owner()
    unknown = sorted(set(request.args) - {"limit", "after"})
    if unknown:
        raise InvalidInput(unknown[0], "is not a parameter of the batch list; use limit, after")
    filters = list_filters(request.args)
    after = filters["after"]
    if after is not None:
        cursor = store.get(after)
        if cursor is None or cursor.owner != owner:
            raise InvalidInput("after", "must be the id of one of your batches (the 'next' of the previous page)")
        after = cursor.id
    batches = [batch_view(batch) for batch in store.owned(owner, filters["limit"], after)]
    following = batches[-1]["batch_id"] if len(batches) == filters["limit"] else None
    return jsonify(success=True, batches=batches, next=following)


@bp.get("/<batch_id>")
def status(batch_id):
    batch = readable_batch_or_404(batch_id)
    return jsonify(success=True, batch=batch_view(batch), links=links(batch_id))


@bp.get("/<batch_id>/items")
def items(batch_id):
    """The items in order, a page at a time: `after` is the last index of the previous page."""
    batch = readable_batch_or_404(batch_id)
    limit = _number("limit", 100, 1, 1000)
    after = _number("after", -1, -1, 10**9)
    rows = store.items(batch, after, limit)
    following = rows[-1].batch_index if len(rows) == limit else None
    return jsonify(success=True, items=[views.item(job) for job in rows], next=following)


def _number(name, default, low, high):
    raw = request.args.get(name)
    if raw is None:
        return default
    number = whole_numbers(raw.removeprefix("-"), 1)
    value = None if number is None else (-number[0] if raw.startswith("-") else number[0])
    if value is None or not low <= value <= high:
        raise InvalidInput(name, f"must be a whole number from {low} to {high}")
    return value


@bp.post("/<batch_id>/cancel")
def cancel(batch_id):
    cancelled = store.cancel(own_batch_or_404(batch_id, api_owner()))
    if cancelled is None:
        raise Conflict("The batch has already ended; there is nothing to cancel.")
    return jsonify(success=True, batch_id=batch_id, cancelled_now=cancelled,
                   message="Queued items cancelled; running ones stop within a second."), 202


@bp.get("/<batch_id>/webhooks")
def webhooks(batch_id):
    """The batch's webhook deliveries, oldest first (its owner's only)."""
    batch = own_batch_or_404(batch_id, api_owner())
    return jsonify(success=True, **deliveries_of(batch, outbox.of_batch(batch.id)))


@bp.post("/<batch_id>/retry")
def retry(batch_id):
    count = store.retry_failed(own_batch_or_404(batch_id, api_owner()))
    return jsonify(success=True, batch_id=batch_id, retried=count), 202


@bp.get("/<batch_id>/results.jsonl")
def results_jsonl(batch_id):
    batch = readable_batch_or_404(batch_id)
    lines = (json.dumps(views.item(job), ensure_ascii=False) + "\n" for job in _all_items(batch.id))
    return _download(lines, "application/x-ndjson", f"batch-{batch_id}.jsonl")


@bp.get("/<batch_id>/results.csv")
def results_csv(batch_id):
    batch = readable_batch_or_404(batch_id)
    return _download(_csv_rows(_all_items(batch.id)), "text/csv", f"batch-{batch_id}.csv")


@bp.get("/<batch_id>/log.txt")
def log_text(batch_id):
    batch = readable_batch_or_404(batch_id)
    total = batch.total
    lines = (views.log_text(views.log_line(job), total) + "\n" for job in _all_ended(batch.id))
    return _download(lines, "text/plain", f"batch-{batch_id}-log.txt")


def _csv_rows(jobs):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for job in jobs:
        writer.writerow(views.item(job))
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def _download(chunks, mimetype, filename):
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    return Response(stream_with_context(chunks), mimetype=mimetype, headers=headers)


def _pages(read):
    """Rows page by page, each page its own short read: a download of 10,000 items never holds a
    database connection while it is being sent."""
    after = None
    while True:
        try:
            rows = read(after)
        finally:
            db.session.remove()
        yield from rows
        if len(rows) < EXPORT_PAGE:
            return
        after = rows[-1]


def _all_items(batch_pk):
    return _pages(lambda last: store.items_of(batch_pk, -1 if last is None else last.batch_index, EXPORT_PAGE))


def _all_ended(batch_pk):
    return _pages(lambda last: store.log_of(batch_pk, 0 if last is None else last.batch_seq, EXPORT_PAGE))
