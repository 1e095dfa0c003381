"""The JSON API: create a generation, read its status, cancel it (the SSE routes are in `streams`)."""
import json

from flask import Blueprint, current_app, jsonify, request, url_for
from werkzeug.exceptions import BadRequest, Conflict, UnsupportedMediaType

from webapp import output, queue, statuses
from webapp.snapshots import snapshot_of
from webapp.web.access import get_job_or_404, limit_rate, token_required
from webapp.web.validation import generation_request, include_output

bp = Blueprint("api", __name__, url_prefix="/api/v1/ai/generation")


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


def links(job_id):
    return {
        "status": url_for("api.status", job_id=job_id),
        "progress": url_for("streams.progress", job_id=job_id),
        "card": url_for("pages.card", job_id=job_id),
        "page": url_for("pages.job", job_id=job_id),
    }


@bp.post("")
@token_required
def create():
    limit_rate()
    fields = generation_request(read_json(), current_app.config["DEFAULT_MODEL"])
    job = queue.enqueue(**fields)
    response = jsonify(success=True, job_id=job.job_id, status=statuses.QUEUED, links=links(job.job_id))
    response.status_code = 202
    response.headers["Location"] = url_for("api.status", job_id=job.job_id)
    return response


@bp.get("/<job_id>/status")
def status(job_id):
    """The job; with `?include=output`, its text so far (and its thinking) too."""
    with_text = include_output()
    job = get_job_or_404(job_id)
    snap = snapshot_of(job)
    if with_text:
        texts = output.text_of(job)
        snap.update(output=texts["text"], thinking=texts["thinking"] or None)
    return jsonify(success=True, job=snap)


@bp.post("/<job_id>/cancel")
@token_required
def cancel(job_id):
    job = get_job_or_404(job_id)
    outcome = queue.request_cancel(job)
    if outcome is None:
        raise Conflict(f"The job has already ended ({queue.get(job_id).status}); there is nothing to cancel.")
    message = ("Cancelled." if outcome == statuses.CANCELLED
               else "Cancel requested; the worker stops the generation within a second.")
    return jsonify(success=True, job_id=job_id, cancel=outcome, message=message), 202
