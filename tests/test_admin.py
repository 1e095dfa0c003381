"""The operator's page without a browser: who may open it (a key as a bearer header, or pasted into
the sign-in form once; never while no key exists), and what it shows — the queue in its turns,
running jobs by worker with their leases, failures, per-model figures and their SVG charts —
checked against rows inserted with known values."""
import random
import re
from datetime import timedelta

import pytest

from webapp import owners, queue, ratelimits
from webapp.extensions import db
from webapp.models import Job, utcnow
from webapp.owners import keys
from webapp.telemetry import overview
from webapp.web import admin, admin_access, charts

from helpers import both_backends

PAGE, PANEL, SIGN_IN, SIGN_OUT = "/admin", "/admin/panel", "/admin/sign-in", "/admin/sign-out"


def bearer(secret):
    return {"Authorization": f"Bearer {secret}"}


def csrf_of(client):
    """The CSRF token the sign-in form carries (the 401 page has the form)."""
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(PAGE).get_data(as_text=True)).group(1)


def sign_in(client, secret):
    return client.post(SIGN_IN, data={"key": secret, "csrf_token": csrf_of(client)})


def add_job(**fields):
    """A job row with the given fields, inserted as the worker would have left it."""
    now = utcnow()
    values = {"prompt": "Say something", "model": "llama3.2", "status": "queued", "owner": "anonymous",
              "created_at": now, "last_update_at": now, **fields}
    job = Job(**values)
    db.session.add(job)
    db.session.commit()
    return job


def page_text(client, secret):
    response = client.get(PANEL, headers=bearer(secret))
    assert response.status_code == 200
    return response.get_data(as_text=True)


# --- who may see it --------------------------------------------------------------------------------
def test_without_a_key_it_is_401_with_the_sign_in_form(client):
    keys.create("ops", admin=True)
    for path in (PAGE, PANEL):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert 'name="key"' in response.get_data(as_text=True) and "csrf_token" in response.get_data(as_text=True)


def test_while_no_key_exists_the_page_is_refused_and_says_how_to_make_one(client):
    response = client.get(PAGE)
    text = response.get_data(as_text=True)
    assert response.status_code == 403 and "keys create NAME --admin" in text and 'name="key"' not in text
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").get_data(as_text=True)).group(1)
    assert client.post(SIGN_IN, data={"key": "lg_anything", "csrf_token": token}).status_code == 403


def test_api_token_counts_as_a_key(app, client):
    app.config["API_TOKEN"] = "the-token"
    assert client.get(PAGE).status_code == 401
    response = client.get(PAGE, headers=bearer("the-token"))
    assert response.status_code == 200 and "API_TOKEN" in response.get_data(as_text=True)


def test_a_bearer_key_opens_the_page_and_a_wrong_one_does_not(client):
    secret = keys.create("ops", admin=True)
    response = client.get(PAGE, headers=bearer(secret))
    assert response.status_code == 200 and "<strong>ops</strong>" in response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    assert client.get(PANEL, headers=bearer(secret)).status_code == 200
    for header in (bearer(secret + "x"), bearer("lg_nothing"), {"Authorization": f"Basic {secret}"}):
        assert client.get(PAGE, headers=header).status_code == 401, header


def test_signing_in_with_a_good_key_keeps_the_session_for_the_admin_pages(client):
    secret = keys.create("ops", admin=True)
    response = sign_in(client, secret)
    assert response.status_code == 303 and response.headers["Location"] == PAGE
    assert secret not in client.get_cookie("session").value  # only the key's hash, in a signed cookie
    page = client.get(PAGE)
    assert page.status_code == 200 and "<strong>ops</strong>" in page.get_data(as_text=True)
    assert client.get(PANEL).status_code == 200
    # The session is no key to the API: it signs in to these pages only.
    assert client.post("/api/v1/ai/generation", json={"prompt": "hi"}).status_code == 401


def test_signing_out_ends_it(client):
    sign_in(client, keys.create("ops", admin=True))
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get(PAGE).get_data(as_text=True)).group(1)
    assert client.post(SIGN_OUT, data={"csrf_token": token}).status_code == 303
    assert client.get(PAGE).status_code == 401


def test_a_wrong_key_is_refused_and_signs_nobody_in(client):
    keys.create("ops", admin=True)
    response = sign_in(client, "lg_not-a-key")
    assert response.status_code == 401 and "not a current operator" in response.get_data(as_text=True)
    assert client.get(PAGE).status_code == 401


