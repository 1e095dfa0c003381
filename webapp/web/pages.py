"""The HTML pages: the prompt form, one job's page, the card htmx polls, and the cards' SSE stream."""
import logging
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

from webapp import ollama, output, queue, statuses
from webapp.batches import store as batch_store
from webapp.extensions import discard_session
from webapp.snapshots import snapshot_of, snapshots_of
from webapp.web import csrf, live, sse, webhook_pages
from webapp.web.access import admit, browser_owner, may_read, no_such_job, own_job_or_404, readable_job_or_404
from webapp.web.errors import DATABASE_ERRORS
from webapp.web.events import event_id, text_event, text_events
from webapp.web.validation import InvalidInput, form_defaults, generation_request, whole_numbers

bp = Blueprint("pages", __name__)
log = logging.getLogger(__name__)
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


def with_tails(rows):
    """Snapshots for cards, each with the last line or two of its text (one read for all)."""
    tails = output.tails(rows)
    snaps = snapshots_of(rows)
    for job, snap in zip(rows, snaps, strict=True):
        snap["output_tail"] = tails.get(job.id, "")
    return snaps


def recent_cards():
    """This browser's newest jobs (none of anyone else's)."""
    owner = browser_owner(create=True)
    return with_tails(queue.recent(owner, 10))


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
    owner = browser_owner(create=True)
    form = {key: request.form.get(key, "").strip() for key in ("prompt", "model", "num_predict")}
    try:
        fields = generation_request(_as_request(form), current_app.config["DEFAULT_MODEL"])
    except InvalidInput as error:
        if request.headers.get("HX-Request"):  # htmx swaps 2xx only: show the form with its error
            return index_page(str(error), form), 200, {"HX-Retarget": "body", "HX-Reswap": "innerHTML"}
        return index_page(str(error), form), 400
    admit(owner)
    job = queue.enqueue(**fields, owner=owner)
    if request.headers.get("HX-Request"):
        return _cards_after_create(job.job_id)
    return redirect(url_for("pages.job", job_id=job.job_id), 303)


def _cards_after_create(job_id):
    """The cards, the new job's first. Read after its commit: a database fault here sends the
    browser to the job's page (its address needs no query) rather than answer a 503 that would
    have the person submit the job again."""
    try:
        return render_template("_live.html", cards=recent_cards())
    except DATABASE_ERRORS as error:
        log.warning("job %s created; the cards could not be read: %s", job_id, error)
        discard_session()
        return "", 200, {"HX-Redirect": url_for("pages.job", job_id=job_id)}


def _as_request(form):
    return {"prompt": form["prompt"], **form_defaults(form)}


def with_text(job):
    """A job's snapshot with its whole text and thinking so far (for its page)."""
    snap = snapshot_of(job)
    texts = output.text_of(job)
    snap.update(output=texts["text"], thinking=texts["thinking"])
    return snap


@bp.get("/jobs/<job_id>")
def job(job_id):
    job = readable_job_or_404(job_id)
    return render_template("job.html", job=with_text(job), mine=job.owner == browser_owner(),
                           batch=batch_store.of_item(job), item_index=job.batch_index,
                           deliveries=webhook_pages.of_job(job)[0])


@bp.get("/jobs/<job_id>/card")
def card(job_id):
    snap = with_tails([readable_job_or_404(job_id)])[0]
    code = STOP_POLLING if snap["status"] in statuses.ENDED else 200
    # The version travels in a header too: the page refuses a poll older than the card it has.
    return render_template("_card.html", job=snap), code, {"X-Job-Version": str(snap["version"])}


@bp.get("/jobs/<job_id>/result")
def result(job_id):
    return render_template("_result.html", job=with_text(readable_job_or_404(job_id)))


@bp.get("/jobs/<job_id>/output")
def output_since(job_id):
    """The text a page lacks, when its stream is blocked: `?attempt=&from=&thinking_from=` say
    what it has. JSON, the same pieces the stream's `output-<id>` and `thinking-<id>` carry."""
    position = tuple(_whole(name) for name in ("attempt", "from", "thinking_from"))
    snap = live.read_snapshots([job_id], {job_id: position}, readable=may_read)[job_id]
    if snap is None:
        raise no_such_job(job_id)
    texts, reset, now = snap["_opening"]
    pieces = {kind: text_event(kind, *texts[kind], now[0], reset)[1] for kind in output.KINDS}
    return {"job_id": job_id, "version": snap["version"], "status": snap["status"],
            "output": pieces["text"], "thinking": pieces["thinking"]}


