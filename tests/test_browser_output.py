"""The generated text as it is written, in a real browser (Debian's Chromium through Playwright)
against real processes: gunicorn (gevent), `python worker.py` and the Ollama simulator, and for
one test a buffering nginx in front.

The job page's <pre class="output-text"> grows piece by piece (SSE, or the polling fallback that
fetches only the missing text), never repeats or skips, follows the end unless the reader
scrolled up, shows markup as text, keeps thinking apart; index cards show the last line; without
JavaScript the page refreshes itself with the text so far. Screenshots and a network log of
every test go to test-output/browser/<test name>/.
"""
import re
import time
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from simulator import Simulator

from browser_support import (
    CARDS_PROBE,
    ENDED,
    WORKER_ENV,
    Nginx,
    Probe,
    browser_job,
    read_card,
    tokens,
    wait_for_cards,
)
from helpers import both_backends, wait_until
from servers import WorkerProcess

pytestmark = pytest.mark.browser
pytest_plugins = ["browser_fixtures"]  # browser, nginx, artifacts, web, open_page

API = "/api/v1/ai/generation"

# Runs in every page before its own scripts (with PAGE_PROBE): every state the live text box
# (and the thinking box) went through, the text pieces the stream carried, and the fallback's
# fetches of missing text with what they brought back.
TEXT_PROBE = """
(() => {
  const rec = window.__text = {output: [], thinking: [], events: [], fetches: []};
  let lastOut = null, lastThought = null;
  const look = () => {
    const pre = document.querySelector('pre.output-text[data-live="true"]');
    if (pre && pre.textContent !== lastOut) {
      lastOut = pre.textContent;
      rec.output.push({t: Date.now(), text: lastOut, chars: Number(pre.dataset.chars),
                       elements: pre.querySelectorAll("*").length});
    }
    const thought = document.querySelector("pre.thinking-text");
    if (pre && thought && thought.textContent !== lastThought) {
      lastThought = thought.textContent;
      rec.thinking.push({t: Date.now(), text: lastThought});
    }
  };
  new MutationObserver(look).observe(document, {childList: true, subtree: true, characterData: true});
  document.addEventListener("htmx:sseOpen", (e) => {
    document.querySelectorAll("pre.output-text[data-job]").forEach((pre) => {
      ["output", "thinking"].forEach((name) => {
        e.detail.source.addEventListener(name + "-" + pre.dataset.job, (m) => {
          const d = JSON.parse(m.data);
          rec.events.push({t: Date.now(), name, offset: d.offset, chars: Array.from(d.text).length,
                           attempt: d.attempt, reset: !!d.reset});
        });
      });
    });
  });
  const originalFetch = window.fetch;
  window.fetch = function (input) {
    const url = String((input && input.url) || input);
    const answer = originalFetch.apply(this, arguments);
    if (url.includes("/output?")) {
      const entry = {t: Date.now(), url, status: null, output: null};
      rec.fetches.push(entry);
      answer.then((r) => { entry.status = r.status; return r.clone().json(); })
        .then((b) => { entry.output = {offset: b.output.offset, chars: Array.from(b.output.text).length}; })
        .catch(() => {});
    }
    return answer;
  };
})();
"""

# The live box's scroll position, read in one go.
SCROLL = """
(pre) => ({top: pre.scrollTop, height: pre.scrollHeight, client: pre.clientHeight,
           gap: pre.scrollHeight - pre.scrollTop - pre.clientHeight, chars: Number(pre.dataset.chars)})
"""


# --- fixtures (the others are in browser_fixtures.py) ---------------------------------------------
@pytest.fixture
def page_probes():
    """Each page records its cards and what its text box showed (text.log)."""
    return [CARDS_PROBE, Probe(TEXT_PROBE, "text", text_log)]


def text_log(page):
    rec = page.evaluate("window.__text || null")
    return render_text_log(rec) if rec else None


