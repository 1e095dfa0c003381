"""Owners: who owns a job, as the `owner` column names it: a browser session, an API key (made
and found in `keys`), the API_TOKEN, or (while the API is open, with no key at all) the one
anonymous API caller."""
import hashlib

ANONYMOUS = "anonymous"
TOKEN = "token"  # API_TOKEN: one key, for simple deployments


def browser(session_token):
    """A browser's owner name. Only a hash of the session's token is stored: the rows do not
    hold what a cookie would need (and the cookie is signed besides)."""
    return "browser:" + hashlib.sha256(session_token.encode()).hexdigest()[:40]


def key(secret_hash):
    """A key's owner name, from its secret's hash: never given to another key (a database may
    hand a deleted key's row id out again), and it says nothing of the secret."""
    return f"key:{secret_hash[:32]}"


def is_key(owner):
    """Made with an API key (or API_TOKEN): an identity that costs something to get, unlike a
    browser session or the open API, which anyone can start afresh."""
    return owner == TOKEN or owner.startswith("key:")
