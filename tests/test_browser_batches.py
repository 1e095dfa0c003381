"""The batch pages in a real browser (Debian's Chromium through Playwright) against real processes:
gunicorn with the gevent worker, `python worker.py` and the Ollama simulator. A 20-item batch is
submitted through the /batches form and followed to its end: over SSE, by polling alone (the stream
aborted, or held back by a buffering nginx), without JavaScript (the page refreshes itself), and
cancelled from its card midway. The console must end with every item exactly once, in the order
the items ended (the log download's order, the items' batch_seq).

Screenshots, the network log and what the page's batch card showed go to
test-output/browser/<test name>/. Needs Chromium (and nginx for one case); without them these
tests skip, or fail under REQUIRE_BROWSER=1 (CI).
"""
import re
import time
from datetime import datetime

import pytest
import requests
import sqlalchemy as sa

from simulator import Simulator

from browser_support import WORKER_ENV, Nginx, Probe, page_wait_until
from servers import WorkerProcess

pytestmark = pytest.mark.browser
pytest_plugins = ["browser_fixtures"]  # browser, nginx, artifacts, web, open_page

API = "/api/v1/ai/generation/batches"
ITEMS = 20
LINE = re.compile(r"^\[(\d\d:\d\d:\d\d)\] +(\d+)/(\d+) (completed|failed|cancelled) · (.+)$")  # indexes right-aligned

# Runs in every page before its scripts: the SSE messages (and `close`) the page got, and each
# state the batch card showed (an entry whenever its version, status, ended items, tokens, queued or
# running count changes).
BATCH_PROBE = """
(() => {
  const log = window.__probe = {sse: [], opens: [], closes: [], errors: 0, cards: []};
  // Before the swap: htmx:sseMessage fires on the card the swap replaced, which no longer bubbles here.
  document.addEventListener("htmx:sseBeforeMessage", (e) => {
    const entry = {t: Date.now(), type: e.detail && e.detail.type, id: e.detail && e.detail.lastEventId};
    log.sse.push(entry);
    setTimeout(() => { entry.refused = e.defaultPrevented; }, 0);  // app.js refuses older versions
  });
  document.addEventListener("htmx:sseOpen", (e) => {
    log.opens.push(Date.now());
    e.detail.source.addEventListener("close", () => log.closes.push(Date.now()));
  });
  document.addEventListener("htmx:sseError", () => { log.errors += 1; });
  let shown = null;
  const record = () => {
    const card = document.querySelector(".card.batch[data-batch]");
    if (!card) return;
    const dt = Array.from(card.querySelectorAll(".stats dt")).find((e) => e.textContent.trim() === "Tokens");
    const tokens = dt ? parseInt(dt.nextElementSibling.textContent, 10) : null;
    const count = (name) => Number(card.querySelector(".count-" + name).textContent);
    const queued = count("queued"), running = count("running");
    const d = card.dataset, key = [d.version, d.status, d.endedItems, tokens, queued, running].join("/");
    if (key === shown) return;
    shown = key;
    log.cards.push({t: Date.now(), version: Number(d.version), status: d.status, ended: Number(d.endedItems),
                    tokens: tokens, queued: queued, running: running});
  };
  new MutationObserver(record).observe(document, {childList: true, subtree: true});
})();
"""

# Everything the batch card shows, read in one go so the values belong to the same render.
READ_BATCH = """
() => {
  const card = document.querySelector(".card.batch[data-batch]");
  if (!card) return null;
  const count = (name) => {
    const dd = card.querySelector(".count-" + name);
    return dd ? Number(dd.textContent.trim()) : null;
  };
  const text = (selector) => {
    const el = card.querySelector(selector);
    return el ? el.textContent.replace(/\\s+/g, " ").trim() : null;
  };
  const button = card.querySelector("form.batch-action button");
  return {
    batch: card.dataset.batch, status: card.dataset.status, ended: card.dataset.ended === "true",
    ended_items: Number(card.dataset.endedItems), total: Number(card.dataset.total),
    version: Number(card.dataset.version),
    queued: count("queued"), running: count("running"), completed: count("completed"),
    failed: count("failed"), cancelled: count("cancelled"),
    headline: text(".headline"), bar: text(".bar-label"),
    polls: card.hasAttribute("hx-get"), sse: card.hasAttribute("sse-swap"),
    button: button ? button.textContent.trim() : null,
    running_items: card.querySelectorAll(".running-items li").length,
    console: card.querySelector(".console-lines").textContent,
  };
}
"""


