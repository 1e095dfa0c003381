"""Whose job is whose, in a real browser (Debian's Chromium through Playwright) against gunicorn
(gevent), `python worker.py` and the Ollama simulator: two browser contexts, A and B, each with its
own session cookie. A's jobs are listed for A only; B may watch one by its link but not cancel it
(404, and no visible Cancel); with PRIVATE_JOBS=1 B cannot even read it; and a form on another
origin, posted from A's browser, changes nothing (403).

Screenshots and network logs go to test-output/browser/<test name>/.
"""
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from simulator import Simulator

from browser_support import WEB_ENV, WORKER_ENV, page_wait_until, tokens, wait_for_cards
from servers import Gunicorn, WorkerProcess, free_port

pytestmark = pytest.mark.browser
pytest_plugins = ["browser_fixtures"]  # browser, nginx, artifacts, web, open_page

API = "/api/v1/ai/generation"
PROMPT_A = "A's private question: what is the airspeed of an unladen swallow?"
MINE_NOTE = "Anyone with this link can watch it; only you can cancel it."
SHARED_NOTE = "Someone shared this job with you: you can watch it, not change it."
PRIVATE_NOTE = "Only you can watch this job."


def submit_form(page, prompt, num_predict):
    page.fill("#prompt", prompt)
    page.fill("input[name=num_predict]", str(num_predict))
    page.click("form.compose-form button[type=submit]")


def jobs_in(database_url):
    """Every job row: (job_id, owner, status, cancel_requested, current_tokens, prompt)."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(
                "SELECT job_id, owner, status, cancel_requested, current_tokens, prompt "
                "FROM ai_generation_jobs ORDER BY id"))]
    finally:
        engine.dispose()


def csrf_token(page):
    """This page's CSRF token, as its htmx sends it (the hx-headers on <body>)."""
    return page.evaluate("() => JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token']")


def fetch_post(page, url, csrf):
    """POST from the page's own script (same origin, its cookies), as htmx would: the status."""
    return page.evaluate("""([url, csrf]) => fetch(url, {method: "POST",
        headers: {"X-CSRF-Token": csrf, "HX-Request": "true"}}).then((r) => r.status)""", [url, csrf])


def cancel_button(page, job_id):
    return page.locator(f"#card-{job_id} form.cancel button")


