"""`/healthz`: the process answers (it touches nothing else, so a database outage never gets a
healthy web process restarted). `/readyz`: the database answers and its schema is the one this
code expects (migrations at head), or a newer release's (during a rolling deploy the release
step migrates before the old processes stop: they stay ready); 503 with the reason otherwise,
so a router holds traffic back from a process that could only answer errors. Neither counts against a rate limit."""
from flask import Blueprint, current_app, jsonify
from sqlalchemy.exc import SQLAlchemyError

from webapp.telemetry import schema_version

bp = Blueprint("health", __name__)
NO_STORE = {"Cache-Control": "no-store"}


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok"), 200, NO_STORE


@bp.get("/readyz")
def readyz():
    expected = schema_version.head(current_app)
    try:
        found = schema_version.current()
    except SQLAlchemyError as error:
        reason = f"The database did not answer: {type(getattr(error, 'orig', None) or error).__name__}."
        return jsonify(status="unavailable", reason=reason), 503, NO_STORE
    if found != expected and not schema_version.is_newer(current_app, found):
        reason = (f"The database's schema is at migration {found or 'none'}, this code needs {expected}: "
                  "run `flask --app wsgi db upgrade`.")
        return jsonify(status="unavailable", reason=reason), 503, NO_STORE
    return jsonify(status="ready", migration=found), 200, NO_STORE
