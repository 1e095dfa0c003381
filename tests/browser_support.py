"""Support for the browser tests: Debian's Chromium through Playwright, a real nginx, per-test
output (screenshots, network log) under test-output/browser/<test name>/, and card helpers.
The fixtures built on these are in browser_fixtures.py.

Missing Chromium, Playwright or nginx skips the browser tests, unless REQUIRE_BROWSER=1 (CI):
then they fail loudly.
"""
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest
import requests

from servers import ROOT, free_port

REQUIRE_BROWSER = os.environ.get("REQUIRE_BROWSER") == "1"
OUTPUT = Path(ROOT) / "test-output" / "browser"
NGINX_TEMPLATE = Path(__file__).with_name("nginx_buffering.conf.template")
CARD_POLL = re.compile(r"/jobs/[^/?]+/card$")
STREAM = re.compile(r"/jobs/stream\?")
ENDED = ("completed", "failed", "cancelled")
WEB_ENV = {"SSE_POLL_INTERVAL": "0.2"}  # the browser tests' gunicorn: reads changed jobs every 0.2 s
WORKER_ENV = {"PROGRESS_INTERVAL": "0.5"}  # their `python worker.py`: writes progress every 0.5 s

# Runs in every page before its own scripts: a record of what the page's SSE and htmx did,
# timestamped with Date.now() so Python can compare it with Playwright's request timings.
PAGE_PROBE = """
(() => {
  const log = window.__probe = {sse: [], opens: [], sent: []};
  document.addEventListener("htmx:sseBeforeMessage", (e) =>
    log.sse.push({t: Date.now(), type: e.detail && e.detail.type}));
  document.addEventListener("htmx:sseOpen", () => log.opens.push(Date.now()));
  document.addEventListener("htmx:beforeSend", (e) =>
    log.sent.push({t: Date.now(), path: e.detail.requestConfig && e.detail.requestConfig.path}));
  // What each card showed, and when: one entry whenever a card's version or status changes.
  log.cards = [];
  const shown = {};
  const record = () => document.querySelectorAll(".card[data-job]").forEach((card) => {
    const d = card.dataset, key = d.version + "/" + d.status;
    if (shown[d.job] === key) return;
    shown[d.job] = key;
    const dd = card.querySelector(".stats dd");
    log.cards.push({t: Date.now(), job: d.job, status: d.status, version: Number(d.version),
                    tokens: dd ? Number(dd.textContent) : null});
  });
  new MutationObserver(record).observe(document, {childList: true, subtree: true});
})();
"""

# Everything one card shows, read in one go so the values belong to the same render.
READ_CARDS = """
() => Array.from(document.querySelectorAll(".card[data-job]")).map((card) => {
  const stat = (name) => {
    const dt = Array.from(card.querySelectorAll(".stats dt")).find((d) => d.textContent.trim() === name);
    return dt ? dt.nextElementSibling.textContent.trim() : null;
  };
  const badge = card.querySelector(".badge");
  return {
    job: card.dataset.job, status: card.dataset.status, phase: card.dataset.phase,
    headline: card.querySelector(".headline").textContent.trim(),
    title: card.querySelector(".card-title").textContent,
    tokens: stat("Tokens"), speed: stat("Speed"), elapsed: stat("Elapsed"), remaining: stat("Remaining"),
    badge: badge ? badge.textContent.replace(/\\s+/g, " ").trim() : null,
    polls: card.hasAttribute("hx-trigger"),
  };
})
"""


def unavailable(message):
    """Skip, or fail when the browser tests are required (CI sets REQUIRE_BROWSER=1)."""
    if REQUIRE_BROWSER:
        pytest.fail(f"{message} (REQUIRE_BROWSER=1, so the browser tests must run)", pytrace=False)
    pytest.skip(message)


def chromium_executable():
    path = shutil.which("chromium")
    if not path:
        unavailable("Debian's Chromium is not installed (no `chromium` on PATH): apt-get install chromium")
    return path


def nginx_executable():
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if not path:
        unavailable("nginx is not installed (no `nginx` on PATH or /usr/sbin): apt-get install nginx-light")
    return path


