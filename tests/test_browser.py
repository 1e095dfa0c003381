"""The pages in a real browser (Debian's Chromium through Playwright) against real processes:
gunicorn with the gevent worker, `python worker.py`, the Ollama simulator, and for one test a
buffering nginx in front. Screenshots and a network log of every test go to
test-output/browser/<test name>/.

Needs Chromium and nginx; without them these tests skip, or fail under REQUIRE_BROWSER=1 (CI).
"""
import time
from datetime import datetime

import pytest
import requests
import sqlalchemy as sa

from simulator import Simulator

from browser_support import (
    ENDED,
    WEB_ENV,
    WORKER_ENV,
    Nginx,
    browser_cancel,
    browser_job,
    card_regressions,
    read_card,
    render_history,
    tokens,
    wait_for_cards,
)
from helpers import wait_until
from servers import Gunicorn, WorkerProcess

pytestmark = pytest.mark.browser
pytest_plugins = ["browser_fixtures"]  # browser, nginx, artifacts, web, open_page

API = "/api/v1/ai/generation"
XSS_PROMPT = "<script>alert(1)</script> and <img src=x onerror=alert(2)>"
XSS_RESULT = ("Here: <script>alert(3)</script>\n<img src=x onerror=alert(4)>\n"
              "</pre><svg onload=alert(5)> & &amp; \"quoted\" 'single'")


def create_job(web, prompt="Explain server-sent events", num_predict=60):
    response = requests.post(web.url + API, json={"prompt": prompt, "options": {"num_predict": num_predict}},
                             timeout=10)
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def submit_form(page, prompt, num_predict):
    page.fill("#prompt", prompt)
    page.fill("input[name=num_predict]", str(num_predict))
    page.click("form.compose-form button[type=submit]")


def db_row(database_url, job_id):
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT * FROM ai_generation_jobs WHERE job_id = :id"),
                                {"id": job_id}).mappings().one()
    finally:
        engine.dispose()


def all_ended(status="completed"):
    return lambda cards: all(card["status"] == status for card in cards)


def assert_completed_card(card, num_predict):
    assert card["status"] == "completed" and card["headline"] == "Completed", card
    assert not card["polls"], "the final card must carry no polling trigger"
    assert tokens(card) == num_predict, card
    assert card["badge"].startswith("✓ Done") and f"{num_predict} output" in card["badge"], card


def ended_ms(web, job_id):
    """When the job ended, in ms since the epoch (the server's clock; the same machine's)."""
    job = requests.get(f"{web.url}{API}/{job_id}/status", timeout=10).json()["job"]
    return datetime.fromisoformat(job["completed_at"].replace("Z", "+00:00")).timestamp() * 1000


def wait_for_tokens(web, job_id, timeout=15):
    """Until the job is generating (it has tokens), through the JSON API."""
    seen = []

    def generating():
        seen[:] = [requests.get(f"{web.url}{API}/{job_id}/status", timeout=10).json()["job"]]
        return seen[0]["status"] == "processing" and seen[0]["current_tokens"] and seen[0]

    return wait_until(generating, timeout, "the job to start generating", interval=0.05,
                      detail=lambda: seen[0] if seen else None)


def probe(page):
    return page.evaluate("window.__probe")


def assert_never_went_back(page):
    """DESIGN.md: progress never goes backwards; no card shows an older version than it did."""
    history = probe(page)["cards"]
    back = card_regressions(history)
    assert not back, f"a card went back to an older state: {back[0]}\n{render_history(history)}"


