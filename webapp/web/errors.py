"""Error answers: JSON for API callers, a page for people, and never a 500 for what a client sent."""
import logging

from flask import current_app, jsonify, render_template, request
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import BadRequest, HTTPException, InternalServerError, ServiceUnavailable

from webapp.extensions import db, discard_session
from webapp.web.validation import InvalidInput

log = logging.getLogger(__name__)
DATABASE_ERRORS = (OperationalError, InterfaceError, PoolTimeout)  # the database, not the request

# Our words for werkzeug's generic errors (a message we wrote ourselves is shown as it is).
MESSAGES = {
    400: "The request could not be understood.",
    404: "There is nothing here. Check the address or the job id.",
    405: "This address does not take that method.",
    413: "The request body is too large; the limit is 1 MB.",
}
HEADERS_KEPT = ("Allow", "Retry-After", "WWW-Authenticate")


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


def handle_http(error, **extra):
    message = MESSAGES.get(error.code, error.name) if _is_default(error) else error.description
    headers = [(name, value) for name, value in error.get_headers() if name in HEADERS_KEPT]
    if wants_json():
        response = api_error(error.code, message, **extra)
        response.headers.extend(headers)
        return response
    return render_template("error.html", code=error.code, message=message), error.code, headers


def _is_default(error):
    """True when werkzeug's generic text would be shown, not a message we wrote."""
    return error.description == type(error).description


def handle_invalid_input(error):
    """A field out of range: 400 naming the field (in `error` and in `field`)."""
    return handle_http(BadRequest(str(error)), field=error.field)


def database_unavailable():
    return ServiceUnavailable("The database is busy or unreachable; try again in a few seconds.", retry_after=2)


def handle_database_unavailable(error):
    """The database is down or every connection is busy: not the client's fault, and worth a
    retry, so 503 with Retry-After instead of a 500."""
    log.warning("database unavailable on %s %s: %s", request.method, request.path, error)
    discard_session()
    return handle_http(database_unavailable())


def release_session(response):
    """End the transaction and give the connection back before the answer leaves. Left to
    Flask-SQLAlchemy's teardown, a database error there (a reset connection) escapes every
    handler as a bare 500; after this the teardown has nothing left to say to the database."""
    try:
        db.session.rollback()  # everything this request wrote is committed already
    except DATABASE_ERRORS as error:
        log.warning("database error while ending %s %s: %s", request.method, request.path, error)
        discard_session()
        # A read is answered again on retry; a write already committed, and a 503 would make
        # its client send it twice.
        if response.status_code < 500 and request.method in ("GET", "HEAD"):
            return current_app.make_response(handle_http(database_unavailable()))
    return response


def handle_unexpected(error):
    log.exception("unhandled error on %s %s", request.method, request.path)
    return handle_http(InternalServerError("Something went wrong on our side; it has been logged."))


def register(app):
    app.register_error_handler(HTTPException, handle_http)
    app.register_error_handler(InvalidInput, handle_invalid_input)
    for database_error in DATABASE_ERRORS:
        app.register_error_handler(database_error, handle_database_unavailable)
    app.register_error_handler(Exception, handle_unexpected)
    # Registered last, so it runs first (Flask runs after_request functions in reverse): the
    # 503 it may answer still gets the security headers.
    app.after_request(release_session)