def render_text_log(rec):
    start = min([e["t"] for key in ("output", "events", "fetches") for e in rec[key]] or [0])
    lines = ["what the live text box showed (s, chars, elements inside, last 60 chars):"]
    lines += [f"{(e['t'] - start) / 1000:8.3f} {e['chars']:6} {e['elements']} {e['text'][-60:]!r}"
              for e in rec["output"]]
    lines += ["", "stream pieces (s, event, offset, chars, attempt, reset):"]
    lines += [f"{(e['t'] - start) / 1000:8.3f} {e['name']:8} {e['offset']:6} {e['chars']:6} {e['attempt']} {e['reset']}"
              for e in rec["events"]]
    lines += ["", "fallback fetches (s, status, answer offset, chars, url):"]
    lines += [f"{(e['t'] - start) / 1000:8.3f} {e['status']} {e['output']} {e['url']}" for e in rec["fetches"]]
    lines += ["", "thinking box:"] + [f"{(e['t'] - start) / 1000:8.3f} {e['text'][-60:]!r}" for e in rec["thinking"]]
    return "\n".join(lines) + "\n"


# --- helpers -------------------------------------------------------------------------------------
def create_job(web, prompt="Explain server-sent events", num_predict=60):
    response = requests.post(web.url + API, json={"prompt": prompt, "options": {"num_predict": num_predict}},
                             timeout=10)
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def job_status(web, job_id, output=False):
    response = requests.get(f"{web.url}{API}/{job_id}/status", params={"include": "output"} if output else None,
                            timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["job"]


def wait_for_status(web, job_id, predicate, timeout=30, what="the job"):
    seen = []

    def reached():
        seen[:] = [job_status(web, job_id)]
        return predicate(seen[0]) and seen[0]

    return wait_until(reached, timeout, f"{what} to reach the expected state", interval=0.05,
                      detail=lambda: seen[0] if seen else None)


def ms(iso):
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000


def cancel(web, job_id):
    response = requests.post(f"{web.url}{API}/{job_id}/cancel", timeout=10)
    assert response.status_code in (202, 409), response.text


def text_record(page):
    return page.evaluate("window.__text")


def live_box(job_id):
    return f'pre#output-{job_id}.output-text[data-live="true"]'


def wait_for_completed_page(page, timeout=30):
    """Until the job page shows the completed result (the jobEnded re-render)."""
    page.wait_for_selector("#result-markdown", timeout=timeout * 1000)


def assert_grew_as_prefixes(shown, final, what="the live text"):
    """Each state of the box is a longer prefix of the final text than the one before: no
    repeat, no gap, nothing taken back; its data-chars counts what it shows, in code points."""
    assert shown, f"{what} never showed anything"
    for entry in shown:
        assert final.startswith(entry["text"]), (
            f"{what} showed text that is not a prefix of the result (a repeat or a gap):\n"
            f"shown: {entry['text']!r}\nfinal: {final!r}")
        assert len(entry["text"]) == entry["chars"], f"data-chars {entry['chars']} for {len(entry['text'])} chars"
    lengths = [len(entry["text"]) for entry in shown]
    assert lengths == sorted(set(lengths)), f"{what} did not only grow: {lengths}"


def read_settled(page, script, arg=None, timeout=10):
    """page.evaluate, again after a navigation (a meta refresh) destroyed the context."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return page.evaluate(script, arg)
        except Exception as error:
            if time.monotonic() > deadline or ("destroyed" not in str(error) and "navigat" not in str(error)):
                raise
            page.wait_for_timeout(50)


# --- 1. SSE: the text grows piece by piece -------------------------------------------------------
@both_backends
def test_the_job_page_shows_the_text_as_it_is_written(web, open_page, artifacts, database_url):
    page, net = open_page()
    with Simulator(tokens_per_second=20.0, jitter=0.1) as sim:
        job_id = create_job(web, num_predict=120)  # about 6 s of generation
        page.goto(f"{web.url}/jobs/{job_id}")  # queued: the box starts empty, all text comes by SSE
        assert page.locator(f"#output-{job_id}").text_content() == ""
        assert page.locator("#result .waiting").is_visible()
        with WorkerProcess(database_url, sim.url, **WORKER_ENV):
            deadline, shot, samples = time.monotonic() + 30, False, []
            while time.monotonic() < deadline:
                card = read_card(page, job_id)
                box = page.query_selector(live_box(job_id))
                if card["status"] in ENDED or box is None:
                    break
                samples.append(box.text_content())
                if not shot and tokens(card) and tokens(card) >= 40 and samples[-1]:
                    artifacts.screenshot(page, "mid-way")
                    shot = True
                page.wait_for_timeout(200)
            wait_for_completed_page(page)
            artifacts.screenshot(page, "completed")
            assert page.locator("button[data-copy]").is_visible(), "with JavaScript, Copy is offered"
            page.click("details.raw summary")
            artifacts.screenshot(page, "completed-raw-open")
        record = sim.requests[0]

    job = job_status(web, job_id)
    assert job["status"] == "completed" and job["result"], job
    result = job["result"]
    assert result == record.text
    assert shot, f"never saw the job generating with text; samples: {samples}"

    # What Python sampled every 200 ms, and what the page recorded at each change.
    distinct = [text for text in dict.fromkeys(samples) if text]
    assert len(distinct) >= 3, f"the box showed only {len(distinct)} lengths before the end: {distinct}"
    for earlier, later in zip(samples, samples[1:], strict=False):
        assert later.startswith(earlier), f"a sample went back or skipped:\n{earlier!r}\n{later!r}"
    rec = text_record(page)
    shown = [entry for entry in rec["output"] if entry["text"]]
    assert_grew_as_prefixes(shown, result)
    assert all(entry["elements"] == 0 for entry in rec["output"])
    ended = ms(job["completed_at"])
    assert len([entry for entry in shown if entry["t"] < ended]) >= 3, render_text_log(rec)

    # It came by the stream, piece after piece, with no fallback fetch.
    pieces = [event for event in rec["events"] if event["name"] == "output"]
    assert len(pieces) >= 3, render_text_log(rec)
    assert not net.matching(re.compile(rf"/jobs/{job_id}/output\?")), "SSE works: no fetch of missing text"

    # The end: Markdown, and the raw text exactly as the job's result.
    assert page.query_selector(f"#output-{job_id}") is None, "the live box gives way to the result"
    assert page.locator("#result-markdown").inner_text().strip()
    assert page.locator("details.raw pre#result-text").text_content() == result
    assert page.locator("#result h2").text_content() == "Result"
    assert not net.page_errors and not net.dialogs, (net.page_errors, net.dialogs)


# --- 2. behind a buffering proxy: polling fetches only the missing text --------------------------
def test_behind_a_buffering_nginx_the_text_grows_by_fetching_only_what_is_missing(
        nginx, web, open_page, artifacts, database_url, tmp_path):
    page, net = open_page()
    with Nginx(tmp_path / "nginx", web.port, upstream_http="1.0") as proxy, \
            Simulator(tokens_per_second=20.0, jitter=0.1) as sim:
        job_id = create_job(web, num_predict=140)  # about 7 s of generation
        page.goto(f"{proxy.url}/jobs/{job_id}")
        with WorkerProcess(database_url, sim.url, **WORKER_ENV):
            # Text by a couple of fetches (or the end, if the fallback never fetched: checked below).
            page.wait_for_function(
                "() => document.getElementById('result-markdown') ||"
                " window.__text.fetches.filter((f) => f.output && f.output.chars).length >= 2", timeout=20_000)
            artifacts.screenshot(page, "growing-by-polling")
            wait_for_completed_page(page)
            artifacts.screenshot(page, "completed")
        record = sim.requests[0]

    job = job_status(web, job_id)
    result = job["result"]
    assert job["status"] == "completed" and result == record.text, job
    assert page.locator("details.raw pre#result-text").text_content() == result
    ended = ms(job["completed_at"])
    rec = text_record(page)

    # The stream was held back: no text piece reached the page while the job ran (else this
    # test would not be about the fallback).
    early = [event for event in rec["events"] if event["t"] < ended]
    assert not early, f"nginx let text pieces through while the job ran (the set-up is wrong): {early}"

    shown = [entry for entry in rec["output"] if entry["text"]]
    assert_grew_as_prefixes(shown, result)
    before_end = [entry for entry in shown if entry["t"] < ended]
    assert len(before_end) >= 3, f"the text did not grow by polling:\n{render_text_log(rec)}"

    # Each fetch asks from where the page's text ends, so it brings only the new text.
    fetched = net.matching(re.compile(rf"/jobs/{job_id}/output\?"))
    assert len(fetched) >= 3, net.render()
    assert all(entry["status"] == 200 for entry in fetched), net.render()
    asked = [parse_qs(urlsplit(entry["url"]).query) for entry in fetched]
    starts = [int(query["from"][0]) for query in asked]
    assert starts == sorted(set(starts)), f"from= did not increase: {starts}"
    assert starts[1] > 0, f"the fetches ask for the whole text again: {starts}"
    answers = [entry for entry in rec["fetches"] if entry["output"]]
    for entry in answers:
        start = int(parse_qs(urlsplit(entry["url"]).query)["from"][0])
        assert entry["output"]["offset"] == start, entry
    received = sum(entry["output"]["chars"] for entry in answers)
    assert received <= len(result), (f"the fetches brought {received} characters for a text of "
                                      f"{len(result)}: they repeat text")
    assert not net.page_errors and not net.dialogs, (net.page_errors, net.dialogs)


# --- 3. following the end, unless the reader scrolled up -----------------------------------------
def test_the_box_follows_the_end_unless_the_reader_scrolled_up(web, open_page, artifacts, database_url):
    page, net = open_page()
    lines = [f"Line {n:03d}: the quick brown fox jumps over the lazy dog.\n" for n in range(1, 301)]
    with Simulator(tokens_per_second=25.0, jitter=0.1) as sim:
        sim.script = lines  # about 12 s, cancelled once seen
        job_id = create_job(web, num_predict=1000)
        page.goto(f"{web.url}/jobs/{job_id}")
        box = page.locator(live_box(job_id))
        with WorkerProcess(database_url, sim.url, **WORKER_ENV):
            page.wait_for_function(f"() => {{ const p = document.getElementById('output-{job_id}');"
                                   " return p && p.scrollHeight > p.clientHeight + 150; }", timeout=20_000)

            def next_piece(after):
                page.wait_for_function(f"() => Number(document.getElementById('output-{job_id}')"
                                       f".dataset.chars) > {after}", timeout=10_000)
                return box.evaluate(SCROLL)

            # Following: after each new piece the box shows its end.
            seen = box.evaluate(SCROLL)
            for _ in range(3):
                seen = next_piece(seen["chars"])
                assert seen["gap"] < 8 and seen["top"] > 0, f"the box did not follow the end: {seen}"
            artifacts.screenshot(page, "following")

            # Scrolled up: new text arrives, the reader is left where they are.
            box.evaluate("(pre) => { pre.scrollTop = 0; }")
            seen = box.evaluate(SCROLL)
            for _ in range(2):
                seen = next_piece(seen["chars"])
                assert seen["top"] == 0, f"the box was yanked down while the reader read above: {seen}"
            assert seen["gap"] > 150, seen
            artifacts.screenshot(page, "scrolled-up")

            # Back at the end: it follows again.
            box.evaluate("(pre) => { pre.scrollTop = pre.scrollHeight; }")
            seen = next_piece(box.evaluate(SCROLL)["chars"])
            assert seen["gap"] < 8 and seen["top"] > 0, f"the box did not follow again: {seen}"
            still_running = job_status(web, job_id)["status"] == "processing"

            # Cancelled: the text so far stays, with a note.
            cancel(web, job_id)
            page.wait_for_selector("#result .note", timeout=15_000)
            artifacts.screenshot(page, "cancelled")
        job = job_status(web, job_id, output=True)

    assert still_running, "the job ended before the test was done: the checks above saw a finished text"
    assert job["status"] == "cancelled", job
    assert page.locator("#result .note").text_content() == "The text written before the job was cancelled:"
    kept = page.locator(f"pre#output-{job_id}")
    assert kept.get_attribute("data-live") == "false"
    assert kept.text_content() == job["output"] and job["output"], "the text so far stays on the page"
    assert "".join(lines).startswith(job["output"])
    assert_grew_as_prefixes([e for e in text_record(page)["output"] if e["text"]], job["output"])
    assert not net.page_errors and not net.dialogs, (net.page_errors, net.dialogs)


# --- 4. markup in the text is text ---------------------------------------------------------------
ODD = ["Start: ", "<img src=x onerror=alert(1)>", " and ", "<b>bold</b>", " & &amp; ",
       "</pre><script>alert(2)</script>", " emoji 🎉👩‍💻 ", "é中文", "\r\n", "CRLF line\r\n",
       "LF line\n"]


@both_backends
def test_markup_in_the_live_text_is_shown_as_text(web, open_page, artifacts, database_url):
    # The Content-Security-Policy alone would stop an inline handler: bypass it, so this is about
    # the box never parsing the text as HTML.
    page, net = open_page(bypass_csp=True)
    script = ODD + [f" filler {n}" for n in range(60)]  # about 3 s after the odd text
    odd = "".join(ODD)
    with Simulator(tokens_per_second=20.0, jitter=0.1) as sim:
        sim.script = script
        job_id = create_job(web, num_predict=1000)
        page.goto(f"{web.url}/jobs/{job_id}")
        with WorkerProcess(database_url, sim.url, **WORKER_ENV):
            page.wait_for_function("([id, n]) => { const p = document.getElementById('output-' + id);"
                                   " return p && Number(p.dataset.chars) >= n; }",
                                   arg=[job_id, len(odd)], timeout=20_000)
            live = page.evaluate("""(id) => { const p = document.getElementById("output-" + id);
                return {live: p.dataset.live, text: p.textContent, elements: p.querySelectorAll("*").length,
                        imgs: document.querySelectorAll('img').length, bolds: document.querySelectorAll("b").length,
                        scripts: Array.from(document.scripts).filter((s) => !s.src).length}; }""", job_id)
            artifacts.screenshot(page, "live-markup-as-text")
            page.wait_for_timeout(300)  # give any injected handler the chance to fire
            wait_for_completed_page(page)
            artifacts.screenshot(page, "completed")
        result = job_status(web, job_id)["result"]

    assert live["live"] == "true", "the job ended before the text could be checked live"
    assert live["text"].startswith(odd), f"the box does not show the text as written: {live['text']!r}"
    assert live["elements"] == 0 and live["imgs"] == 0 and live["bolds"] == 0 and live["scripts"] == 0, live
    assert result == "".join(script), "the text reaches the result unchanged"
    assert result.startswith(live["text"]), (live["text"], result)
    rec = text_record(page)
    assert all(entry["elements"] == 0 for entry in rec["output"]), render_text_log(rec)
    assert_grew_as_prefixes([e for e in rec["output"] if e["text"]], result)
    assert net.dialogs == [], net.dialogs
    assert not [e for e in net.entries if urlsplit(e["url"]).path == "/x"], "the text's <img> was loaded"
    assert not net.page_errors, net.page_errors


# --- 5. index cards show the end of the text -----------------------------------------------------
def test_index_cards_show_the_last_line_as_it_changes(web, open_page, artifacts, database_url):
    page, net = open_page()
    lines = [f"Line {n:02d} of the answer.\n" for n in range(1, 81)]
    with Simulator(tokens_per_second=20.0, jitter=0.1) as sim:
        sim.script = lines  # about 4 s
        job_id = browser_job(page, web.url, num_predict=1000)  # `/` lists this browser's own jobs
        page.goto(web.url + "/")
        tail = page.locator(f"#card-{job_id} .card-tail")
        tails, shot = [], False
        with WorkerProcess(database_url, sim.url, **WORKER_ENV):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                card = read_card(page, job_id)
                if card["status"] in ENDED:
                    break
                if card["status"] == "processing" and tail.count():
                    tails.append(tail.text_content())
                    if not shot and len(set(tails)) >= 2:
                        artifacts.screenshot(page, "card-tail")
                        assert tail.is_visible()
                        shot = True
                page.wait_for_timeout(100)
            [card] = wait_for_cards(page, lambda cards: cards[0]["status"] == "completed", timeout=30)
            artifacts.screenshot(page, "completed")

    text = "".join(lines)
    distinct = list(dict.fromkeys(tails))
    assert len(distinct) >= 2, f"the card's tail did not change while the job ran: {distinct}"
    for shown in distinct:
        kept = shown.split("\n")
        assert 1 <= len(kept) <= 2 and all(line + "\n" in lines for line in kept), shown
        assert shown + "\n" in text, f"the tail is not consecutive lines of the text: {shown!r}"
    numbers = [int(shown.split("\n")[-1][5:7]) for shown in distinct]
    assert numbers == sorted(numbers), f"the tail went back: {distinct}"
    assert tail.text_content() == "Line 79 of the answer.\nLine 80 of the answer.", "the final card's tail"
    assert not net.page_errors, net.page_errors


# --- 6. no JavaScript: the page refreshes with the text so far -----------------------------------
def test_without_javascript_the_job_page_shows_the_text_so_far(web, open_page, artifacts, database_url):
    page, net = open_page(probe=False, java_script_enabled=False)
    with Simulator(tokens_per_second=20.0, jitter=0.1) as sim, \
            WorkerProcess(database_url, sim.url, **WORKER_ENV):
        job_id = create_job(web, num_predict=240)  # about 12 s, cancelled once seen
        wait_for_status(web, job_id, lambda job: job["output_chars"] > 0, timeout=20, what="the job's text")
        page.goto(f"{web.url}/jobs/{job_id}")
        read = f"() => {{ const p = document.getElementById('output-{job_id}'); return p && p.textContent; }}"
        first = read_settled(page, read)
        assert page.locator(f"#output-{job_id}").is_visible()
        assert page.locator("button[data-copy]").is_hidden(), "a Copy button that cannot work is not shown"
        artifacts.screenshot(page, "first-load")
        page.wait_for_event("load", timeout=5_000)  # the 2 s meta refresh
        second = read_settled(page, read)
        artifacts.screenshot(page, "refreshed")
        still_running = job_status(web, job_id)["status"] == "processing"
        cancel(web, job_id)
        job = wait_for_status(web, job_id, lambda job: job["status"] in ENDED, timeout=15)
        final = job_status(web, job_id, output=True)["output"]

    assert job["status"] == "cancelled" and still_running, job
    assert first, "the first load shows no text, though the job had some"
    assert len(second) > len(first) and second.startswith(first), (first, second)
    assert final.startswith(second), (second, final)
    assert not net.streams() and not net.card_polls()


# --- 7. thinking: apart, collapsed, counted ------------------------------------------------------
def test_thinking_is_shown_apart_and_collapsed(web, open_page, artifacts, database_url):
    page, net = open_page()
    with Simulator(tokens_per_second=20.0, jitter=0.1) as sim:
        sim.set_fault("thinking")
        job_id = create_job(web, num_predict=100)  # 8 thinking tokens, then about 4.5 s of answer
        page.goto(f"{web.url}/jobs/{job_id}")
        assert page.locator("details.thinking").is_hidden(), "no thinking yet: no thinking box"
        with WorkerProcess(database_url, sim.url, **WORKER_ENV):
            # The answer has begun, so all the thinking (it comes first) has been written.
            page.wait_for_function("(id) => { const p = document.getElementById('output-' + id);"
                                   " return p && Number(p.dataset.chars) > 0; }", arg=job_id, timeout=20_000)
            live = page.evaluate("""(id) => {
                const details = document.querySelector("details.thinking");
                const pre = document.getElementById("output-" + id);
                return {hidden: details.hidden, open: details.open, live: pre.dataset.live, answer: pre.textContent,
                        thinking: document.getElementById("thinking-" + id).textContent,
                        inside: !!details.querySelector("#thinking-" + id),
                        visible: document.getElementById("thinking-" + id).checkVisibility(),
                        tokens: Number(document.querySelector("#result .thinking-tokens").textContent)}; }""",
                job_id)
            artifacts.screenshot(page, "live-thinking-collapsed")
            wait_for_completed_page(page)
            page.click("details.thinking summary")
            artifacts.screenshot(page, "completed-thinking-open")
        record = sim.requests[0]

    assert record.thinking, "the simulator sent thinking"
    assert live["live"] == "true", "the job ended before the live page could be checked"
    assert not live["hidden"] and not live["open"] and live["inside"] and not live["visible"], live
    assert live["tokens"] > 0, live
    assert record.thinking.startswith(live["thinking"]) and live["thinking"], live
    assert record.text.startswith(live["answer"]), live
    assert live["thinking"] not in live["answer"] and record.thinking not in record.text
    assert page.locator(f"#thinking-{job_id}").text_content() == record.thinking
    assert page.locator(f"#thinking-{job_id}").is_visible(), "opened, the thinking shows"
    assert int(page.locator("#result .thinking-tokens").text_content()) > 0
    assert page.locator("details.raw pre#result-text").text_content() == record.text
    assert not net.page_errors, net.page_errors