# --- 1 and 2: listed for the owner only; watchable by link, not cancellable ----------------------
def test_a_job_is_listed_for_its_owner_only_and_others_can_watch_it_by_link_but_not_cancel_it(
        web, open_page, artifacts, database_url):
    page_a, net_a = open_page()
    page_b, net_b = open_page()
    with Simulator(tokens_per_second=20.0, jitter=0.1) as sim:
        page_a.goto(web.url + "/")
        submit_form(page_a, PROMPT_A, 100)  # 5 s of generation once the worker runs
        # No worker yet: the job waits in the queue while B looks (a queued job can be cancelled too).
        [card] = wait_for_cards(page_a, lambda cards: cards[0]["status"] == "queued", timeout=10)
        job_id = card["job"]
        job_url = f"{web.url}/jobs/{job_id}"

        # 1. B's own list holds none of A's jobs.
        page_b.goto(web.url + "/")
        expect(page_b.locator(".empty")).to_be_visible()
        expect(page_b.locator(".card[data-job]")).to_have_count(0)
        assert PROMPT_A not in page_b.content()
        assert job_id not in page_b.content()
        form_token_b = page_b.locator("form.compose-form input[name=csrf_token]").input_value()
        artifacts.screenshot(page_b, "b-index-empty")
        page_a.reload()
        expect(page_a.locator(".card[data-job]")).to_have_count(1)
        expect(page_a.locator(f"#card-{job_id} .card-title")).to_have_text(PROMPT_A)

        # 2. A's page of its own job: the Cancel button, and the note that the link can be shared.
        page_a.goto(job_url)
        expect(page_a.locator(".share-note")).to_have_text(MINE_NOTE)
        expect(page_a.locator("body")).not_to_have_class(re.compile(r"\bnot-mine\b"))
        expect(page_a.get_by_role("button", name="Cancel")).to_have_count(1)
        expect(cancel_button(page_a, job_id)).to_be_visible()

        # B by the link: the card is there, the note says whose it is, no Cancel is shown.
        response = page_b.goto(job_url)
        assert response.status == 200
        expect(page_b.locator(f"#card-{job_id}")).to_be_visible()
        expect(page_b.locator(f"#card-{job_id} .card-title")).to_have_text(PROMPT_A)
        expect(page_b.locator(".share-note")).to_have_text(SHARED_NOTE)
        expect(page_b.locator("body")).to_have_class(re.compile(r"\bnot-mine\b"))
        expect(page_b.get_by_role("button", name="Cancel")).to_have_count(0)
        expect(cancel_button(page_b, job_id)).to_be_hidden()

        # B cancels anyway, with B's own (valid) CSRF token: the job is not B's, so 404.
        token_b = csrf_token(page_b)
        assert token_b == form_token_b, "the same session's token, in the form and in hx-headers"
        assert token_b != csrf_token(page_a), "two contexts, two sessions"
        posted = page_b.request.post(f"{job_url}/cancel", form={"csrf_token": token_b}, max_redirects=0)
        assert posted.status == 404, (posted.status, posted.text()[:300])
        assert fetch_post(page_b, f"{job_url}/cancel", token_b) == 404
        posted = page_b.request.post(f"{web.url}{API}/{job_id}/cancel")  # the API: not the anonymous caller's
        assert posted.status == 404, (posted.status, posted.text()[:300])
        [(_, _, status, cancel_requested, _, _)] = jobs_in(database_url)
        assert (status, bool(cancel_requested)) == ("queued", False)

        with WorkerProcess(database_url, sim.url, **WORKER_ENV):
            # B watches it live: the card generates in B's page too.
            wait_for_cards(page_b, lambda cards: cards[0]["phase"] == "generating" and (tokens(cards[0]) or 0) >= 5,
                           timeout=20, what="B's view of A's job")
            wait_for_cards(page_a, lambda cards: cards[0]["phase"] == "generating" and (tokens(cards[0]) or 0) >= 5,
                           timeout=20, what="A's own job page")
            # The cards the stream swapped in: still Cancel for A, still none for B.
            expect(cancel_button(page_a, job_id)).to_be_visible()
            expect(page_b.get_by_role("button", name="Cancel")).to_have_count(0)
            artifacts.screenshot(page_a, "a-own-job-generating")
            artifacts.screenshot(page_b, "b-shared-job-generating")
            b_running = page_b.locator(f"#card-{job_id}").get_attribute("data-status")
            b_status = fetch_post(page_b, f"{job_url}/cancel", token_b)  # while it runs, too
            expect(page_b.locator(f"#card-{job_id}")).to_have_attribute("data-status", "completed", timeout=30_000)
            expect(page_a.locator(f"#card-{job_id}")).to_have_attribute("data-status", "completed", timeout=30_000)
            artifacts.screenshot(page_b, "b-shared-job-completed")
            artifacts.screenshot(page_a, "a-own-job-completed")
        [record] = sim.requests

    assert b_status == 404, f"B's cancel while the job was {b_running}: {b_status}"
    assert record.final is not None and not record.client_closed, "the generation ran to its end"
    [(row_id, _, status, cancel_requested, done, _)] = jobs_in(database_url)
    assert (row_id, status, bool(cancel_requested), done) == (job_id, "completed", False, 100)
    for page in (page_a, page_b):
        assert page.locator(f"#card-{job_id} .stats dd").first.text_content() == "100"
        assert page.text_content("#result-text") == record.text
    b_posts = [(e["url"], e["status"]) for e in net_b.entries if e["method"] == "POST"]
    assert b_posts == [(f"{job_url}/cancel", 404), (f"{job_url}/cancel", 404)], b_posts
    assert not net_a.page_errors and not net_b.page_errors, (net_a.page_errors, net_b.page_errors)


# --- 3. PRIVATE_JOBS: reads are the owner's only --------------------------------------------------
def test_with_private_jobs_only_the_owner_can_read_a_job(browser, open_page, artifacts, database_url):
    page_a, net_a = open_page()
    page_b, net_b = open_page()
    # SSE_MAX_DURATION: A's streams of the queued job (no worker) end after 2 s, so a whole
    # response can be read.
    with Gunicorn(database_url, PRIVATE_JOBS="1", SSE_MAX_DURATION="2", **WEB_ENV) as web:
        page_a.goto(web.url + "/")
        submit_form(page_a, PROMPT_A, 20)
        [card] = wait_for_cards(page_a, lambda cards: cards[0]["status"] == "queued", timeout=10)
        job_id = card["job"]
        page_b.goto(web.url + "/")
        expect(page_b.locator(".card[data-job]")).to_have_count(0)

        reads = {
            "status": f"{API}/{job_id}/status",
            "status with output": f"{API}/{job_id}/status?include=output",
            "progress": f"{API}/{job_id}/progress",
            "card": f"/jobs/{job_id}/card",
            "page": f"/jobs/{job_id}",
            "result": f"/jobs/{job_id}/result",
            "output": f"/jobs/{job_id}/output",
            "cards' stream": f"/jobs/stream?jobs={job_id}",
        }
        answers = {}
        for name, path in reads.items():
            b = page_b.request.get(web.url + path)
            a = page_a.request.get(web.url + path)
            answers[name] = (a.status, b.status)
            if name == "progress":
                assert "event: progress" in a.text() and '"status":"queued"' in a.text(), a.text()[:500]
            assert PROMPT_A not in b.text(), (name, b.text()[:500])
        assert answers == dict.fromkeys(reads, (200, 404)), answers

        # B's 404 says no more than one for an id that names no job at all.
        fake = secrets.token_urlsafe(24)
        for path in (f"{API}/{{}}/status", "/jobs/{}"):
            theirs = page_b.request.get(web.url + path.format(job_id))
            none = page_b.request.get(web.url + path.format(fake))
            assert theirs.status == none.status == 404
            assert theirs.text().replace(job_id, "ID") == none.text().replace(fake, "ID"), path

        # The same in the browser: B's page load is a 404; A's page says it is A's alone.
        response = page_b.goto(f"{web.url}/jobs/{job_id}")
        assert response.status == 404
        assert PROMPT_A not in page_b.content()
        artifacts.screenshot(page_b, "b-private-job-404")
        response = page_a.goto(f"{web.url}/jobs/{job_id}")
        assert response.status == 200
        expect(page_a.locator(".share-note")).to_have_text(PRIVATE_NOTE)
        expect(cancel_button(page_a, job_id)).to_be_visible()
        artifacts.screenshot(page_a, "a-private-job")
    assert not net_a.page_errors, net_a.page_errors