# --- 1. the happy path -----------------------------------------------------------------------------
def test_form_card_goes_queued_generating_completed_with_live_numbers(web, open_page, artifacts,
                                                                       database_url):
    page, net = open_page()
    with Simulator(tokens_per_second=20.0, jitter=0.1) as sim:
        page.goto(web.url + "/")
        assert page.locator(".empty").is_visible()  # no jobs yet
        submit_form(page, "Why is the sky blue?", 60)

        # The worker is not running yet, so the card must sit in the queue.
        [card] = wait_for_cards(page, lambda cards: cards[0]["status"] == "queued", timeout=10)
        assert card["headline"].startswith("Queued"), card
        assert card["title"] == "Why is the sky blue?" and card["polls"]
        artifacts.screenshot(page, "queued")
        assert page.input_value("#prompt") == "", "the form is reset after submitting"

        with WorkerProcess(database_url, sim.url, **WORKER_ENV):
            seen, shot = [], False
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                card = read_card(page)
                if card["status"] == "processing":
                    seen.append(tokens(card))
                    if not shot and card["phase"] == "generating" and tokens(card) > 0:
                        headline = card["headline"]
                        assert headline.startswith("AI is Generating...") and "tok/s" in headline, card
                        artifacts.screenshot(page, "generating")
                        shot = True
                elif card["status"] in ENDED:
                    break
                page.wait_for_timeout(50)
            assert card["status"] == "completed", card
            artifacts.screenshot(page, "completed")

        assert shot, f"no 'generating' card with tokens was ever shown; tokens seen: {seen}"
        assert seen == sorted(seen), f"the tokens figure went backwards: {seen}"
        live = sorted({t for t in seen if t})
        assert len(live) >= 2, f"the tokens figure did not increase live while processing: {seen}"
        assert_completed_card(card, 60)
        assert_never_went_back(page)

        [record] = sim.requests
        assert record.text and record.final is not None

        page.click(f"#card-{card['job']} .card-title")
        page.wait_for_url(f"**/jobs/{card['job']}")
        assert page.text_content("#result-text") == record.text
        assert_completed_card(read_card(page), 60)
        artifacts.screenshot(page, "job-page-completed")
    assert not net.dialogs and not net.page_errors, (net.dialogs, net.page_errors)


# --- 2. SSE pauses polling -------------------------------------------------------------------------
def test_polling_stops_once_sse_messages_arrive(web, open_page, artifacts, database_url):
    page, net = open_page()
    with Simulator(tokens_per_second=20.0, jitter=0.1) as sim:
        job_id = create_job(web, num_predict=60)
        page.goto(f"{web.url}/jobs/{job_id}")
        page.wait_for_function("() => window.__probe.sse.length > 0", timeout=10_000)
        first_sse = probe(page)["sse"][0]["t"]
        # Queued and no worker: the card does not change, only pings (every 2.5 s) come. Polling
        # must stay paused through this quiet stretch, not only while cards keep being swapped.
        page.wait_for_timeout(5_000)
        assert read_card(page)["status"] == "queued"
        artifacts.screenshot(page, "queued-sse-only")
        with WorkerProcess(database_url, sim.url, **WORKER_ENV):
            [card] = wait_for_cards(page, all_ended(), timeout=30)
            streams = net.streams()  # (the closed stream is reconnected 3 s later: see below)
        artifacts.screenshot(page, "completed")
    assert_completed_card(card, 60)
    assert_never_went_back(page)

    log = probe(page)
    assert len(log["sse"]) >= 4, f"SSE should have carried the updates: {log['sse']}"
    assert len(streams) == 1, [e["url"] for e in streams]
    late = [e for e in net.card_polls() if e["sent"] > first_sse]
    assert len(late) <= 1, (
        f"{len(late)} card polls went out after the first SSE message (at most one in flight "
        f"allowed): {[(round((e['sent'] - first_sse) / 1000, 2), e['status']) for e in late]}")


# --- 3. fallbacks: polling carries the page when SSE cannot -------------------------------------
def complete_by_polling(page, net, web, database_url, artifacts):
    """Run one job to its end on the job page; it must get there by polling alone."""
    with Simulator(tokens_per_second=20.0, jitter=0.1) as sim, \
            WorkerProcess(database_url, sim.url, **WORKER_ENV):
        job_id = create_job(web, num_predict=60)
        page.goto(f"{web.url}/jobs/{job_id}")
        wait_for_cards(page, lambda cards: cards[0]["status"] == "processing", timeout=15)
        artifacts.screenshot(page, "processing-polled")
        [card] = wait_for_cards(page, all_ended(), timeout=30)
        artifacts.screenshot(page, "completed")
    assert_completed_card(card, 60)
    assert_never_went_back(page)
    polls = [e for e in net.card_polls() if e["status"] in (200, 286)]
    assert len(polls) >= 2 and polls[-1]["status"] == 286, [e["status"] for e in net.card_polls()]
    assert page.text_content("#result-text") == sim.requests[0].text


