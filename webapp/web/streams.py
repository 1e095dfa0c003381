"""The public SSE route: one job's progress, as the contract describes it."""
from flask import Blueprint, current_app, request

from webapp import statuses
from webapp.web import live, sse
from webapp.web.access import no_such_job
from webapp.web.events import job_event

bp = Blueprint("streams", __name__, url_prefix="/api/v1/ai/generation")


@bp.get("/<job_id>/progress")
def progress(job_id):
    snap = live.read_snapshots([job_id])[job_id]
    if snap is None:
        raise no_such_job(job_id)
    # A reconnect that already has this version gets no repeat (unless it is the final one).
    resumed = (request.headers.get("Last-Event-ID", "") == str(snap["version"])
               and snap["status"] not in statuses.ENDED)
    app = current_app._get_current_object()
    events = live.follow(app, [] if resumed else [snap], [snap], json_event,
                         lambda last: sse.ping(last["version"]), app.config["SSE_PING_INTERVAL"])
    return live.event_stream(events)


@live.rendered_once
def json_event(snap):
    name, data = job_event(snap)
    return sse.event(name, data, snap["version"])