def batch_log(page):
    probe = page.evaluate("window.__probe || null")
    if not probe or not probe["cards"]:
        return None
    start = probe["cards"][0]["t"]
    lines = [f"{(c['t'] - start) / 1000:8.3f} v{c['version']:<4} {c['status']:<10} ended {c['ended']:<3} "
             f"queued {c['queued']:<3} running {c['running']:<2} tokens {c['tokens']}" for c in probe["cards"]]
    sse = [f"{(m['t'] - start) / 1000:8.3f} {m['type']} id={m['id']}" + (" (refused)" if m.get("refused") else "")
           for m in probe["sse"]]
    return ("what the batch card showed (s, version, status, ended items, queued, running, tokens)\n" + "\n".join(lines)
            + f"\n\nSSE messages for the card: {len(sse)}; opens {len(probe['opens'])}, closes "
            f"{len(probe['closes'])}, errors {probe['errors']}\n" + "\n".join(sse) + "\n")


@pytest.fixture
def page_probes():
    return [Probe(BATCH_PROBE, "batch", batch_log)]


# --- helpers ---------------------------------------------------------------------------------------
def read_batch(page):
    return page.evaluate(READ_BATCH)


def wait_for_batch(page, predicate, timeout=30.0, what="the batch card"):
    """Poll the page (pumping Playwright's events) until predicate(card) holds; the card."""
    deadline = time.monotonic() + timeout
    card = None
    while time.monotonic() < deadline:
        try:
            card = read_batch(page)
        except Exception as error:  # a meta refresh destroyed the context: read again
            if "context was destroyed" not in str(error) and "navigat" not in str(error):
                raise
            card = None
        if card and predicate(card):
            return card
        page.wait_for_timeout(50)
    raise AssertionError(f"{what} did not reach the expected state in {timeout} s; last seen: {card}")


def submit_batch(page, base_url, num_predict, items=ITEMS):
    """Fill and send the /batches form; the new batch's id (the page is then its page)."""
    page.goto(base_url + "/batches")
    page.fill("#prompts", "\n".join(f"Item {n}: say something short" for n in range(1, items + 1)))
    page.fill("input[name=num_predict]", str(num_predict))
    page.click("form.compose-form button[type=submit]")
    page.wait_for_url(re.compile(r"/batches/[^/]+$"))
    return page.url.rsplit("/", 1)[1]


def console_lines(card):
    return [line for line in card["console"].splitlines() if line.strip()]


def parse_console(card, total=ITEMS):
    """(index, status) of each console line (indexes 1-based, as shown), in the console's order."""
    parsed = []
    for line in console_lines(card):
        match = LINE.match(line)
        assert match, f"a console line not in the log's format: {line!r}\n{card['console']}"
        assert int(match.group(3)) == total, line
        parsed.append((int(match.group(2)), match.group(4)))
    return parsed


def items_by_seq(database_url, batch_id):
    """The batch's items as the database has them, in the order they ended (batch_seq):
    (index 1-based, batch_seq, status, started, error)."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT j.batch_index, j.batch_seq, j.status, j.started_at, j.error_message "
                "FROM ai_generation_jobs j JOIN ai_generation_batches b ON j.batch_pk = b.id "
                "WHERE b.batch_id = :id ORDER BY j.batch_seq, j.batch_index"), {"id": batch_id}).all()
    finally:
        engine.dispose()
    return [(row[0] + 1, row[1], row[2], row[3] is not None, row[4]) for row in rows]


def api_items(base_url, batch_id):
    response = requests.get(f"{base_url}{API}/{batch_id}/items", params={"limit": 1000}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def log_txt(base_url, batch_id):
    response = requests.get(f"{base_url}{API}/{batch_id}/log.txt", timeout=10)
    assert response.status_code == 200, response.text
    return [line for line in response.text.splitlines() if line.strip()]


def assert_console_is_the_log(card, base_url, database_url, batch_id):
    """Every item exactly once, in the order they ended: as log.txt and the items' batch_seq say."""
    parsed = parse_console(card)
    indexes = [index for index, _ in parsed]
    assert sorted(indexes) == list(range(1, ITEMS + 1)), (
        f"the console must show each of the {ITEMS} items exactly once: {indexes}\n{card['console']}")
    assert console_lines(card) == log_txt(base_url, batch_id), (
        "the console differs from the log download:\n" + card["console"])
    rows = items_by_seq(database_url, batch_id)
    assert [seq for _, seq, *_ in rows] == sorted({seq for _, seq, *_ in rows}), rows  # distinct numbers
    assert indexes == [index for index, *_ in rows], (indexes, rows)
    assert [status for _, status in parsed] == [status for _, _, status, *_ in rows], (parsed, rows)
    return parsed