def test_fallback_when_the_stream_request_fails(web, open_page, artifacts, database_url):
    page, net = open_page()
    page.route("**/jobs/stream*", lambda route: route.abort())
    complete_by_polling(page, net, web, database_url, artifacts)
    assert net.streams() and all(e["failure"] for e in net.streams()), "the stream was attempted and failed"


def test_fallback_without_eventsource(web, open_page, artifacts, database_url):
    page, net = open_page()
    page.add_init_script("delete window.EventSource")
    page.goto(f"{web.url}/")
    assert page.evaluate("typeof window.EventSource") == "undefined"
    complete_by_polling(page, net, web, database_url, artifacts)
    assert not net.streams(), "no EventSource, so no stream request"


# `proxy_buffering on` with a chunked HTTP/1.1 upstream passes each event on at once (see
# nginx_buffering.conf.template), so the stream is held back by an HTTP/1.0 upstream (nginx's
# default) or, over HTTP/1.1, by gzip.
@pytest.mark.parametrize("upstream_http, gzip", [("1.0", "off"), ("1.1", "on")],
                         ids=["http1.0-upstream", "http1.1-upstream-gzip"])
def test_fallback_behind_a_buffering_nginx(nginx, web, open_page, artifacts, database_url, tmp_path,
                                           upstream_http, gzip):
    page, net = open_page()
    with Nginx(tmp_path / "nginx", web.port, upstream_http=upstream_http, gzip=gzip) as proxy, \
            Simulator(tokens_per_second=20.0, jitter=0.1) as sim, \
            WorkerProcess(database_url, sim.url, **WORKER_ENV):
        job_id = create_job(web, num_predict=80)  # about 4 s of generation
        page.goto(f"{proxy.url}/jobs/{job_id}")
        wait_for_cards(page, lambda cards: cards[0]["status"] == "processing" and tokens(cards[0]),
                       timeout=15)
        artifacts.screenshot(page, "processing-polled")
        [card] = wait_for_cards(page, all_ended(), timeout=30)
        artifacts.screenshot(page, "completed")
        assert page.text_content("#result-text") == sim.requests[0].text
    assert_completed_card(card, 80)

    stream = net.streams()[0]
    deadline = time.monotonic() + 5
    while stream["done_at"] is None and time.monotonic() < deadline:  # it ends with the job
        page.wait_for_timeout(50)
    assert stream["status"] == 200, stream
    completed_at = ended_ms(web, job_id)
    early = [m for m in probe(page)["sse"] if m["t"] < completed_at]
    assert not early, f"nginx let SSE messages through while the job ran (the set-up is wrong): {early}"

    # Polling must carry the card while the stream is held back: a card poll answered within 5 s
    # of the stream request, and never 5 s without one until the job ended.
    answered = [e["headers_at"] for e in net.card_polls()
                if e["status"] in (200, 286) and e["headers_at"] and e["headers_at"] >= stream["sent"]]
    assert answered, "no card poll was answered after the stream request started"
    took = (answered[0] - stream["sent"]) / 1000
    assert took <= 5.0, f"polling took over {took:.1f} s after the SSE connection opened (> 5 s)"
    times = [stream["sent"]] + [t for t in answered if t < completed_at] + [completed_at]
    gaps = [round((b - a) / 1000, 2) for a, b in zip(times, times[1:], strict=False)]
    assert max(gaps) <= 5.0, f"card polls stopped for {max(gaps)} s while SSE was held back: {gaps}"


def test_a_burst_of_held_back_events_never_takes_the_card_back(nginx, database_url, open_page, artifacts,
                                                               tmp_path):
    """DESIGN.md: progress never goes backwards. A stream that lasts 3 s (SSE_MAX_DURATION) behind
    nginx (HTTP/1.0 upstream, buffering) reaches the page in bursts while the job still runs."""
    page, net = open_page()
    with Gunicorn(database_url, SSE_MAX_DURATION="3", **WEB_ENV) as web, \
            Nginx(tmp_path / "nginx", web.port, upstream_http="1.0") as proxy, \
            Simulator(tokens_per_second=20.0, jitter=0.1) as sim, \
            WorkerProcess(database_url, sim.url, **WORKER_ENV):
        job_id = create_job(web, num_predict=140)  # about 7 s of generation
        wait_for_tokens(web, job_id)  # so the polled card is newer than the stream's first event
        page.goto(f"{proxy.url}/jobs/{job_id}")
        deadline, shot = time.monotonic() + 30, False
        while time.monotonic() < deadline:
            card = read_card(page)
            if not shot and card_regressions(probe(page)["cards"]):
                artifacts.screenshot(page, "went-back")
                shot = True
            if card["status"] in ENDED:
                break
            page.wait_for_timeout(50)
        artifacts.screenshot(page, "completed")
    assert card["status"] == "completed", card
    history = probe(page)["cards"]
    back = card_regressions(history)
    assert not back, (f"the card went back from version {back[0]['was']['version']} "
                      f"({back[0]['was']['status']}, {back[0]['was']['tokens']} tokens) to version "
                      f"{back[0]['then']['version']} ({back[0]['then']['status']}, "
                      f"{back[0]['then']['tokens']} tokens):\n{render_history(history)}")


