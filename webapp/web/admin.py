"""The operator's page, `/admin`: queue, workers, failures and model figures, for a key's holder only."""
import functools

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, url_for
from werkzeug.exceptions import TooManyRequests

from webapp import ratelimits
from webapp.models import utcnow
from webapp.owners import keys
from webapp.telemetry import overview
from webapp.web import admin_access, charts, csrf
from webapp.web.admin_access import NoKeys, SignInNeeded, operator_required

bp = Blueprint("admin", __name__)
POLL_SECONDS = 5
SIGN_INS_PER_MINUTE = 10  # per client address: a key is 256 random bits, so this only spares the database


@bp.get("/admin")
@operator_required
def page():
    return render_template("admin.html", operator=g.operator, **panel_context())


@bp.get("/admin/panel")
@operator_required
def panel():
    """The part of the page that htmx polls every POLL_SECONDS."""
    return render_template("_admin_panel.html", **panel_context())


@bp.post("/admin/sign-in")
def sign_in():
    csrf.check()
    wait = ratelimits.hit(f"admin-sign-in:{request.remote_addr or 'unknown'}", SIGN_INS_PER_MINUTE)
    if wait:
        raise TooManyRequests(f"Too many sign-in attempts from your address; try again in {wait} s.",
                              retry_after=wait)
    if not keys.any_operator(current_app.config["API_TOKEN"]):
        raise NoKeys()
    operator = admin_access.verify(request.form.get("key", ""))
    if operator is None:
        raise SignInNeeded("That is not a current operator's key: check it, or make one with "
                           "flask keys create NAME --admin (a client's key does not open this page).")
    admin_access.remember(operator)
    return redirect(url_for("admin.page"), 303)


@bp.post("/admin/sign-out")
def sign_out():
    csrf.check()
    admin_access.forget()
    return redirect(url_for("admin.page"), 303)


@bp.errorhandler(SignInNeeded)
def ask_to_sign_in(error):
    return _refused(error, "admin_sign_in.html", reason=error.reason)


@bp.errorhandler(NoKeys)
def no_keys(error):
    return _refused(error, "admin_sign_in.html", no_keys=True)


def _refused(error, template, **context):
    """The sign-in page; to an htmx poll, an order to reload the page, which then shows it."""
    headers = dict(error.get_headers())
    headers.pop("Content-Type", None)
    if request.headers.get("HX-Request"):  # htmx swaps no 4xx: without this the panel would just freeze
        if context.get("reason"):
            flash(context["reason"])
        return "", error.code, {**headers, "HX-Refresh": "true"}
    return render_template(template, **context), error.code, headers


@bp.after_request
def not_stored(response):
    # Who is running what, and the error messages: no cache or proxy may keep a copy.
    response.headers["Cache-Control"] = "no-store"
    return response


def panel_context():
    now, heads = utcnow(), overview.queue_heads()
    return {"now": now, "queue": overview.queue_summary(heads, now), "line": overview.next_in_line(heads, now),
            "workers": overview.running_by_worker(now), "failures": overview.recent_failures(),
            "models": [with_charts(overview.model_figures(model)) for model in overview.recent_models()],
            "owner_label": functools.partial(owner_label, overview.key_names()), "short_ms": short_ms,
            "charts": charts, "POLL_SECONDS": POLL_SECONDS}


def with_charts(figures):
    return {**figures, "length_chart": charts.histogram(figures["lengths"]),
            "speed_chart": charts.sparkline(figures["speeds"]),
            "load_chart": charts.ranges([("cold", figures["load_cold"]), ("warm", figures["load_warm"])])}


def owner_label(names, owner):
    """An owner as an operator reads it: a key by its name, a browser by the start of its hash."""
    kind, _, digest = owner.partition(":")
    if owner in names:
        return f"key {names[owner]}"
    if kind in ("key", "browser"):
        return f"{kind} {digest[:8]}" + (" (revoked)" if kind == "key" else "")
    return {"token": "API_TOKEN", "anonymous": "open API"}.get(owner, owner[:20])


def short_ms(ms):
    """'340 ms', '12.5 s', '3 min 05 s', '2 h 07 min'; an em dash when unknown."""
    if ms is None:
        return "—"
    sign, ms = ("−" if ms < 0 else ""), abs(ms)
    if ms < 1000:
        return f"{sign}{ms:.0f} ms"
    if ms < 60_000:
        return f"{sign}{ms / 1000:.1f} s"
    minutes, seconds = divmod(int(ms // 1000), 60)
    if minutes < 60:
        return f"{sign}{minutes} min {seconds:02d} s"
    return f"{sign}{minutes // 60} h {minutes % 60:02d} min"
