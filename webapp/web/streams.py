"""The public SSE route: one job's progress, and with `?include=output` its text as it is written."""
from flask import Blueprint, current_app, request

from webapp import statuses
from webapp.output import KINDS
from webapp.web import live, sse
from webapp.web.access import may_read, no_such_job
from webapp.web.events import event_id, job_event, text_events
from webapp.web.validation import include_output, whole_numbers

bp = Blueprint("streams", __name__, url_prefix="/api/v1/ai/generation")


@bp.get("/<job_id>/progress")
def progress(job_id):
    with_text = include_output()
    version, position = parse_event_id(request.headers.get("Last-Event-ID", ""))
    snap = live.read_snapshots([job_id], {job_id: position} if with_text else None, readable=may_read)[job_id]
    if snap is None:
        raise no_such_job(job_id)
    # A reconnect that already has this version gets no repeat (unless it is the final one).
    resumed = version == snap["version"] and snap["status"] not in statuses.ENDED
    app = current_app._get_current_object()
    if not with_text:
        return live.event_stream(live.follow(
            app, [] if resumed else [json_event(snap)], [snap], lambda snap, _sub: json_event(snap),
            lambda last: sse.ping(last["version"]), app.config["SSE_PING_INTERVAL"]))
    texts, reset, now = snap["_opening"]
    opening = [with_text_events(snap, position, texts, reset, now, skip_progress=resumed)]
    return live.event_stream(live.follow(
        app, opening, [snap], emit_with_text, lambda _last: sse.ping(), app.config["SSE_PING_INTERVAL"],
        positions={job_id: now}))


def parse_event_id(value):
    """(version, text position) from a Last-Event-ID: `<version>` from a stream without text,
    `<version>-<attempt>-<text chars>-<thinking chars>` from one with it. Anything else: (None, None)."""
    numbers = whole_numbers(value, 4) or whole_numbers(value, 1)
    if numbers is None:
        return None, None
    return numbers[0], (numbers[1:] if len(numbers) == 4 else None)


@live.rendered_once
def json_event(snap):
    name, data = job_event(snap)
    return sse.event(name, data, snap["version"])


def emit_with_text(snap, sub):
    """A change, for a client that is sent the text: the job's event and the text it lacks."""
    return live.text_for(snap, sub, with_text_events)


def with_text_events(snap, had, texts, reset, now, skip_progress=False):
    """The job's event and its text events, each with an id saying where the client stands after
    it: `<version>-<attempt>-<text chars>-<thinking chars>`. Text comes first for an ended job
    (all of it is there when the end is), after the progress event for a live one."""
    before = tuple(had or (now[0], 0, 0))
    position = [now[0], 0, 0] if reset else list(before)
    frames = []
    for kind, end, name, data in text_events(texts, reset, now[0]):
        position[1 + KINDS.index(kind)] = end
        frames.append(sse.event(name, data, event_id(snap, position)))
    ended = snap["status"] in statuses.ENDED
    name, data = job_event(snap)
    own = "" if skip_progress else sse.event(name, data, event_id(snap, position if ended else before))
    return "".join([*frames, own] if ended else [own, *frames])