def test_the_page_stops_connecting_once_every_job_ended(web, open_page, artifacts):
    page, net = open_page()
    job_id = browser_job(page, web.url)  # no worker: it stays queued until cancelled
    page.goto(web.url + "/")
    page.wait_for_function("() => window.__probe.sse.length > 0", timeout=10_000)
    browser_cancel(page, web.url, job_id)
    wait_for_cards(page, all_ended("cancelled"), timeout=10)
    page.wait_for_timeout(7_500)
    artifacts.screenshot(page, "cancelled-7.5s-later")
    first, *again = net.streams()
    assert first["done_at"] is not None, "the stream closes once every job on it has ended"
    assert len(again) <= 1, (f"{len(again)} stream requests in the 7.5 s after every job had ended: "
                             f"{[round((e['sent'] - first['done_at']) / 1000, 1) for e in again]} s "
                             f"after the first stream closed")


# --- 4. one connection for many cards --------------------------------------------------------------
def test_ten_jobs_share_one_sse_connection(web, open_page, artifacts, database_url):
    page, net = open_page()
    with Simulator(tokens_per_second=20.0, jitter=0.1) as sim, \
            WorkerProcess(database_url, sim.url, WORKER_CONCURRENCY="10", **WORKER_ENV):
        job_ids = [browser_job(page, web.url, prompt=f"Job number {n}", num_predict=60) for n in range(10)]
        page.goto(web.url + "/")
        cards = wait_for_cards(page, lambda cards: len(cards) == 10, timeout=10)
        assert sorted(card["job"] for card in cards) == sorted(job_ids)
        wait_for_cards(page, lambda cards: any(c["status"] == "processing" for c in cards), timeout=15)
        artifacts.screenshot(page, "processing")
        streams_while_running = len(net.streams())
        open_while_running = [e for e in net.streams() if e["done_at"] is None]
        cards = wait_for_cards(page, all_ended(), timeout=45)
        streams_at_the_end = net.streams()
        artifacts.screenshot(page, "completed")
    for card in cards:
        assert_completed_card(card, 60)
    assert_never_went_back(page)
    assert streams_while_running == 1 and len(open_while_running) == 1, net.render()
    # The stream ends with the last job; the browser may reconnect only after that.
    assert len(streams_at_the_end) == 1, [e["url"] for e in streams_at_the_end]
    url = streams_at_the_end[0]["url"]
    assert all(job_id in url for job_id in job_ids), url
    assert len(probe(page)["sse"]) >= 10


# --- 5. no JavaScript ----------------------------------------------------------------------------
def test_without_javascript_the_form_posts_and_the_job_page_refreshes_itself(web, open_page, artifacts,
                                                                               database_url):
    page, net = open_page(probe=False, java_script_enabled=False)
    loads = []
    page.on("load", lambda: loads.append(page.url))
    with Simulator(tokens_per_second=20.0, jitter=0.1) as sim, \
            WorkerProcess(database_url, sim.url, **WORKER_ENV):
        page.goto(web.url + "/")
        submit_form(page, "No script here", 80)
        page.wait_for_url(f"{web.url}/jobs/*")
        job_id = page.url.rsplit("/", 1)[1]
        posts = [e for e in net.entries if e["method"] == "POST"]
        assert [(p["url"], p["type"], p["status"]) for p in posts] == [(web.url + "/jobs", "document", 303)]
        artifacts.screenshot(page, "job-page-first-load")
        assert page.locator('meta[http-equiv="refresh"]').count() == 1
        wait_for_cards(page, lambda cards: cards[0]["status"] == "processing" and tokens(cards[0]),
                       timeout=20, what="the refreshed job page")
        artifacts.screenshot(page, "processing")
        [card] = wait_for_cards(page, all_ended(), timeout=30, what="the refreshed job page")
        page.wait_for_load_state()
        artifacts.screenshot(page, "completed")
        refreshes = len(loads)
        page.wait_for_timeout(2_500)  # an ended job's page stops refreshing (it refreshed every 2 s)
        assert len(loads) == refreshes, "the page kept refreshing after the job ended"
        text = sim.requests[0].text
    assert card["job"] == job_id
    assert_completed_card(card, 80)
    assert refreshes >= 3, f"the job page should have refreshed itself: loads {loads}"
    assert page.locator('meta[http-equiv="refresh"]').count() == 0
    assert page.text_content("#result-text") == text
    assert not net.streams() and not net.card_polls()


