"""The JSON API: create a generation, read its status, cancel it (SSE lives in `stream`)."""
import hmac
import json

from flask import Blueprint, current_app, jsonify, request, url_for

from webapp import jobs
from webapp.errors import api_error
from webapp.snapshots import snapshot_of
from webapp.validation import InvalidInput, generation_request

bp = Blueprint("api", __name__, url_prefix="/api/v1/ai/generation")


def _token_error():
    """An error response when API_TOKEN is set and the request lacks it, else None."""
    expected = current_app.config["API_TOKEN"]
    if not expected:
        return None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected.encode()):
        return None
    return api_error(401, "Missing or wrong token: send 'Authorization: Bearer <API_TOKEN>'.",
                     {"WWW-Authenticate": 'Bearer realm="livegen"'})


def _read_json():
    """The parsed body, or an error response (415 not JSON, 400 malformed)."""
    if not request.is_json:
        return None, api_error(415, "Send the body as JSON with 'Content-Type: application/json'.")
    try:
        return json.loads(request.get_data()), None
    except (ValueError, UnicodeDecodeError) as error:
        return None, api_error(400, f"The body is not valid JSON: {error}.")
    except RecursionError:
        return None, api_error(400, "The body is nested too deeply to be a generation request.")


def links(job_id):
    return {
        "status": url_for("api.status", job_id=job_id),
        "progress": url_for("stream.progress", job_id=job_id),
        "card": url_for("pages.card", job_id=job_id),
        "page": url_for("pages.job", job_id=job_id),
    }


@bp.post("")
def create():
    failure = _token_error() or _rate_limited()
    if failure:
        return failure
    body, failure = _read_json()
    if failure:
        return failure
    try:
        fields = generation_request(body, current_app.config["DEFAULT_MODEL"])
    except InvalidInput as error:
        return api_error(400, str(error), field=error.field)
    job = jobs.enqueue(**fields)
    response = jsonify(success=True, job_id=job.job_id, status="queued", links=links(job.job_id))
    response.status_code = 202
    response.headers["Location"] = url_for("api.status", job_id=job.job_id)
    return response


def _rate_limited():
    wait = current_app.extensions["livegen.ratelimit"].hit(request.remote_addr)
    if wait:
        return api_error(429, f"Too many new jobs from this address; try again in {wait} s.",
                         {"Retry-After": str(wait)})
    return None


def _job_or_404(job_id):
    job = jobs.get(job_id)
    if job is None:
        return None, api_error(404, f"No job with id '{job_id[:64]}'.")
    return job, None


@bp.get("/<job_id>/status")
def status(job_id):
    job, failure = _job_or_404(job_id)
    if failure:
        return failure
    return jsonify(success=True, job=snapshot_of(job))


@bp.post("/<job_id>/cancel")
def cancel(job_id):
    failure = _token_error()
    if failure:
        return failure
    job, failure = _job_or_404(job_id)
    if failure:
        return failure
    outcome = jobs.request_cancel(job)
    if outcome is None:
        return api_error(409, f"The job has already ended ({jobs.get(job_id).status}); "
                              "there is nothing to cancel.")
    message = ("Cancelled." if outcome == "cancelled"
               else "Cancel requested; the worker stops the generation within a second.")
    return jsonify(success=True, job_id=job_id, cancel=outcome, message=message), 202
