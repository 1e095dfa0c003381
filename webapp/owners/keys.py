"""Named API keys: made, listed, revoked, and found by their secret (only its hash is kept)."""
import hashlib
import hmac
import secrets

import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import ApiKey

PREFIX = "lg_"


class KeyProblem(ValueError):
    """A key operation that cannot be done; the message says why."""


def _hash(secret):
    return hashlib.sha256(secret.encode()).hexdigest()


def create(name, admin=False):
    """A new key named `name` (an operator's key with `admin`: it opens /admin); returns its
    secret, which is shown once and never stored."""
    name = name.strip()
    if not name or len(name) > 100:
        raise KeyProblem("A key's name must be 1 to 100 characters.")
    if db.session.scalar(sa.select(ApiKey.id).where(ApiKey.name == name)) is not None:
        raise KeyProblem(f"There is already a key named '{name}'.")
    secret = PREFIX + secrets.token_urlsafe(32)
    db.session.add(ApiKey(name=name, secret_hash=_hash(secret), hint=secret[:len(PREFIX) + 4], admin=admin))
    db.session.commit()
    return secret


def listed():
    return list(db.session.scalars(sa.select(ApiKey).order_by(ApiKey.name)))


def revoke(name):
    """Delete the key: its secret stops working at once. False when there is no such key."""
    deleted = db.session.execute(sa.delete(ApiKey).where(ApiKey.name == name.strip())).rowcount
    db.session.commit()
    return bool(deleted)


def any_exist(api_token=None):
    """Whether the API needs a key: API_TOKEN is set or a key was made."""
    return bool(api_token) or db.session.scalar(sa.select(ApiKey.id).limit(1)) is not None


def any_operator(api_token=None):
    """Whether anyone can open /admin: API_TOKEN is set or an operator's key was made."""
    return bool(api_token) or db.session.scalar(sa.select(ApiKey.id).where(ApiKey.admin.is_(True)).limit(1)) is not None


def find(secret):
    """The key with this secret, or None. The lookup is by hash, so it reveals nothing by timing."""
    if not secret.startswith(PREFIX) or len(secret) > 100:
        return None
    return db.session.scalar(sa.select(ApiKey).where(ApiKey.secret_hash == _hash(secret)))


def matches_token(secret, api_token):
    return bool(api_token) and hmac.compare_digest(secret.encode(), api_token.encode())
