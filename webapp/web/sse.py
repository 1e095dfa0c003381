"""Server-Sent Events framing: `retry:`, events with ids, pings. Standard library only."""
import json

RETRY_MS = 3000


def retry(ms=RETRY_MS):
    return f"retry: {ms}\n\n"


def event(name, data, event_id=None):
    """One event; `data` becomes compact JSON on a single `data:` line."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"{head}event: {name}\ndata: {body}\n\n"


def html_event(name, html, event_id=None):
    """An event whose data is an HTML fragment: one `data:` line per line of markup."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    lines = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
    return f"{head}event: {name}\n{lines}\n"


def ping(event_id=None):
    # A real event, not a `:` comment: some proxies drop comments, and pages never see them.
    return event("ping", {}, event_id)
