"""Requests from another site never change anything: a POST (or any unsafe method) that a browser
says came from another origin is refused with 403 before any view runs. The check is Go's
`http.CrossOriginProtection`: the browser's `Sec-Fetch-Site` when it sends one, else `Origin`
against `Host`; a request with neither is not from a browser's page (curl, a server) and passes.
The forms' CSRF tokens stay, for browsers too old to send either header."""
from urllib.parse import urlsplit

from flask import abort, request

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def from_this_site():
    """Whether the request may change something, by what the browser says of where it came from."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site in ("same-origin", "none")  # "none": the person typed it or used a bookmark
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == request.host.lower()  # "null" has no host: refused


def refuse_cross_origin():
    if request.method not in SAFE_METHODS and not from_this_site():
        abort(403, "This request came from a page on another origin (site or port); it can change nothing here.")


def register(app):
    app.before_request(refuse_cross_origin)
