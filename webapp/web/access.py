"""Who may do what, for every route: the job lookup that 404s, the API token, the rate limit.
Each aborts with the right HTTP error; `errors` turns it into JSON or a page."""
import functools
import hmac

from flask import current_app, request
from werkzeug.exceptions import NotFound, TooManyRequests, Unauthorized

from webapp import queue, ratelimits


def no_such_job(job_id):
    """The one 404 for a job id that names no job (JSON or a page, as the caller wants)."""
    return NotFound(f"No job with id '{job_id[:64]}'.")


def get_job_or_404(job_id):
    """The job with this public id, read fresh; 404 when there is none."""
    job = queue.get(job_id)
    if job is None:
        raise no_such_job(job_id)
    return job


def token_required(view):
    """When API_TOKEN is set, the view needs `Authorization: Bearer <API_TOKEN>` (else 401)."""
    @functools.wraps(view)
    def checked(*args, **kwargs):
        expected = current_app.config["API_TOKEN"]
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        given = token.strip().encode()
        if expected and not (scheme.lower() == "bearer" and hmac.compare_digest(given, expected.encode())):
            raise Unauthorized("Missing or wrong token: send 'Authorization: Bearer <API_TOKEN>'.",
                               www_authenticate=['Bearer realm="livegen"'])
        return view(*args, **kwargs)
    return checked


def limit_rate():
    """Count a new job for this client address (in the database: every process shares it); 429 with
    Retry-After when over the limit."""
    wait = ratelimits.hit(request.remote_addr or "unknown", current_app.config["RATE_LIMIT_PER_MINUTE"])
    if wait:
        raise TooManyRequests(f"Too many new jobs from this address; try again in {wait} s.",
                              retry_after=wait)
