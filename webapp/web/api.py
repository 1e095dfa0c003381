"""The JSON API: create a generation, read its status, cancel it (the SSE routes are in `streams`)."""
import json
import logging

from flask import Blueprint, current_app, jsonify, request, url_for
from werkzeug.exceptions import BadRequest, Conflict, UnsupportedMediaType

from webapp import output, queue, statuses
from webapp.extensions import discard_session
from webapp.snapshots import snapshot_of, snapshots_of
from webapp.web import events
from webapp.web.access import admit, api_owner, own_job_or_404, readable_job_or_404
from webapp.web.errors import DATABASE_ERRORS
from webapp.web.validation import InvalidInput, generation_request, include_output, list_filters
from webapp.web.webhook_input import checked, take_webhook_fields
from webapp.webhooks import outbox

bp = Blueprint("api", __name__, url_prefix="/api/v1/ai/generation")
log = logging.getLogger(__name__)


def read_json():
    """The parsed body: 415 when it is not JSON, 400 when it does not parse."""
    if not request.is_json:
        raise UnsupportedMediaType("Send the body as JSON with 'Content-Type: application/json'.")
    try:
        return json.loads(request.get_data())
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest(f"The body is not valid JSON: {error}.") from None
    except RecursionError:
        raise BadRequest("The body is nested too deeply to be a generation request.") from None


def links(job_id, webhook=None):
    found = {
        "status": url_for("api.status", job_id=job_id),
        "progress": url_for("streams.progress", job_id=job_id),
        "card": url_for("pages.card", job_id=job_id),
        "page": url_for("pages.job", job_id=job_id),
    }
    if webhook:
        found["webhooks"] = url_for("api.webhooks", job_id=job_id)
    return found


@bp.post("")
def create():
    owner = api_owner()
    body = read_json()
    asked = take_webhook_fields(body)
    fields = generation_request(body, current_app.config["DEFAULT_MODEL"])
    admit(owner)
    hooks = checked(asked)
    job = queue.enqueue(**fields, **hooks, owner=owner)
    response = jsonify(success=True, job_id=job.job_id, status=statuses.QUEUED, **wait_ahead(job.job_id),
                       links=links(job.job_id, hooks["webhook"]))
    response.status_code = 202
    response.headers["Location"] = url_for("api.status", job_id=job.job_id)
    return response


def wait_ahead(job_id):
    """A new job's place in line and, once its model has history, the time left with its range.
    Read after the commit: a database fault here leaves them null, since a 503 would make the
    client send a job that exists again."""
    try:
        job = queue.get(job_id)
        snap = snapshot_of(job) if job is not None else dict.fromkeys(events.SUBMIT_FIELDS)
    except DATABASE_ERRORS as error:
        log.warning("job %s created; its wait ahead could not be read: %s", job_id, error)
        discard_session()
        return dict.fromkeys(events.SUBMIT_FIELDS)
    return {name: snap[name] for name in events.SUBMIT_FIELDS}


@bp.get("/<job_id>/status")
def status(job_id):
    """The job; with `?include=output`, its text so far (and its thinking) too."""
    with_text = include_output()
    job = readable_job_or_404(job_id)
    snap = snapshot_of(job)
    if with_text:
        texts = output.text_of(job)
        snap.update(output=texts["text"], thinking=texts["thinking"] or None)
    return jsonify(success=True, job=snap)


@bp.get("")
def listing():
    """The caller's own jobs, newest first, a page at a time: `next` is the `after` of the next
    page (null on the last). Each job as its status shows it, without the result."""
    owner = api_owner()
    filters = list_filters(request.args)
    after = filters.pop("after")
    if after is not None:
        cursor = queue.get(after)
        if cursor is None or cursor.owner != owner:
            raise InvalidInput("after", "must be the id of one of your jobs (the 'next' of the previous page)")
        after = cursor.id
    rows = queue.owned([owner], after=after, **filters)
    jobs = [{key: value for key, value in snap.items() if key != "result"} for snap in snapshots_of(rows)]
    following = jobs[-1]["job_id"] if len(jobs) == filters["limit"] else None
    next_link = url_for("api.listing", **{**request.args, "after": following}) if following else None
    return jsonify(success=True, jobs=jobs, next=following, links={"next": next_link})


@bp.post("/<job_id>/cancel")
def cancel(job_id):
    job = own_job_or_404(job_id, api_owner())
    outcome = queue.request_cancel(job)
    if outcome is None:
        raise Conflict(f"The job has already ended ({queue.get(job_id).status}); there is nothing to cancel.")
    message = ("Cancelled." if outcome == statuses.CANCELLED
               else "Cancel requested; the worker stops the generation within a second.")
    return jsonify(success=True, job_id=job_id, cancel=outcome, message=message), 202


@bp.get("/<job_id>/webhooks")
def webhooks(job_id):
    """The job's webhook deliveries, oldest first (its owner's only: they name where it reports)."""
    job = own_job_or_404(job_id, api_owner())
    return jsonify(success=True, **deliveries_of(job, outbox.of_job(job.id)))


def deliveries_of(subject, rows):
    """A job's or batch's webhook and its deliveries, as the API shows them."""
    return {"webhook": subject.webhook, "events": subject.webhook_events.split(",") if subject.webhook else [],
            "deliveries": [outbox.shown(row) for row in rows]}