def assert_completed(card):
    assert card["status"] == "completed" and card["ended"], card
    assert (card["queued"], card["running"], card["completed"], card["failed"], card["cancelled"]) \
        == (0, 0, ITEMS, 0, 0), card
    assert card["headline"] == f"Done: {ITEMS} completed", card
    assert card["bar"] == f"100% · {ITEMS}/{ITEMS}", card
    assert not card["polls"] and not card["sse"], "an ended card carries no polling or SSE trigger"
    assert card["button"] is None and card["running_items"] == 0, card


def ended_ms(base_url, batch_id):
    """When the batch ended, in ms since the epoch (the server's clock; the same machine's)."""
    batch = requests.get(f"{base_url}{API}/{batch_id}", timeout=10).json()["batch"]
    return datetime.fromisoformat(batch["completed_at"].replace("Z", "+00:00")).timestamp() * 1000


def documents(net):
    return [(e["method"], e["url"].split("?")[0], e["status"]) for e in net.entries if e["type"] == "document"]


def card_polls(net, batch_id):
    path = f"/batches/{batch_id}/card"
    return [e for e in net.entries if e["method"] == "GET" and e["url"].split("?")[0].endswith(path)]


def streams(net, batch_id):
    return [e for e in net.entries if e["url"].split("?")[0].endswith(f"/batches/{batch_id}/stream")]


def probe(page):
    return page.evaluate("window.__probe")


def figures_went_back(page):
    """Steps of the card's history where its Tokens went down or its Queued went up, each as
    (kind, before, after): "same version" when the newer figures came with the same version (app.js
    refuses only a strictly older one), else "newer version"."""
    cards = probe(page)["cards"]
    back = []
    for before, after in zip(cards, cards[1:], strict=False):
        if after["tokens"] < before["tokens"] or after["queued"] > before["queued"]:
            kind = "same version" if after["version"] == before["version"] else "newer version"
            back.append((kind, before, after))
    return back


def assert_never_went_back(page):
    """Progress never goes backwards: not the card's version, nor its count of ended items."""
    cards = probe(page)["cards"]
    versions = [c["version"] for c in cards]
    ended = [c["ended"] for c in cards]
    assert versions == sorted(versions) and ended == sorted(ended), (
        "the batch card went back to an older state:\n" + batch_log(page))


def assert_figures_never_went_back(page):
    """Called last, once everything else has passed: the card's Tokens never go down nor its
    Queued up (no retries here). The batch row and its running items are read in one statement
    (never an item counted in neither), and the card's version is the latest write to either, so
    the page refuses a held-back card that is older than the one it shows."""
    back = figures_went_back(page)
    assert not back, "; ".join(f"{kind}: v{b['version']} tokens {b['tokens']} queued {b['queued']} -> "
                               f"v{a['version']} tokens {a['tokens']} queued {a['queued']}" for kind, b, a in back)


def run_to_the_end(page, artifacts, base_url, num_predict, timeout=30):
    """Submit a batch, screenshot it running (some items ended, some running), wait for its end."""
    batch_id = submit_batch(page, base_url, num_predict)
    wait_for_batch(page, lambda c: c["status"] == "processing" and c["running"] and c["ended_items"] >= 2,
                   timeout=20, what="the running batch (items ended and running)")
    artifacts.screenshot(page, "running")
    card = wait_for_batch(page, lambda c: c["ended"], timeout=timeout, what="the batch's end")
    artifacts.screenshot(page, "done")
    return batch_id, card


# Items of 20 tokens at 20 tok/s (about 1.1 s each), 5 at a time: the 20 take about 5 s
# (plus the worker's start: it starts with the page, not before).
FAST = {"tokens_per_second": 20.0, "jitter": 0.1}
FAST_TOKENS = 20
FAST_SLOTS = "5"


