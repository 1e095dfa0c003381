"""The session cookie: signed, HttpOnly, SameSite=Lax, and Secure whenever the page came over HTTPS."""
from flask import request
from flask.sessions import SecureCookieSessionInterface


class SessionCookies(SecureCookieSessionInterface):
    """Flask's signed-cookie session, marked Secure per request: served over HTTPS (directly, or
    through a proxy that says so, with PROXY_HOPS set) the cookie never travels over plain HTTP
    again, while http://localhost in development still works."""

    def get_cookie_secure(self, app):
        return super().get_cookie_secure(app) or request.is_secure


def register(app):
    # Lax: a cross-site POST (a form on another site aimed at ours) arrives without the session.
    app.config.update(SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_HTTPONLY=True)
    app.session_interface = SessionCookies()
