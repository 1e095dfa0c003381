"""The embeddable card (static/embed.js) in a real browser: a host page on another origin, with a
strict Content-Security-Policy of its own, includes one script and one `<livegen-progress>`, and
sees the card go live and end, with one `livegen:complete` or `livegen:error`; also when the stream
is blocked, and not while stopped. Real gunicorn, `python worker.py` and the Ollama simulator;
screenshots and network logs under test-output/browser/<test name>/.
"""
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from simulator import Simulator

from browser_support import WEB_ENV, WORKER_ENV, page_wait_until, tokens
from servers import WorkerProcess, free_port

pytestmark = pytest.mark.browser
pytest_plugins = ["browser_fixtures"]  # browser, artifacts, web, open_page

API = "/api/v1/ai/generation"
# The host's own listener, a file of its own: the host's CSP allows no inline script either.
HOST_JS = """
window.hostEvents = [];
["livegen:complete", "livegen:error"].forEach(function (name) {
  document.addEventListener(name, function (e) {
    window.hostEvents.push({type: e.type, job: e.target.getAttribute("job"), detail: e.detail});
  });
});
"""
HOST_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>A host page</title>
<script src="/host.js"></script>
<script src="{livegen}/static/embed.js" defer></script>
</head><body>
<h1>Someone else's page</h1>
<p>Our report is being written. Its progress:</p>
{elements}
<p>Text after the card.</p>
</body></html>"""
# What the card in an element shows, read from its shadow root in one go.
READ_EMBED = """(el) => {
  const card = el.shadowRoot && el.shadowRoot.querySelector(".card[data-job]");
  if (!card) return null;
  const dd = card.querySelector(".stats dd"), badge = card.querySelector(".badge");
  return {job: card.dataset.job, status: card.dataset.status, phase: card.dataset.phase,
          version: Number(card.dataset.version), tokens: dd ? dd.textContent.trim() : null,
          headline: card.querySelector(".headline").textContent.trim(),
          badge: badge ? badge.textContent.replace(/\\s+/g, " ").trim() : null,
          title: card.querySelector(".card-title").href, cancel: !!card.querySelector("form"),
          fill: getComputedStyle(card.querySelector(".fill")).transform,
          background: getComputedStyle(card).backgroundColor};
}"""
# Every card the element shows, in order: whether it ever steps back.
RECORD_EMBED = """(el) => {
  const seen = window.embedHistory = [];
  const record = () => {
    const card = el.shadowRoot.querySelector(".card[data-job]");
    if (card) seen.push({status: card.dataset.status, version: Number(card.dataset.version)});
  };
  new MutationObserver(record).observe(el.shadowRoot, {childList: true});
  record();
}"""


class Host:
    """Another origin's web server (localhost, not 127.0.0.1, on a port of its own) serving the
    page under test and its script, with a strict CSP: no inline script or style, and only our
    server to connect to."""

    def __init__(self):
        self.port = free_port()
        self.origin = f"http://localhost:{self.port}"
        self.page = ""
        self.livegen = None
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def csp(self):
        return (f"default-src 'none'; script-src 'self' {self.livegen}; connect-src {self.livegen}; "
                "style-src 'self'; img-src 'self'; base-uri 'none'")

    def _handler(self):
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body, kind = (HOST_JS, "text/javascript") if self.path == "/host.js" else (host.page, "text/html")
                self.send_response(200)
                self.send_header("Content-Type", f"{kind}; charset=utf-8")
                self.send_header("Content-Security-Policy", host.csp())
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args):
                pass

        return Handler

    def show(self, livegen, jobs, src=True):
        """The page, with one element per job; each names our server as its `src`, or with
        `src=False` the last one leaves it to default to where embed.js came from."""
        self.livegen = livegen
        elements = "\n".join(f'<livegen-progress job="{job}"{attr}></livegen-progress>' for job, attr in zip(
            jobs, [f' src="{livegen}"'] * (len(jobs) - 1) + [f' src="{livegen}"' if src else ""], strict=True))
        self.page = HOST_PAGE.format(livegen=livegen, elements=elements)
        return self.origin + "/"


@pytest.fixture
def host():
    server = Host()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def web_env(host):
    """Our server allows the host's origin, and only it, to embed the card."""
    return {**WEB_ENV, "CORS_ORIGINS": host.origin}


def create_job(web, num_predict=60):
    response = requests.post(web.url + API, json={"prompt": "Write the quarterly report",
                                                  "options": {"num_predict": num_predict}}, timeout=10)
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def element(page, job_id):
    return page.locator(f'livegen-progress[job="{job_id}"]').element_handle()