def launch_browser():
    """(playwright, browser): Debian's Chromium, headless. Never downloads a browser."""
    executable = chromium_executable()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright for Python is not installed (pip install -r requirements-dev.txt)")
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
    except Exception as error:
        playwright.stop()
        unavailable(f"Chromium at {executable} did not start under Playwright: {error}")
    return playwright, browser


class Artifacts:
    """test-output/browser/<test name>/: screenshots named by state, and a network log."""

    def __init__(self, name):
        self.dir = OUTPUT / re.sub(r"[^A-Za-z0-9_.\-\[\]]+", "_", name)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.shots = []

    def screenshot(self, page, state):
        path = self.dir / f"{len(self.shots) + 1:02d}-{state}.png"
        page.screenshot(path=str(path), full_page=True)
        self.shots.append(path)
        return path

    def write(self, name, text):
        (self.dir / name).write_text(text)


class NetworkLog:
    """Every request a page makes, with wall-clock times (ms since the epoch, Chrome's clock)
    and Python's monotonic receive times, written out as network.log for evidence."""

    def __init__(self, page):
        self.entries = []
        self.page_errors = []
        self.console = []
        self.dialogs = []
        self._by_request = {}
        page.on("request", self._request)
        page.on("response", self._response)
        page.on("requestfinished", self._finished)
        page.on("requestfailed", self._failed)
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"))

    def _request(self, request):
        entry = {"method": request.method, "url": request.url, "type": request.resource_type,
                 "sent": time.time() * 1000, "status": None, "headers_at": None, "done_at": None,
                 "failure": None}
        self._by_request[id(request)] = entry
        self.entries.append(entry)

    def _response(self, response):
        entry = self._by_request.get(id(response.request))
        if entry is not None:
            entry["status"] = response.status
            entry["headers_at"] = time.time() * 1000

    def _finished(self, request):
        entry = self._by_request.get(id(request))
        if entry is not None:
            entry["done_at"] = time.time() * 1000

    def _failed(self, request):
        entry = self._by_request.get(id(request))
        if entry is not None:
            entry["failure"] = request.failure
            entry["done_at"] = time.time() * 1000

    def matching(self, pattern):
        return [e for e in self.entries if pattern.search(e["url"].split("#")[0])]

    def card_polls(self):
        return [e for e in self.entries if e["method"] == "GET" and CARD_POLL.search(e["url"].split("?")[0])]

    def streams(self):
        return self.matching(STREAM)

    def render(self):
        start = self.entries[0]["sent"] if self.entries else 0
        lines = []
        for e in self.entries:
            def rel(value):
                return "-" if value is None else f"{(value - start) / 1000:8.3f}"
            lines.append(f"{rel(e['sent'])} {rel(e['headers_at'])} {rel(e['done_at'])} "
                         f"{e['status'] or '---'} {e['method']:4} {e['type']:12} {e['url']}"
                         + (f"  FAILED: {e['failure']}" if e["failure"] else ""))
        head = "sent(s) headers(s) done(s) status method type url  (times from the first request)\n"
        extra = ""
        if self.page_errors:
            extra += "\npage errors:\n" + "\n".join(self.page_errors) + "\n"
        if self.console:
            extra += "\nconsole:\n" + "\n".join(self.console) + "\n"
        if self.dialogs:
            extra += "\ndialogs:\n" + "\n".join(self.dialogs) + "\n"
        return head + "\n".join(lines) + "\n" + extra


def card_regressions(history):
    """Entries of a probe's card history that show an older state of a job than it showed before."""
    newest, back = {}, []
    for entry in history:
        before = newest.get(entry["job"])
        if before is not None and entry["version"] < before["version"]:
            back.append({"was": before, "then": entry})
        if before is None or entry["version"] > before["version"]:
            newest[entry["job"]] = entry
    return back


def render_history(history):
    start = history[0]["t"] if history else 0
    return "\n".join(f"{(e['t'] - start) / 1000:8.3f} {e['job'][:8]} v{e['version']:<4} {e['status']:<10} "
                     f"tokens {e['tokens']}" for e in history)


class Probe(NamedTuple):
    """A script that open_page(probe=True) runs in every page before the page's own scripts, and
    the log of what it recorded, written at teardown as <log>.log: render(page) -> text, or None
    for no file."""
    script: str
    log: str
    render: Callable


