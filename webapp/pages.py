"""The HTML pages: the prompt form, one job's page, the card htmx polls, and the cards' SSE stream."""
import time

from flask import (Blueprint, abort, current_app, redirect, render_template, request,
                   stream_with_context, url_for)

from webapp import csrf, jobs, ollama, sse, stream
from webapp.snapshots import snapshot_of, snapshots_of
from webapp.validation import InvalidInput, generation_request

bp = Blueprint("pages", __name__)
STOP_POLLING = 286  # htmx 2: "stop polling"; the final card also carries no trigger
HTML_PING_AFTER = 2.5  # the page treats SSE as alive while something arrives at least this often
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
_models = {"at": 0.0, "names": []}


@bp.after_app_request
def security_headers(response):
    if response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


def model_names():
    """Ollama's models for the form's suggestions, asked at most once a minute."""
    if time.monotonic() - _models["at"] > 60:
        _models["at"] = time.monotonic()  # before the call: requests meanwhile don't call too
        _models["names"] = ollama.list_models(current_app.config["OLLAMA_URL"])
    return _models["names"]


def recent_cards():
    return snapshots_of(jobs.recent(10))


@bp.get("/")
def index():
    return render_template("index.html", cards=recent_cards(), error=None, form={}, models=model_names())


@bp.post("/jobs")
def create():
    csrf.check()
    wait = current_app.extensions["livegen.ratelimit"].hit(request.remote_addr)
    if wait:
        abort(429, f"Too many new jobs from this address; try again in {wait} s.")
    form = {key: request.form.get(key, "").strip() for key in ("prompt", "model", "num_predict")}
    try:
        fields = generation_request(_as_request(form), current_app.config["DEFAULT_MODEL"])
    except InvalidInput as error:
        page = render_template("index.html", cards=recent_cards(), error=str(error), form=form,
                               models=model_names())
        if request.headers.get("HX-Request"):  # htmx swaps 2xx only: show the form with its error
            return page, 200, {"HX-Retarget": "body", "HX-Reswap": "innerHTML"}
        return page, 400
    job = jobs.enqueue(**fields)
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


def _snapshot_or_404(job_id):
    job = jobs.get(job_id)
    if job is None:
        abort(404, "There is no job with this id; it may have been mistyped.")
    return snapshot_of(job)


@bp.get("/jobs/<job_id>")
def job(job_id):
    return render_template("job.html", job=_snapshot_or_404(job_id))


@bp.get("/jobs/<job_id>/card")
def card(job_id):
    snap = _snapshot_or_404(job_id)
    status = STOP_POLLING if snap["status"] in ("completed", "failed", "cancelled") else 200
    return render_template("_card.html", job=snap), status


@bp.get("/jobs/<job_id>/result")
def result(job_id):
    return render_template("_result.html", job=_snapshot_or_404(job_id))


@bp.post("/jobs/<job_id>/cancel")
def cancel(job_id):
    csrf.check()
    job = jobs.get(job_id)
    if job is None:
        abort(404, "There is no job with this id.")
    jobs.request_cancel(job)
    if request.headers.get("HX-Request"):
        return render_template("_card.html", job=snapshot_of(jobs.get(job_id)))
    return redirect(url_for("pages.job", job_id=job_id), 303)


@bp.get("/jobs/stream", endpoint="stream")
def stream_cards():
    """`?jobs=a,b`: the cards of these jobs as HTML fragments over one connection, one event name
    per job (`job-<id>`), rendered by the same template as a poll."""
    job_ids = [j for j in request.args.get("jobs", "").split(",") if j][:stream.MAX_JOBS]
    snaps = [snap for snap in stream.read_snapshots(dict.fromkeys(job_ids)).values() if snap]
    if not snaps:
        abort(404, "None of these jobs exist.")
    app = current_app._get_current_object()
    events = stream.stream(app, snaps, snaps, _card_event, lambda last: sse.ping(), HTML_PING_AFTER,
                           end=sse.event("close", {}))
    return stream.event_stream(stream_with_context(events))


@stream.shared
def _card_event(snap):
    """One card as an event, the same for every viewer (the CSRF token travels in a header that
    the page's htmx adds, not in the fragment), so it is rendered once per change."""
    html = render_template("_card.html", job=snap, csrf_field=False)
    return sse.html_event(f"job-{snap['job_id']}", html, snap["version"])
