"""The embeddable card's server side (static/embed.js): CORS on the few GET routes it reads, for the
pages of CORS_ORIGINS and without credentials, and the card's timings on its fragment. Every other
route, and every method that changes something, answers other origins as before (origins.py
refuses their POSTs)."""
import json

from flask import current_app, request

from webapp.snapshots import HOLD_SHARE
from webapp.web.pages import SSE_FRESH_MS
from webapp.web.templating import SOON_MS, STALLED_AFTER_MS

# What the card reads: its fragment (the first paint, and the polls when SSE is blocked), the
# cards' HTML stream, and the job's status (the detail of its end event).
CARD_ENDPOINTS = frozenset({"pages.card", "pages.stream", "api.status"})
# The stylesheet the card adopts (read by fetch, so it needs CORS), and embed.js itself, so that
# a host may load it with `integrity=` and `crossorigin`.
STATIC_FILES = frozenset({"app.css", "embed.js"})
# The timings our pages read from <html data-…>: an embedded card has no page of ours to read.
TIMING = json.dumps({"sse_fresh_ms": SSE_FRESH_MS, "stalled_after_ms": STALLED_AFTER_MS,
                     "soon_ms": SOON_MS, "hold_share": HOLD_SHARE}, separators=(",", ":"))


def is_card_route():
    """Whether this request is one the embedded card makes (a read, of one of its routes)."""
    if request.method not in ("GET", "HEAD"):
        return False
    if request.endpoint == "static":
        return (request.view_args or {}).get("filename") in STATIC_FILES
    return request.endpoint in CARD_ENDPOINTS


def allowed_origin(allowed):
    """The Access-Control-Allow-Origin to send: `*` when any origin is allowed, the request's
    Origin when it is listed (compared as a browser sends it, lowercase), else None."""
    if "*" in allowed:
        return "*"
    origin = request.headers.get("Origin")
    return origin if origin and origin.lower() in allowed else None


def add_cors_headers(response):
    if not is_card_route():
        return response
    if request.endpoint == "pages.card":
        response.headers["X-Livegen-Timing"] = TIMING  # same-origin embeds read it too
    allowed = current_app.config["CORS_ORIGINS"]
    if not allowed:
        return response
    # Whatever the answer, it depends on the Origin: a cache must not hand one origin's to another.
    response.vary.add("Origin")
    origin = allowed_origin(allowed)
    if origin is not None:
        # No Allow-Credentials: the card reads what its link lets anyone read, never as a session.
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = "X-Livegen-Timing"
    return response


def register(app):
    app.after_request(add_cors_headers)