def embed_card(page, job_id):
    return element(page, job_id).evaluate(READ_EMBED)


def wait_for_embed(page, job_id, predicate, timeout, what):
    """The element's card once predicate(card) holds."""
    return page_wait_until(page, lambda: (lambda card: card if card and predicate(card) else None)(
        embed_card(page, job_id)), timeout, what)


def host_events(page):
    return page.evaluate("window.hostEvents")


def open_host(page, host, web, jobs, src=True):
    page.goto(host.show(web.url, jobs, src))
    page.wait_for_function("() => window.customElements.get('livegen-progress')")
    element(page, jobs[0]).evaluate(RECORD_EMBED)


def told(page, job_id):
    """The host heard of the job's end and the element is at rest: nothing can follow that."""
    return bool(host_events(page)) and not element(page, job_id).evaluate("el => el.running")


def wait_until_told(page, job_id, timeout=30, seen=None):
    """Until told(); each card shown meanwhile is added to `seen`."""
    def check():
        if seen is not None:
            seen.append(embed_card(page, job_id))
        return told(page, job_id)

    page_wait_until(page, check, timeout, "the end event, and the element at rest")


def from_livegen(net, web):
    return [e for e in net.entries if e["url"].startswith(web.url + "/")]


def assert_clean(net):
    """No script error, no CSP violation (the host's policy is strict), no refused CORS request."""
    assert not net.page_errors, net.page_errors
    problems = [line for line in net.console if line.startswith("error")]
    assert not problems, problems


def assert_completed(page, job_id, num_predict):
    card = embed_card(page, job_id)
    assert card["status"] == "completed" and card["headline"] == "Completed", card
    assert card["tokens"] == str(num_predict) and card["badge"].startswith("✓ Done"), card
    history = page.evaluate("window.embedHistory")
    versions = [entry["version"] for entry in history]
    assert versions == sorted(versions), f"the card went back to an older version: {history}"
    [event] = host_events(page)
    assert event["type"] == "livegen:complete" and event["job"] == job_id, event
    job = event["detail"]
    assert job["job_id"] == job_id and job["status"] == "completed", job
    assert job["completion_tokens"] == num_predict and job["progress"] == 100, job


# --- 1. live over SSE, then one livegen:complete ---------------------------------------------------
def test_a_page_on_another_origin_embeds_the_live_card_and_hears_complete_once(web, host, open_page, artifacts,
                                                                               database_url):
    page, net = open_page(probe=False)
    with Simulator(tokens_per_second=20.0, jitter=0.1) as sim, \
            WorkerProcess(database_url, sim.url, **WORKER_ENV):
        job_id = create_job(web, num_predict=60)
        open_host(page, host, web, [job_id])
        seen = []
        card = wait_for_embed(page, job_id, lambda card: seen.append(card) or (
            card["phase"] == "generating" and tokens(card) >= 10), timeout=20, what="a generating card")
        artifacts.screenshot(page, "generating")
        assert card["headline"].startswith("AI is Generating...") and "tok/s" in card["headline"], card
        assert card["fill"] not in ("none", "matrix(0, 0, 0, 1, 0, 0)"), "the bar's fill (an inline style) shows"
        assert card["background"] == "rgb(255, 255, 255)", "our stylesheet's colours apply in the shadow root"
        assert card["title"] == f"{web.url}/jobs/{job_id}" and not card["cancel"], card
        wait_until_told(page, job_id, seen=seen)
        artifacts.screenshot(page, "completed")
    assert_completed(page, job_id, 60)
    live = [tokens(card) for card in seen if card and card["status"] == "processing"]
    assert live == sorted(live) and len(set(live) - {0}) >= 3, f"the tokens did not move up live: {live}"
    [stream] = net.streams()
    assert stream["status"] == 200 and stream["done_at"], "the stream carried the card, and ended with the job"
    polls = net.card_polls()
    assert len(polls) <= 2, f"SSE carried the card, yet it was polled {len(polls)} times: {net.render()}"
    statuses = [e for e in from_livegen(net, web) if e["url"].endswith("/status")]
    assert len(statuses) == 1, "the status is read once, for the event"
    assert_clean(net)