# --- 1. over SSE ------------------------------------------------------------------------------------
def test_a_batch_from_the_form_runs_to_its_end_over_sse(web, open_page, artifacts, database_url):
    page, net = open_page()
    with Simulator(**FAST) as sim, \
            WorkerProcess(database_url, sim.url, WORKER_CONCURRENCY=FAST_SLOTS, **WORKER_ENV):
        batch_id, card = run_to_the_end(page, artifacts, web.url, FAST_TOKENS)
        assert len(sim.requests) == ITEMS
    assert_completed(card)
    assert_console_is_the_log(card, web.url, database_url, batch_id)
    assert_never_went_back(page)

    # Without a reload: the form's POST, its redirect to the batch page, and nothing after.
    assert documents(net) == [("GET", f"{web.url}/batches", 200), ("POST", f"{web.url}/batches", 303),
                              ("GET", f"{web.url}/batches/{batch_id}", 200)], documents(net)
    log = probe(page)
    swapped = [m for m in log["sse"] if m["type"] == f"batch-{batch_id}"]
    assert len(swapped) >= 5, f"the card should have been carried by SSE: {log['sse']}"
    assert log["closes"], "the stream ends with a `close` event once the batch has ended"
    [stream] = streams(net, batch_id)  # one connection, not reopened after `close`
    assert stream["status"] == 200, stream
    late = [e for e in card_polls(net, batch_id) if e["sent"] > swapped[0]["t"]]
    assert len(late) <= 1, f"{len(late)} card polls went out while SSE carried the card (polling should pause)"
    assert not net.page_errors and not net.dialogs, (net.page_errors, net.dialogs)
    assert_figures_never_went_back(page)


# --- 2. polling only ---------------------------------------------------------------------------------
@pytest.mark.parametrize("blocked", ["stream-aborted", "buffering-nginx"])
def test_a_batch_runs_to_its_end_by_polling_when_sse_cannot(request, web, open_page, artifacts, database_url,
                                                              tmp_path, blocked):
    page, net = open_page()
    with Simulator(**FAST) as sim, \
            WorkerProcess(database_url, sim.url, WORKER_CONCURRENCY=FAST_SLOTS, **WORKER_ENV):
        if blocked == "stream-aborted":
            page.route("**/batches/*/stream", lambda route: route.abort())
            base = web.url
            proxy = None
        else:  # HTTP/1.0 upstream: nginx holds the whole stream back until it ends
            request.getfixturevalue("nginx")
            proxy = Nginx(tmp_path / "nginx", web.port, upstream_http="1.0")
            base = proxy.url
        try:
            batch_id, card = run_to_the_end(page, artifacts, base, FAST_TOKENS)
            artifacts.screenshot(page, "polling-only-done")
            if proxy:  # the held-back stream arrives in one burst once it ends: it must not take the card back
                [stream] = streams(net, batch_id)
                page_wait_until(page, lambda: stream["done_at"] is not None, 10, "the end of the held-back stream")
                page.wait_for_function("() => window.__probe.closes.length > 0", timeout=5_000)
                card = read_batch(page)
        finally:
            if proxy:
                proxy.stop()
    assert_completed(card)
    assert_console_is_the_log(card, web.url, database_url, batch_id)
    assert_never_went_back(page)

    # Polling carried the card while the batch ran: no SSE message reached the page before the
    # batch ended (the stream was aborted, or nginx held it back), and polls came about every second.
    ended_at = ended_ms(web.url, batch_id)
    early = [m for m in probe(page)["sse"] if m["t"] < ended_at]
    assert not early, f"SSE messages reached the page while the batch ran (the set-up is wrong): {early}"
    polls = [e for e in card_polls(net, batch_id) if e["status"] in (200, 286)]
    assert len(polls) >= 3, f"the card should have been polled while the batch ran: {net.render()}"
    times = [e["headers_at"] for e in polls if e["headers_at"] < ended_at]
    gaps = [round((b - a) / 1000, 2) for a, b in zip(times, times[1:], strict=False)]
    assert gaps and max(gaps) <= 2.5, f"polls stopped while SSE could not carry the card: {gaps}"
    if blocked == "stream-aborted":  # then only a poll can bring the end: the last one, 286 (stop polling)
        assert polls[-1]["status"] == 286, [e["status"] for e in polls]
        tried = streams(net, batch_id)  # (the extension retries with a back-off: one may be in flight)
        assert tried and all(e["failure"] for e in tried if e["done_at"]) and not any(e["status"] for e in tried)
    assert not net.page_errors and not net.dialogs, (net.page_errors, net.dialogs)
    assert_figures_never_went_back(page)