# --- 6. XSS --------------------------------------------------------------------------------------
def test_prompts_and_results_are_shown_as_text_never_run(web, open_page, artifacts, database_url):
    page, net = open_page()
    with Simulator(tokens_per_second=40.0, jitter=0.1) as sim:
        page.goto(web.url + "/")
        submit_form(page, XSS_PROMPT, 20)
        [card] = wait_for_cards(page, lambda cards: cards[0]["status"] == "queued", timeout=10)
        assert card["title"] == XSS_PROMPT  # rendered by the form's htmx response
        page.reload()
        assert read_card(page)["title"] == XSS_PROMPT  # the first paint
        with WorkerProcess(database_url, sim.url, **WORKER_ENV):
            [card] = wait_for_cards(page, all_ended(), timeout=30)  # SSE-rendered cards
        assert card["title"] == XSS_PROMPT
        job_id = card["job"]
        artifacts.screenshot(page, "index-payload-prompt")

    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        changed = conn.execute(sa.text("UPDATE ai_generation_jobs SET result = :r WHERE job_id = :id"),
                               {"r": XSS_RESULT, "id": job_id}).rowcount
    engine.dispose()
    assert changed == 1
    page.goto(f"{web.url}/jobs/{job_id}")
    artifacts.screenshot(page, "job-page-payload-result")
    assert page.text_content("#result-text") == XSS_RESULT
    assert read_card(page)["title"] == XSS_PROMPT
    assert page.text_content("details.prompt pre") == XSS_PROMPT
    assert page.title().startswith("<script>alert(1)</script>")
    page.wait_for_timeout(500)  # give any injected handler the chance to fire
    injected = page.evaluate("""() => ({
        scripts: Array.from(document.scripts).filter((s) => !s.src).length,
        imgs: document.querySelectorAll('img[src="x"]').length,
        svgs: document.querySelectorAll('svg[onload]').length})""")
    assert injected == {"scripts": 0, "imgs": 0, "svgs": 0}, injected
    assert net.dialogs == [], net.dialogs


# --- 7. cancel -----------------------------------------------------------------------------------
def test_cancel_from_the_card_stops_the_generation(web, open_page, artifacts, database_url):
    page, net = open_page()
    with Simulator(tokens_per_second=10.0, jitter=0.1) as sim, \
            WorkerProcess(database_url, sim.url, **WORKER_ENV):
        job_id = browser_job(page, web.url, num_predict=400)  # 40 s unless cancelled; this browser's own
        page.goto(f"{web.url}/jobs/{job_id}")
        wait_for_cards(page, lambda cards: cards[0]["phase"] == "generating" and tokens(cards[0]) >= 5,
                       timeout=20)
        artifacts.screenshot(page, "generating")
        page.click(f"#card-{job_id} form.cancel button")
        [card] = wait_for_cards(page, all_ended("cancelled"), timeout=15)
        artifacts.screenshot(page, "cancelled")
        [record] = sim.wait_for(lambda records: records and records[0].client_closed, timeout=10)
    assert card["headline"] == "Cancelled" and not card["polls"], card
    assert card["badge"] == "Cancelled while generating.", card
    assert db_row(database_url, job_id)["status"] == "cancelled"
    assert record.client_closed and record.final is None and record.tokens < 400
    cancels = [e for e in net.entries if e["method"] == "POST"]
    assert [(e["url"], e["status"]) for e in cancels] == [(f"{web.url}/jobs/{job_id}/cancel", 200)]
