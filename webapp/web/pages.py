"""The HTML pages: the prompt form, one job's page, the card htmx polls, and the cards' SSE stream."""
import time

from flask import (
    Blueprint,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)

from webapp import ollama, queue, statuses
from webapp.snapshots import snapshot_of, snapshots_of
from webapp.web import csrf, live, sse
from webapp.web.access import get_job_or_404, limit_rate
from webapp.web.validation import InvalidInput, generation_request

bp = Blueprint("pages", __name__)
STOP_POLLING = 286  # htmx 2: "stop polling"; the final card also carries no trigger
HTML_PING_AFTER = 2.5  # the cards' stream sends something at least this often
SSE_FRESH_MS = int(HTML_PING_AFTER * 1000) + 1500  # the page polls again once SSE is this quiet
MAX_STREAMED_JOBS = 50
_models = {"at": 0.0, "names": []}


def model_names():
    """Ollama's models for the form's suggestions, asked at most once a minute."""
    if time.monotonic() - _models["at"] > 60:
        _models["at"] = time.monotonic()  # before the call: requests meanwhile don't call too
        _models["names"] = ollama.list_models(current_app.config["OLLAMA_URL"])
    return _models["names"]


def recent_cards():
    return snapshots_of(queue.recent(10))


def index_page(error=None, form=None):
    return render_template("index.html", cards=recent_cards(), error=error, form=form or {},
                           models=model_names())


@bp.app_context_processor
def page_timing():
    return {"SSE_FRESH_MS": SSE_FRESH_MS}


@bp.get("/")
def index():
    return index_page()


@bp.post("/jobs")
def create():
    csrf.check()
    limit_rate()
    form = {key: request.form.get(key, "").strip() for key in ("prompt", "model", "num_predict")}
    try:
        fields = generation_request(_as_request(form), current_app.config["DEFAULT_MODEL"])
    except InvalidInput as error:
        if request.headers.get("HX-Request"):  # htmx swaps 2xx only: show the form with its error
            return index_page(str(error), form), 200, {"HX-Retarget": "body", "HX-Reswap": "innerHTML"}
        return index_page(str(error), form), 400
    job = queue.enqueue(**fields)
    if request.headers.get("HX-Request"):
        return render_template("_live.html", cards=recent_cards())
    return redirect(url_for("pages.job", job_id=job.job_id), 303)


def _as_request(form):
    body = {"prompt": form["prompt"], "model": form["model"] or None}
    if form["num_predict"]:
        try:
            body["options"] = {"num_predict": int(form["num_predict"])}
        except ValueError:
            raise InvalidInput("num_predict", "must be a whole number") from None
    return body


@bp.get("/jobs/<job_id>")
def job(job_id):
    return render_template("job.html", job=snapshot_of(get_job_or_404(job_id)))


@bp.get("/jobs/<job_id>/card")
def card(job_id):
    snap = snapshot_of(get_job_or_404(job_id))
    code = STOP_POLLING if snap["status"] in statuses.ENDED else 200
    # The version travels in a header too: the page refuses a poll older than the card it has.
    return render_template("_card.html", job=snap), code, {"X-Job-Version": str(snap["version"])}


@bp.get("/jobs/<job_id>/result")
def result(job_id):
    return render_template("_result.html", job=snapshot_of(get_job_or_404(job_id)))


@bp.post("/jobs/<job_id>/cancel")
def cancel(job_id):
    csrf.check()
    queue.request_cancel(get_job_or_404(job_id))
    if request.headers.get("HX-Request"):
        return render_template("_card.html", job=snapshot_of(queue.get(job_id)))
    return redirect(url_for("pages.job", job_id=job_id), 303)


@bp.get("/jobs/stream", endpoint="stream")
def stream_cards():
    """`?jobs=a,b`: the cards of these jobs as HTML fragments over one connection, one event name
    per job (`job-<id>`), rendered by the same template as a poll."""
    job_ids = [j for j in request.args.get("jobs", "").split(",") if j][:MAX_STREAMED_JOBS]
    snaps = [snap for snap in live.read_snapshots(dict.fromkeys(job_ids)).values() if snap]
    if not snaps:
        abort(404, "None of these jobs exist.")
    app = current_app._get_current_object()
    events = live.follow(app, snaps, snaps, _card_event, lambda last: sse.ping(), HTML_PING_AFTER,
                         end=sse.event("close", {}))
    return live.event_stream(stream_with_context(events))


@live.rendered_once
def _card_event(snap):
    """One card as an event, the same for every viewer (the CSRF token travels in a header that
    the page's htmx adds, not in the fragment), so it is rendered once per change."""
    html = render_template("_card.html", job=snap, csrf_field=False)
    return sse.html_event(f"job-{snap['job_id']}", html, snap["version"])