# --- 2. the stream blocked: polling carries it ---------------------------------------------------
def test_with_the_stream_blocked_the_card_completes_by_polling(web, host, open_page, artifacts, database_url):
    page, net = open_page(probe=False)
    page.route("**/jobs/stream*", lambda route: route.abort())
    with Simulator(tokens_per_second=20.0, jitter=0.1) as sim, \
            WorkerProcess(database_url, sim.url, **WORKER_ENV):
        job_id = create_job(web, num_predict=60)
        open_host(page, host, web, [job_id])
        wait_for_embed(page, job_id, lambda card: card["status"] == "processing" and tokens(card),
                       timeout=20, what="a processing card, polled")
        artifacts.screenshot(page, "processing-polled")
        wait_until_told(page, job_id)
        artifacts.screenshot(page, "completed")
    assert_completed(page, job_id, 60)
    assert net.streams() and all(e["failure"] for e in net.streams()), "the stream was tried, and failed"
    polls = [e["status"] for e in net.card_polls()]
    assert len(polls) >= 3 and polls[-1] == 286, polls
    assert not net.page_errors, net.page_errors


# --- 3. stop() and start() -------------------------------------------------------------------------
def test_stop_ends_every_request_and_start_takes_up_the_job_again(web, host, open_page, artifacts, database_url):
    page, net = open_page(probe=False)
    job_id = create_job(web, num_predict=40)  # no worker yet: it waits in the queue
    open_host(page, host, web, [job_id])
    wait_for_embed(page, job_id, lambda card: card["status"] == "queued", timeout=10, what="a queued card")
    page_wait_until(page, lambda: [e for e in net.streams() if e["status"] == 200], 10, "the stream")
    element(page, job_id).evaluate("el => el.stop()")
    stopped_at = time.time() * 1000
    page_wait_until(page, lambda: all(e["done_at"] for e in from_livegen(net, web)), 10,
                    "the stream closed, and no request open")
    assert element(page, job_id).evaluate("el => el.running") is False
    with Simulator(tokens_per_second=40.0, jitter=0.1) as sim, \
            WorkerProcess(database_url, sim.url, **WORKER_ENV):
        page_wait_until(page, lambda: requests.get(f"{web.url}{API}/{job_id}/status", timeout=10)
                        .json()["job"]["status"] == "completed", 30, "the job's end on the server")
    artifacts.screenshot(page, "stopped-while-it-ran")
    late = [e["url"] for e in from_livegen(net, web) if e["sent"] > stopped_at]
    assert late == [], f"requests after stop(): {late}"
    assert embed_card(page, job_id)["status"] == "queued" and host_events(page) == []

    element(page, job_id).evaluate("el => el.start()")
    wait_until_told(page, job_id)
    artifacts.screenshot(page, "started-again")
    assert_completed(page, job_id, 40)


# --- 4. the other ends: failed or cancelled, and a job it cannot read -----------------------------
def test_a_cancelled_job_and_an_unknown_one_each_fire_one_livegen_error(web, host, open_page, artifacts):
    page, net = open_page(probe=False)
    job_id = create_job(web)
    cancel = requests.post(f"{web.url}{API}/{job_id}/cancel", timeout=10)
    assert cancel.status_code == 202, cancel.text
    open_host(page, host, web, [job_id, "no-such-job"], src=False)
    page_wait_until(page, lambda: len(host_events(page)) == 2, 15, "two end events")
    artifacts.screenshot(page, "cancelled-and-unknown")
    events = {event["job"]: event for event in host_events(page)}
    assert events[job_id]["type"] == "livegen:error" and events[job_id]["detail"]["status"] == "cancelled"
    assert events["no-such-job"]["type"] == "livegen:error", events
    assert events["no-such-job"]["detail"] == {"job_id": "no-such-job", "status": None, "error_message": (
        "This job cannot be shown here: there is no such job, or it is private.")}
    assert embed_card(page, job_id)["headline"] == "Cancelled"
    assert not net.page_errors, net.page_errors
    at_rest = page.evaluate("() => Array.from(document.querySelectorAll('livegen-progress'), (el) => el.running)")
    assert at_rest == [False, False], "both elements stopped: no more requests, no more events"

    # A new job for an element starts it over: its card, and its own end event.
    element(page, "no-such-job").evaluate(f"el => el.setAttribute('job', '{job_id}')")
    page_wait_until(page, lambda: len(host_events(page)) == 3, 15, "the end event of the element's new job")
    again = host_events(page)[2]
    assert again["job"] == job_id and again["detail"]["status"] == "cancelled", again
    artifacts.screenshot(page, "both-cancelled")
    shown = page.evaluate("() => Array.from(document.querySelectorAll('livegen-progress'), "
                          "(el) => Array.from(el.shadowRoot.querySelectorAll('.card'), (c) => c.dataset.status))")
    assert shown == [["cancelled"], ["cancelled"]], "the note of the unknown job went with it"