def cards_log(page):
    history = page.evaluate("window.__probe ? window.__probe.cards : []")
    if history:
        return "what the page's cards showed (s, job, version, status)\n" + render_history(history) + "\n"
    return None


CARDS_PROBE = Probe(PAGE_PROBE, "cards", cards_log)


def read_cards(page):
    return page.evaluate(READ_CARDS)


def read_card(page, job_id=None):
    cards = read_cards(page)
    for card in cards:
        if job_id is None or card["job"] == job_id:
            return card
    return None


def wait_for_cards(page, predicate, timeout=30.0, interval=0.05, what="the cards"):
    """Poll the page (pumping Playwright's events) until predicate(cards) holds; the cards."""
    deadline = time.monotonic() + timeout
    cards = []
    while time.monotonic() < deadline:
        try:
            cards = read_cards(page)
        except Exception as error:  # a navigation (meta refresh) destroyed the context: read again
            if "context was destroyed" not in str(error) and "navigat" not in str(error):
                raise
            cards = []
        if cards and predicate(cards):
            return cards
        page.wait_for_timeout(interval * 1000)
    raise AssertionError(f"{what} did not reach the expected state in {timeout} s; last seen: {cards}")


def tokens(card):
    return int(card["tokens"]) if card and card["tokens"] not in (None, "") else None


class Nginx:
    """A real nginx (non-daemon, single process) in front of `upstream`, with the config from
    nginx_buffering.conf.template written under `directory` (see its notes on what buffers)."""

    def __init__(self, directory, upstream_port, upstream_http="1.1", gzip="off"):
        self.executable = nginx_executable()
        self.dir = Path(directory)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        for sub in ("client_body", "proxy"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        config = NGINX_TEMPLATE.read_text()
        for name, value in {"DIR": str(self.dir), "PORT": str(self.port),
                            "UPSTREAM": f"127.0.0.1:{upstream_port}", "UPSTREAM_HTTP": upstream_http,
                            "GZIP": gzip}.items():
            config = config.replace(f"@{name}@", value)
        self.config = self.dir / "nginx.conf"
        self.config.write_text(config)
        self.log = open(self.dir / "stdout.log", "w")
        # -e: the compiled-in error log path is opened before the config is read.
        self.proc = subprocess.Popen([self.executable, "-p", str(self.dir), "-e", str(self.dir / "error.log"),
                                      "-c", str(self.config)], stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_until_up()

    def _wait_until_up(self, seconds=10):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited ({self.proc.returncode}):\n{self.errors()}")
            try:
                requests.get(self.url + "/", timeout=2)
                return
            except requests.RequestException:
                time.sleep(0.05)
        raise RuntimeError("nginx did not come up:\n" + self.errors())

    def errors(self):
        text = ""
        for name in ("stdout.log", "error.log"):
            path = self.dir / name
            if path.exists():
                text += path.read_text()[-4000:]
        return text

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# --- jobs that belong to a page's browser ------------------------------------------------------------
def _csrf(page, base_url):
    """The page's browser context's CSRF token (its session is made on this first visit if need be)."""
    html = page.request.get(base_url + "/").text()
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def browser_job(page, base_url, prompt="Explain server-sent events", num_predict=60):
    """A job made as the form makes it, by the page's browser context: its session owns the job,
    so `/` lists it and its card offers Cancel. Returns the job id."""
    response = page.request.post(base_url + "/jobs", max_redirects=0, form={
        "prompt": prompt, "num_predict": str(num_predict), "csrf_token": _csrf(page, base_url)})
    assert response.status == 303, response.text()
    return response.headers["location"].rsplit("/", 1)[1]


def browser_cancel(page, base_url, job_id):
    """Cancel a job as its owner's browser does (the form's POST, with the CSRF token)."""
    response = page.request.post(f"{base_url}/jobs/{job_id}/cancel", max_redirects=0,
                                 form={"csrf_token": _csrf(page, base_url)})
    assert response.status == 303, response.text()


def page_wait_until(page, condition, timeout, what):
    """Poll `condition()` (pumping Playwright's events) until it is truthy; its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        page.wait_for_timeout(50)
    raise AssertionError(f"{what} did not happen in {timeout} s")
