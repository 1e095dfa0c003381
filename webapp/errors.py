"""Error answers: JSON for API callers, a page for people, and never a 500 for what a client sent."""
import logging

from flask import jsonify, render_template, request
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException, InternalServerError, ServiceUnavailable

from webapp.extensions import db

log = logging.getLogger(__name__)

MESSAGES = {
    400: "The request could not be understood.",
    401: "This needs a valid token: send 'Authorization: Bearer <API_TOKEN>'.",
    404: "There is nothing here. Check the address or the job id.",
    405: "This address does not take that method.",
    413: "The request body is too large; the limit is 1 MB.",
    415: "Send the body as JSON with 'Content-Type: application/json'.",
    429: "Too many requests from this address; wait a minute and try again.",
}


def wants_json():
    if request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]


def api_error(status, message, headers=None, **extra):
    response = jsonify(success=False, error=message, **extra)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def handle_http(error):
    message = MESSAGES.get(error.code, error.name) if _is_default(error) else error.description
    headers = dict(error.get_headers()) if error.code in (401, 405, 503) else {}
    headers.pop("Content-Type", None)
    if wants_json():
        return api_error(error.code, message, headers)
    html = render_template("error.html", code=error.code, message=message)
    return html, error.code, headers


def _is_default(error):
    """True when werkzeug's generic text would be shown, not a message we wrote."""
    return error.description == type(error).description


def handle_database_unavailable(error):
    """The database is down or every connection is busy: not the client's fault, and worth a
    retry, so 503 with Retry-After instead of a 500."""
    log.warning("database unavailable on %s %s: %s", request.method, request.path, error)
    db.session.rollback()
    unavailable = ServiceUnavailable("The database is busy or unreachable; try again in a few seconds.",
                                     retry_after=2)
    return handle_http(unavailable)


def handle_unexpected(error):
    log.exception("unhandled error on %s %s", request.method, request.path)
    return handle_http(InternalServerError("Something went wrong on our side; it has been logged."))


def register(app):
    app.register_error_handler(HTTPException, handle_http)
    app.register_error_handler(OperationalError, handle_database_unavailable)
    app.register_error_handler(PoolTimeout, handle_database_unavailable)
    app.register_error_handler(Exception, handle_unexpected)