def test_a_sign_in_without_its_csrf_token_is_refused(client):
    secret = keys.create("ops", admin=True)
    csrf_of(client)
    assert client.post(SIGN_IN, data={"key": secret}).status_code == 400
    assert client.get(PAGE).status_code == 401


def test_a_revoked_key_is_refused_on_the_next_request(client):
    sign_in(client, keys.create("ops", admin=True))
    assert client.get(PAGE).status_code == 200
    keys.revoke("ops")
    response = client.get(PAGE)
    assert response.status_code == 401 and "no longer works" in response.get_data(as_text=True)


def test_a_poll_after_the_key_is_revoked_reloads_the_page_which_says_why(client):
    sign_in(client, keys.create("ops", admin=True))
    keys.create("other", admin=True)  # an operator key still exists: the reload shows the sign-in form
    keys.revoke("ops")
    poll = client.get(PANEL, headers={"HX-Request": "true"})
    assert poll.status_code == 401 and poll.headers["HX-Refresh"] == "true" and poll.data == b""
    assert "no longer works" in client.get(PAGE).get_data(as_text=True)


def test_a_sign_in_is_over_after_twelve_hours(client, monkeypatch):
    monkeypatch.setattr(admin_access, "SIGNED_IN_SECONDS", -1)  # a sign-in that is over at once
    sign_in(client, keys.create("ops", admin=True))
    response = client.get(PAGE)
    assert response.status_code == 401 and "more than 12 hours old" in response.get_data(as_text=True)


def test_sign_in_attempts_are_rate_limited_per_address(client, monkeypatch):
    minute = utcnow().replace(second=30)
    monkeypatch.setattr(ratelimits, "utcnow", lambda: minute)  # all in one minute's window
    keys.create("ops", admin=True)
    token = csrf_of(client)
    answers = [client.post(SIGN_IN, data={"key": "lg_guess", "csrf_token": token}).status_code
               for _ in range(admin.SIGN_INS_PER_MINUTE + 1)]
    assert answers == [401] * admin.SIGN_INS_PER_MINUTE + [429]
    assert client.post(SIGN_IN, data={"key": "lg_guess", "csrf_token": token}).headers["Retry-After"]


# --- what it shows -------------------------------------------------------------------------------
@both_backends
def test_the_queue_is_counted_and_listed_in_the_order_of_turns(client):
    secret = keys.create("ops", admin=True)
    now = utcnow()
    add_job(owner="key:a", status="processing", worker_id="w1", started_at=now, lease_until=now + timedelta(seconds=20))
    a1, a2 = (add_job(owner="key:a", created_at=now - timedelta(seconds=60)) for _ in range(2))
    b1, b2 = (add_job(owner="browser:b" + "0" * 40, created_at=now - timedelta(seconds=30)) for _ in range(2))
    add_job(owner="key:c", run_after=now + timedelta(minutes=5))  # backing off: not in line yet
    text = page_text(client, secret)
    assert re.search(r'class="queued-count">5<', text)
    # b has nothing running, a has one: b's first goes first; then a's first (older) and b's second tie.
    assert re.findall(r'/jobs/([^"]+)"', section(text, "next-in-line")) == [b1.job_id, a1.job_id, b2.job_id, a2.job_id]
    # The same places the cards show (turns.places).
    assert queue.queue_positions([a1, a2, b1, b2]) == {b1.id: 1, a1.id: 2, b2.id: 3, a2.id: 4}
    assert "browser b0000000" in text


@both_backends
def test_next_in_line_is_the_order_in_which_the_claim_takes_them(app):
    now, rnd = utcnow(), random.Random(3)
    for owner, running in (("key:a", 2), ("key:c", 1)):
        for _ in range(running):
            add_job(owner=owner, status="processing", worker_id="w0", started_at=now,
                    lease_until=now + timedelta(minutes=5))
    owners_ = ["key:a", "key:b", "key:c"] + [f"browser:{n}" for n in range(12)]
    for _ in range(40):
        add_job(owner=rnd.choice(owners_), created_at=now)
    add_job(owner="key:b", run_after=now + timedelta(minutes=5))  # waiting out a back-off
    add_job(owner="browser:1", cancel_requested=True)
    line = overview.next_in_line(overview.queue_heads(), limit=25)
    assert len(line) == 25 and [row["place"] for row in line] == list(range(1, 26))
    claimed = [queue.claim("w1", 30).job_id for _ in line]
    assert [row["job_id"] for row in line] == claimed