# --- 4. another origin's forms, posted from A's browser --------------------------------------------
ATTACK_PAGE = """<!doctype html>
<meta charset="utf-8"><title>Another site</title>
<p>Nothing to see here.</p>
<iframe name="cancel-page" width="300" height="120"></iframe>
<iframe name="create-page" width="300" height="120"></iframe>
<iframe name="cancel-api" width="300" height="120"></iframe>
<form method="post" action="{web}/jobs/{job}/cancel" target="cancel-page">
  <input type="hidden" name="csrf_token" value="guessed"></form>
<form method="post" action="{web}/jobs" target="create-page">
  <input type="hidden" name="prompt" value="Planted by another site">
  <input type="hidden" name="num_predict" value="5"></form>
<form method="post" action="{web}{api}/{job}/cancel" target="cancel-api"></form>
<script>for (const form of document.forms) form.submit();</script>
"""


class AttackSite:
    """A tiny HTTP server on another port (another origin) serving one page."""

    def __init__(self, html):
        body = html.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


# 127.0.0.1 on another port: another origin but the same site, so A's SameSite=Lax session
# cookie goes along and only the origin check stands in the way. localhost: another site.
@pytest.mark.parametrize("attacker_host, fetch_site, with_cookie",
                         [("127.0.0.1", "same-site", True), ("localhost", "cross-site", False)],
                         ids=["same-site-other-port", "cross-site"])
def test_forms_posted_from_another_origin_change_nothing(web, open_page, artifacts, database_url,
                                                         attacker_host, fetch_site, with_cookie):
    page_a, net_a = open_page()
    posts = []  # the POSTs' responses (a 403 page in a frame is then blocked by frame-ancestors)
    page_a.on("response", lambda response: posts.append(response) if response.request.method == "POST" else None)
    with Simulator(tokens_per_second=20.0, jitter=0.1) as sim, \
            WorkerProcess(database_url, sim.url, **WORKER_ENV):
        page_a.goto(web.url + "/")
        submit_form(page_a, PROMPT_A, 120)  # about 6 s of generation
        [card] = wait_for_cards(page_a, lambda cards: cards[0]["phase"] == "generating" and tokens(cards[0]),
                                timeout=20)
        job_id = card["job"]
        posts.clear()  # A's own form post
        [before] = jobs_in(database_url)

        with AttackSite(ATTACK_PAGE.format(web=web.url, job=job_id, api=API)) as site:
            page_a.goto(f"http://{attacker_host}:{site.port}/")
            page_wait_until(page_a, lambda: len(posts) == 3, 15, "the answers to the other site's three form posts")
            artifacts.screenshot(page_a, "other-site-after-posting")
        answers = sorted((p.url, p.status) for p in posts)
        headers = {p.url: p.request.all_headers() for p in posts}
        [during] = jobs_in(database_url)

        page_a.goto(f"{web.url}/jobs/{job_id}")
        expect(page_a.locator(f"#card-{job_id}")).to_have_attribute("data-status", "completed", timeout=30_000)
        artifacts.screenshot(page_a, "a-job-completed")
        page_a.goto(web.url + "/")
        expect(page_a.locator(".card[data-job]")).to_have_count(1)
        [record] = sim.requests

    assert answers == sorted([(f"{web.url}/jobs/{job_id}/cancel", 403), (f"{web.url}/jobs", 403),
                              (f"{web.url}{API}/{job_id}/cancel", 403)]), answers
    for url, sent in headers.items():
        assert sent.get("sec-fetch-site") == fetch_site, (url, sent)
        assert sent.get("origin") == f"http://{attacker_host}:{site.port}", (url, sent)
        assert ("session=" in sent.get("cookie", "")) == with_cookie, (url, sent.get("cookie"))
    # Unchanged while it ran, then it ran to its end; no job was planted.
    assert before[2] == "processing" and not before[3], before
    assert during[:2] == before[:2] and during[2] in ("processing", "completed") and not during[3], during
    [after] = jobs_in(database_url)
    assert (after[0], after[2], bool(after[3]), after[4], after[5]) == (job_id, "completed", False, 120, PROMPT_A)
    assert record.final is not None and not record.client_closed
    assert not net_a.page_errors, net_a.page_errors