# --- 3. no JavaScript --------------------------------------------------------------------------------
def test_without_javascript_the_batch_page_refreshes_itself_to_the_end(web, open_page, artifacts, database_url):
    page, net = open_page(probe=False, java_script_enabled=False)
    loads = []
    page.on("load", lambda: loads.append(page.url))
    with Simulator(**FAST) as sim, \
            WorkerProcess(database_url, sim.url, WORKER_CONCURRENCY=FAST_SLOTS, **WORKER_ENV):
        batch_id = submit_batch(page, web.url, FAST_TOKENS)
        assert page.locator('meta[http-equiv="refresh"]').count() == 1
        wait_for_batch(page, lambda c: c["status"] == "processing" and c["ended_items"] >= 2,
                       timeout=20, what="the refreshed batch page")
        artifacts.screenshot(page, "running-no-js")
        card = wait_for_batch(page, lambda c: c["ended"], timeout=30, what="the refreshed batch page")
        page.wait_for_load_state()
        artifacts.screenshot(page, "done-no-js")
    assert_completed(card)
    assert_console_is_the_log(card, web.url, database_url, batch_id)
    refreshes = [url for url in loads if url.endswith(f"/batches/{batch_id}")]
    assert len(refreshes) >= 3, f"the batch page should have refreshed itself: {loads}"
    assert page.locator('meta[http-equiv="refresh"]').count() == 0, "an ended batch's page stops refreshing"
    assert not streams(net, batch_id) and not card_polls(net, batch_id)


# --- 4. cancel ---------------------------------------------------------------------------------------
def test_cancel_from_the_card_stops_the_batch(web, open_page, artifacts, database_url):
    page, net = open_page()
    # Items of 40 tokens at 20 tok/s (2 s each), 2 at a time: 20 s for the whole batch, cancelled after ~4 s.
    with Simulator(**FAST) as sim, \
            WorkerProcess(database_url, sim.url, WORKER_CONCURRENCY="2", **WORKER_ENV):
        batch_id = submit_batch(page, web.url, 40)
        wait_for_batch(page, lambda c: c["status"] == "processing" and c["running"] and c["ended_items"] >= 2,
                       timeout=20, what="the running batch")
        button = page.locator(f"#batch-{batch_id} form.batch-action button")
        assert button.text_content().strip() == "Cancel the batch"
        artifacts.screenshot(page, "running-before-cancel")
        with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/cancel")) as posted:
            button.click()
        assert posted.value.status == 200
        # The cancel is committed: from here on, no item may start.
        started_then = sorted(item["index"] for item in api_items(web.url, batch_id) if item["started_at"])
        card = wait_for_batch(page, lambda c: "cancelling" in c["headline"] or c["status"] == "cancelled",
                              timeout=5, what="the card after Cancel")
        shown = card["headline"]
        assert card["button"] is None, f"no Cancel button once the cancel is asked: {card}"
        artifacts.screenshot(page, "cancelling" if card["status"] == "processing" else "cancelled-at-once")
        card = wait_for_batch(page, lambda c: c["ended"], timeout=15, what="the cancelled batch's end")
        artifacts.screenshot(page, "cancelled")
        items = api_items(web.url, batch_id)
        requested = len(sim.requests)
    started_after = sorted(item["index"] for item in items if item["started_at"])
    assert started_after == started_then, f"items started after the cancel: {set(started_after) - set(started_then)}"
    assert requested <= len(started_then), (requested, started_then)  # (a just-claimed item may never ask)
    assert 2 <= len(started_then) < ITEMS, started_then

    assert card["status"] == "cancelled" and card["ended"], card
    assert (card["queued"], card["running"]) == (0, 0), card
    assert card["completed"] + card["failed"] + card["cancelled"] == ITEMS and card["cancelled"] >= ITEMS // 2, card
    assert card["headline"] == f"Cancelled: {card['completed']} completed before the cancel", card
    assert card["button"] is None and not card["polls"] and not card["sse"], card
    assert all(item["status"] == "cancelled" and item["error"] == "Cancelled with its batch."
               for item in items if not item["started_at"]), items
    parsed = assert_console_is_the_log(card, web.url, database_url, batch_id)
    assert sum(status == "cancelled" for _, status in parsed) == card["cancelled"], parsed
    assert "cancelling" in shown or shown.startswith("Cancelled"), shown
    assert_never_went_back(page)
    posts = [(e["url"], e["status"]) for e in net.entries if e["method"] == "POST"]
    assert posts == [(f"{web.url}/batches", 303), (f"{web.url}/batches/{batch_id}/cancel", 200)], posts
    assert not net.page_errors and not net.dialogs, (net.page_errors, net.dialogs)
    assert_figures_never_went_back(page)