@both_backends
def test_running_jobs_are_grouped_by_worker_with_lease_age_and_time_left(client):
    secret = keys.create("ops", admin=True)
    owner = owners.key(keys.find(keys.create("alice")).secret_hash)  # alice's jobs
    now = utcnow()
    for worker, lease, written in (("w-east", 25, 5), ("w-east", 28, 2), ("w-west", -4, 34)):
        add_job(owner=owner, status="processing", worker_id=worker, phase="generating", current_tokens=120,
                tokens_per_second=41.5, started_at=now - timedelta(seconds=60),
                lease_until=now + timedelta(seconds=lease), last_update_at=now - timedelta(seconds=written))
    text = page_text(client, secret)
    east, west = section(text, 'worker" data-worker="w-east'), section(text, 'worker" data-worker="w-west')
    assert east.count("<tr") == 3 and west.count("<tr") == 2  # a head row and a row per job
    assert re.search(r'lease-age">(5\.\d|4\.9) s ago', east) and re.search(r'lease-left">2\d\.\d s', east)
    assert "lease-expired" in west and re.search(r"ran out (4\.\d|3\.9) s ago", west)
    assert "key alice" in east and "41.5 tok/s" in east and 'running-count">3 on 2 workers' in text


@both_backends
def test_failures_are_the_newest_twenty_with_their_messages(client):
    secret = keys.create("ops", admin=True)
    for n in range(25):
        add_job(status="failed", error_message=f"failure number {n} <script>alert(1)</script>",
                completed_at=utcnow(), attempts=3)
    failures = section(page_text(client, secret), 'admin-table failures"')
    numbers = [int(n) for n in re.findall(r"failure number (\d+)", failures)]
    assert numbers == list(range(24, 4, -1))
    assert "<script>" not in failures and "&lt;script&gt;" in failures


@both_backends
def test_model_figures_are_those_of_its_completed_runs(client):
    secret = keys.create("ops", admin=True)
    lengths = [12, 14, 18, 25, 31, 33, 37, 38, 52, 95]
    for i, tokens in enumerate(lengths):
        add_job(model="m1", status="completed", completion_tokens=tokens, done_reason="stop",
                tokens_per_second=10.0 * (i + 1), load_ms=2000 + 1000 * i if i < 2 else 20 + 10 * (i - 2),
                cold_start=i < 2,
                completed_at=utcnow() - timedelta(minutes=10 - i))
    add_job(model="m1", status="completed", completion_tokens=500, done_reason="length", tokens_per_second=55.0,
            completed_at=utcnow())  # cut by num_predict: a speed, not a length
    add_job(model="m1", status="failed", completion_tokens=9999, tokens_per_second=999.0)  # not learned from
    card = section(page_text(client, secret), 'model-card" data-model="m1', "</article>")
    assert "11 runs" in card and "1 cut by num_predict" in card
    # Speeds 10..100 and 55: median 55, 10th percentile 20, 90th 90 (linear between order statistics).
    assert re.search(r'spread-speed">.*?20\.0 tok/s.*?55\.0 tok/s.*?90\.0 tok/s.*?>11<', card, re.S)
    # Lengths of the runs that ended by themselves: median 32 (31 and 33), 10th 13.8, 90th 56.3.
    assert re.search(r'spread-length">.*?>14<.*?>32<.*?>56<.*?>10<', card, re.S)
    # Loads: cold 2000 and 3000 ms; warm 20, 30 ... 90 ms.
    assert re.search(r"cold</th>\s*<td[^>]*>2.1 s</td>\s*<td[^>]*>2.5 s</td>\s*<td[^>]*>2.9 s</td>\s*<td[^>]*>2<", card)
    assert re.search(r"warm</th>\s*<td[^>]*>27 ms</td>\s*<td[^>]*>55 ms</td>\s*<td[^>]*>83 ms</td>\s*<td[^>]*>8<", card)


