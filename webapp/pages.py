"""The HTML pages: the prompt form, one job's page, and the progress card that htmx polls."""
from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for

from webapp import csrf, jobs
from webapp.snapshots import snapshot_of
from webapp.validation import InvalidInput, generation_request

bp = Blueprint("pages", __name__)
STOP_POLLING = 286  # htmx 2: "stop polling"; the final card also carries no trigger


@bp.get("/")
def index():
    cards = [snapshot_of(job) for job in jobs.recent(10)]
    return render_template("index.html", cards=cards, error=None, form={})


@bp.post("/jobs")
def create():
    csrf.check()
    form = {key: request.form.get(key, "").strip() for key in ("prompt", "model", "num_predict")}
    try:
        fields = generation_request(_as_request(form), current_app.config["DEFAULT_MODEL"])
    except InvalidInput as error:
        cards = [snapshot_of(job) for job in jobs.recent(10)]
        return render_template("index.html", cards=cards, error=str(error), form=form), 400
    job = jobs.enqueue(**fields)
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


@bp.post("/jobs/<job_id>/cancel")
def cancel(job_id):
    csrf.check()
    job = jobs.get(job_id)
    if job is None:
        abort(404, "There is no job with this id.")
    jobs.request_cancel(job)
    if request.headers.get("HX-Request"):
        return card(job_id)
    return redirect(url_for("pages.job", job_id=job_id), 303)