def _whole(name):
    number = whole_numbers(request.args.get(name, "0"), 1)
    if number is None:
        abort(400, f"{name} must be a whole number of characters.")
    return number[0]


@bp.post("/jobs/<job_id>/cancel")
def cancel(job_id):
    csrf.check()
    queue.request_cancel(own_job_or_404(job_id, browser_owner()))
    if request.headers.get("HX-Request"):
        return render_template("_card.html", job=with_tails([queue.get(job_id)])[0])
    return redirect(url_for("pages.job", job_id=job_id), 303)


@bp.get("/jobs/stream", endpoint="stream")
def stream_cards():
    """`?jobs=a,b`: the cards of these jobs as HTML fragments over one connection, one event name
    per job (`job-<id>`), rendered by the same template as a poll. A job page adds `&output=`
    `<attempt>-<chars>-<thinking chars>` (what it shows): its text then follows, as JSON events
    `output-<id>` and `thinking-<id>` that the page's script appends."""
    job_ids = [j for j in request.args.get("jobs", "").split(",") if j][:MAX_STREAMED_JOBS]
    positions = _text_position(job_ids)
    found = live.read_snapshots(dict.fromkeys(job_ids), positions, tails=True, readable=may_read)
    snaps = [snap for snap in found.values()
             if snap]
    if not snaps:
        abort(404, "None of these jobs exist.")
    opening = [_card_event(snap) for snap in snaps]
    if positions:
        opening += [_text_events(snap, *snap["_opening"]) for snap in snaps]
        positions = {snap["job_id"]: snap["_opening"][2] for snap in snaps}
    app = current_app._get_current_object()
    events = live.follow(app, opening, snaps, _emit, lambda last: sse.ping(), HTML_PING_AFTER,
                         end=sse.event("close", {}), positions=positions, texts=True)
    return live.event_stream(stream_with_context(events))


def _text_position(job_ids):
    """{job_id: position} from `?output=` (one job only), or None. A reconnect's Last-Event-ID,
    when a text event's, says better where the page stands than the URL it was opened with."""
    value = request.args.get("output")
    if value is None:
        return None
    position = whole_numbers(value, 3)
    if len(job_ids) != 1 or position is None:
        abort(400, "output must be <attempt>-<chars>-<thinking chars>, for one job.")
    resumed = whole_numbers(request.headers.get("Last-Event-ID", ""), 4)
    return {job_ids[0]: resumed[1:] if resumed else position}


def _emit(snap, sub):
    """A change: the card, then (on a job page) the text the page lacks."""
    card = _card_event(snap)
    if snap["job_id"] not in sub.positions:
        return card
    return card + live.text_for(snap, sub, _page_text)


def _page_text(snap, _had, texts, reset, now):
    return _text_events(snap, texts, reset, now)


def _text_events(snap, texts, reset, now):
    """The text pieces as `output-<id>`/`thinking-<id>` JSON events, whose ids (as on the JSON
    stream) say where the page stands after each: a reconnect goes on from there."""
    frames = []
    position = [now[0], 0, 0] if reset else [now[0], texts["text"][0], texts["thinking"][0]] if texts else list(now)
    for kind, end, name, data in text_events(texts, reset, now[0]):
        position[1 + output.KINDS.index(kind)] = end
        frames.append(sse.event(f"{name}-{snap['job_id']}", data, event_id(snap, position)))
    return "".join(frames)


@live.rendered_once
def _card_event(snap):
    """One card as an event, the same for every viewer (the CSRF token travels in a header that
    the page's htmx adds, not in the fragment), so it is rendered once per change."""
    html = render_template("_card.html", job=snap, csrf_field=False)
    return sse.html_event(f"job-{snap['job_id']}", html, snap["version"])
