"""The JSON stream's events for a job snapshot, in the contract's shapes."""
from webapp import statuses

# `null`s are left out: a progress event goes out every half second to every watcher.
PROGRESS_FIELDS = ("status", "phase", "progress", "current_tokens", "tokens_per_second", "elapsed_time",
                   "estimated_remaining", "estimated_remaining_low", "estimated_remaining_high",
                   "prompt_tokens", "completion_tokens", "total_tokens", "queue_position", "time_since_submit",
                   "thinking_tokens", "timestamp")
# What the create's 202 tells of the wait ahead (null where not known yet).
SUBMIT_FIELDS = ("queue_position", "estimated_remaining", "estimated_remaining_low", "estimated_remaining_high")
COMPLETE_FIELDS = ("status", "total_tokens", "prompt_tokens", "completion_tokens", "elapsed_time",
                   "tokens_per_second", "thinking_tokens")


def job_event(snap):
    """(event name, payload): `complete`, `error` (failed or cancelled) or `progress`."""
    status = snap["status"]
    if status == statuses.COMPLETED:
        return "complete", _present(snap, COMPLETE_FIELDS)
    if status in statuses.ENDED:
        return "error", {"status": status, "error": snap.get("error_message") or status}
    payload = _present(snap, PROGRESS_FIELDS)
    if "progress" in payload:
        payload["progress"] = round(payload["progress"], 1)
    return "progress", payload


def _present(snap, fields):
    return {key: snap[key] for key in fields if snap.get(key) is not None}


def event_id(snap, position):
    """A text-carrying stream's event id: `<version>-<attempt>-<text chars>-<thinking chars>`."""
    return "-".join(str(number) for number in (snap["version"], *position))


def text_event(kind, offset, text, attempt, reset=False):
    """(`output` or `thinking`, payload): a piece of the text that starts `offset` characters
    (code points) in; `reset` tells the client to drop what it had of this kind (a new run
    starts over)."""
    payload = {"offset": offset, "text": text, "attempt": attempt}
    if reset:
        payload["reset"] = True
    return ("output" if kind == "text" else "thinking"), payload


def text_events(texts, reset, attempt):
    """[(kind, characters after it, name, payload)] for what a client lacks ({kind: (offset,
    text)}): thinking first, as the model writes it first. A reset sends both kinds, each
    telling the client to drop its earlier text of that kind, even when the new one is empty."""
    events = []
    for kind in ("thinking", "text"):
        offset, text = texts.get(kind, (0, ""))
        if text or reset:
            events.append((kind, offset + len(text), *text_event(kind, offset, text, attempt, reset)))
    return events