@both_backends
def test_the_length_chart_is_svg_with_one_bar_per_bucket_holding_its_count(client):
    secret = keys.create("ops", admin=True)
    for tokens in [12, 14, 18, 25, 31, 33, 37, 38, 52, 95]:
        add_job(model="m1", status="completed", completion_tokens=tokens, done_reason="stop", tokens_per_second=30.0,
                completed_at=utcnow())
    chart = section(page_text(client, secret), 'class="chart histogram"')
    bars = re.findall(r'<rect class="chart-bar"[^>]*height="([\d.]+)"\s+data-count="(\d+)" data-low="(\d+)"', chart)
    assert [(int(low), int(count)) for _h, count, low in bars] == [
        (10, 3), (20, 1), (30, 4), (40, 0), (50, 1), (60, 0), (70, 0), (80, 0), (90, 1)]
    heights = [float(h) for h, _c, _l in bars]
    assert heights[2] == charts.BOTTOM - charts.TOP and heights[0] == pytest.approx(heights[2] * 3 / 4, abs=0.1)


def test_nothing_yet_says_so(client):
    text = page_text(client, keys.create("ops", admin=True))
    for words in ("Nothing is waiting", "No job is running", "No job has failed", "No model has completed"):
        assert words in text


def section(html, marker, end=None):
    """From `marker` (a class, or a class and an attribute) to the end of its table, article or
    svg (or to `end`)."""
    start = html.index(marker)
    if end is not None:
        return html[start:html.index(end, start)]
    ends = [html.find(end, start) for end in ("</table>", "</article>", "</svg>")]
    return html[start:min(end for end in ends if end != -1)]


# --- the pieces ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("span", "step"), [(0, 1), (5, 1), (83, 10), (150, 20), (5000, 500), (11, 1)])
def test_buckets_are_round(span, step):
    assert charts.nice_step(span) == step


def test_buckets_cover_every_value_once():
    values = [3, 7, 7, 120, 64, 64, 64, 1]
    found = charts.buckets(values)
    assert sum(count for _low, _high, count in found) == len(values)
    assert found[0][0] <= min(values) and found[-1][1] > max(values)


def test_a_sparkline_has_a_point_per_value_and_its_newest_last():
    line = charts.sparkline([10.0, 20.0, 15.0])
    assert line.path.count("L") == 2 and line.last == (charts.RIGHT, line.last[1])
    assert (line.low, line.high) == (10.0, 20.0)
    assert charts.sparkline([]) is None and charts.sparkline([5.0]).path.startswith("M")


def test_ranges_share_a_log_scale_with_ticks_at_powers_of_ten():
    drawn = charts.ranges([("cold", overview.Spread(2500, 2800, 3200, 7)), ("warm", overview.Spread(20, 30, 40, 50)),
                           ("none", None)])
    assert [row.label for row in drawn.rows] == ["cold", "warm"]
    assert [label for _x, label in drawn.ticks] == ["10 ms", "100 ms", "1 s", "10 s"]
    cold, warm = drawn.rows
    assert warm.x_low < warm.x_median < warm.x_high < cold.x_low < cold.x_median < cold.x_high


@pytest.mark.parametrize(("owner", "label"), [
    ("key:" + "a" * 32, "key alice"), ("key:" + "b" * 32, "key bbbbbbbb (revoked)"),
    ("browser:" + "c" * 40, "browser cccccccc"), ("token", "API_TOKEN"), ("anonymous", "open API")])
def test_owners_are_named_as_an_operator_reads_them(owner, label):
    assert admin.owner_label({"key:" + "a" * 32: "alice"}, owner) == label


@pytest.mark.parametrize(("ms", "text"), [(None, "—"), (340, "340 ms"), (12_500, "12.5 s"), (185_000, "3 min 05 s"),
                                          (7_620_000, "2 h 07 min"), (-4_200, "−4.2 s")])
def test_durations_read_short(ms, text):
    assert admin.short_ms(ms) == text


def test_a_clients_key_does_not_open_the_operators_page(client):
    """/admin shows every owner's jobs: a key made for a client (no --admin) is refused, by
    header and by the sign-in form, and alone it does not even make the sign-in form appear."""
    secret = keys.create("alice")
    alone = client.get("/admin")
    assert alone.status_code == 403 and "--admin" in alone.get_data(as_text=True)
    keys.create("ops", admin=True)
    by_header = client.get("/admin", headers={"Authorization": f"Bearer {secret}"})
    assert by_header.status_code == 401 and "client" in by_header.get_data(as_text=True)
    assert sign_in(client, secret).status_code == 401
    assert client.get("/admin").status_code == 401
