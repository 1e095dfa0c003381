"""CSRF protection for the HTML forms: a per-session token, checked on every form POST."""
import hmac
import secrets

from flask import abort, request, session

FIELD = "csrf_token"


def token():
    """This session's token (made on first use); templates put it in a hidden field."""
    if FIELD not in session:
        session[FIELD] = secrets.token_urlsafe(32)
    return session[FIELD]


def check():
    """Abort with 400 unless the form (or the X-CSRF-Token header, for htmx) carries the token."""
    sent = request.form.get(FIELD) or request.headers.get("X-CSRF-Token", "")
    expected = session.get(FIELD, "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        abort(400, "This form has expired or did not come from this site; reload the page and try again.")
