"""Who may see the operator's page: the holder of an operator's key (`flask keys create NAME
--admin`, or API_TOKEN), by bearer header or by a signed-in session. A client's key is refused:
the page shows every owner's jobs."""
import functools
import hashlib
import hmac
import time
from typing import NamedTuple

import sqlalchemy as sa
from flask import current_app, g, session
from werkzeug.exceptions import Forbidden, Unauthorized

from webapp.extensions import db
from webapp.models import ApiKey
from webapp.owners import keys
from webapp.web.access import bearer_secret

SESSION_KEY = "admin"  # the other pages never read it: signing in here signs in nowhere else
SIGNED_IN_SECONDS = 12 * 3600  # a browser left signed in on a shared desk does not stay so for good
TOKEN_NAME = "API_TOKEN"
WWW_AUTHENTICATE = 'Bearer realm="livegen admin"'


class Operator(NamedTuple):
    name: str
    secret_hash: str


class SignInNeeded(Unauthorized):
    """401, answered with the sign-in form; `reason` says why an earlier sign-in no longer counts."""

    def __init__(self, reason=None):
        super().__init__(reason, www_authenticate=[WWW_AUTHENTICATE])
        self.reason = reason


class NoKeys(Forbidden):
    """403: no key exists, so no one can sign in; the page says how to make one."""


def _sha256(secret):
    return hashlib.sha256(secret.encode()).hexdigest()


def verify(secret):
    """The Operator whose key this is, or None. API_TOKEN counts as a key of that name."""
    secret = secret.strip()
    if keys.matches_token(secret, current_app.config["API_TOKEN"]):
        return Operator(TOKEN_NAME, _sha256(secret))
    key = keys.find(secret) if secret else None
    return Operator(key.name, key.secret_hash) if key and key.admin else None


def name_of(secret_hash):
    """The name of the key with this hash, if it still exists: one read of a unique index."""
    token = current_app.config["API_TOKEN"]
    if token and hmac.compare_digest(secret_hash, _sha256(token)):
        return TOKEN_NAME
    return db.session.scalar(sa.select(ApiKey.name).where(ApiKey.secret_hash == secret_hash, ApiKey.admin.is_(True)))


def remember(operator):
    session[SESSION_KEY] = {"key": operator.secret_hash, "until": int(time.time()) + SIGNED_IN_SECONDS}


def forget():
    session.pop(SESSION_KEY, None)


def current_operator():
    """The name of the key this request comes with: its bearer header (curl), else the key its
    session signed in with (a browser can send no header: the operator pastes the key into the
    sign-in form once, and the signed session keeps only its hash). The key is looked up on every
    request, so a revoked one stops working at the next. Raises SignInNeeded (401) or, while no
    key exists at all, NoKeys (403): the page is never open to everyone, as the API may be."""
    secret = bearer_secret(refuse=SignInNeeded)
    if secret is not None:
        found = verify(secret)
        if found is None:
            raise SignInNeeded("This is not an operator's key (revoked, never made, or a client's key: "
                               "make one with flask keys create NAME --admin).")
        return found.name
    signed_in = session.get(SESSION_KEY)
    if signed_in:
        return _still_signed_in(signed_in)
    if not keys.any_operator(current_app.config["API_TOKEN"]):
        raise NoKeys()
    raise SignInNeeded()


def _still_signed_in(signed_in):
    if not isinstance(signed_in, dict) or signed_in.get("until", 0) < time.time():
        forget()
        raise SignInNeeded("Your sign-in is more than 12 hours old: sign in again.")
    name = name_of(str(signed_in.get("key", "")))
    if name is None:
        forget()
        raise SignInNeeded("The key you signed in with no longer works (revoked, or API_TOKEN changed): "
                           "sign in with a current key.")
    return name


def operator_required(view):
    """The view runs only for an operator, whose key's name is then `g.operator`."""
    @functools.wraps(view)
    def checked(**kwargs):
        g.operator = current_operator()
        return view(**kwargs)
    return checked
