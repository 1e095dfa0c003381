"""The operator's page in a real browser (Debian's Chromium through Playwright) against real
processes: gunicorn with the gevent worker, `python worker.py` and the Ollama simulator. An
operator signs in with a key, sees the queue, the running jobs with their leases, real failures and
the per-model charts (inline SVG, drawn at a real size, under the page's CSP), light and dark; the
panel polls; signing out, and revoking the key, each bring back the sign-in form.

Screenshots go to test-output/browser/<test name>/. With UPDATE_DOC_IMAGES=1 three of them are
also copied to docs/img/ (admin-light.png, admin-dark.png, admin-sign-in.png), the images
docs/admin.md shows; without it a run leaves the git tree alone. Without Chromium these tests
skip, or fail under REQUIRE_BROWSER=1 (CI), as every browser test does.
"""
import os
import random
import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from conftest import make_app

from simulator import Simulator
from webapp.estimates import prompt_kind
from webapp.extensions import db
from webapp.models import Job, utcnow
from webapp.owners import keys

from browser_support import Probe, page_wait_until
from servers import ROOT, WorkerProcess

pytestmark = pytest.mark.browser
pytest_plugins = ["browser_fixtures"]  # browser, artifacts, web, open_page

API = "/api/v1/ai/generation"
DOCS_IMG = Path(ROOT) / "docs" / "img"
UPDATE_DOC_IMAGES = os.environ.get("UPDATE_DOC_IMAGES") == "1"  # refresh docs/img/ (see the docstring)
WIDE = {"width": 1280, "height": 900}
PANEL = re.compile(r"/admin/panel$")

# Runs before the page's own scripts: every Content-Security-Policy violation the page causes.
CSP_SCRIPT = """
(() => {
  const seen = window.__csp = [];
  document.addEventListener("securitypolicyviolation", (e) =>
    seen.push(e.violatedDirective + " " + e.blockedURI + " " + (e.sample || "")));
})();
"""
CSP_PROBE = Probe(CSP_SCRIPT, "csp", lambda page: "\n".join(page.evaluate("window.__csp || []")) or None)
# Each chart's drawn size, and its bars'.
CHART_SIZES = """() => Array.from(document.querySelectorAll("svg.chart")).map((svg) => {
  const box = svg.getBoundingClientRect();
  return {kind: svg.getAttribute("class"), width: box.width, height: box.height,
          bars: Array.from(svg.querySelectorAll("rect.chart-bar")).map((r) => r.getBoundingClientRect().height)};
})"""
FAILURES = ("unknown_model", "bad_request")  # the simulator's faults that fail a job at once


@pytest.fixture
def page_probes():
    return [CSP_PROBE]


def seed_history(database_url):
    """Keys, and the history a server builds up: two models' completed runs (lengths, speeds,
    cold and warm loads, some cut by num_predict) from the last hours. Returns the keys' secrets."""
    app = make_app(database_url)
    with app.app_context():
        operators = ("ops", "oncall")  # with ops revoked, oncall's key still opens the page
        secrets = {name: keys.create(name, admin=name in operators) for name in (*operators, "alice", "bob")}
        rnd, now = random.Random(14), utcnow()
        for model, runs, speed, length in (("llama3.2", 80, 42.0, 5.2), ("qwen2.5:7b", 45, 17.0, 6.0)):
            for i in range(runs):
                db.session.add(completed_run(rnd, now - timedelta(minutes=3 * (runs - i)), model, speed, length))
        db.session.commit()
        db.engine.dispose()
    return secrets


def completed_run(rnd, ended, model, speed, length):
    cold = rnd.random() < 0.12
    tokens, cut = int(rnd.lognormvariate(length, 0.55)) + 5, rnd.random() < 0.1
    tokens = min(tokens, 256) if cut else tokens
    rate = rnd.gauss(speed, speed * 0.025) * (0.92 if cold else 1.0)
    took = timedelta(seconds=tokens / rate)
    return Job(prompt="Explain this", prompt_kind=prompt_kind("Explain this"), model=model, status="completed",
               owner=rnd.choice(["anonymous", "token"]), completion_tokens=tokens, current_tokens=tokens,
               tokens_per_second=rate, done_reason="length" if cut else "stop", cold_start=cold,
               load_ms=int(rnd.gauss(2600, 300) if cold else rnd.gauss(30, 8)), prompt_eval_ms=40, prompt_tokens=30,
               created_at=ended - took, started_at=ended - took, completed_at=ended, last_update_at=ended,
               progress_percentage=100.0)


def create(web, secret, prompt, num_predict):
    response = requests.post(web.url + API, json={"prompt": prompt, "options": {"num_predict": num_predict}},
                             headers={"Authorization": f"Bearer {secret}"}, timeout=10)
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def status(web, secret, job_id):
    response = requests.get(f"{web.url}{API}/{job_id}/status", headers={"Authorization": f"Bearer {secret}"},
                            timeout=10)
    return response.json()["job"]["status"]


def fail_two_jobs(web, sim, secret, page):
    """Real failures, by the simulator's faults: a model Ollama does not have, a refused request."""
    for fault in FAILURES:
        sim.set_fault(fault, times=1)
        job_id = create(web, secret, f"A job that meets '{fault}'", 20)
        page_wait_until(page, lambda job_id=job_id: status(web, secret, job_id) == "failed", 20, f"{fault} to fail")


def sign_in(page, web, secret, artifacts):
    page.goto(web.url + "/admin")
    assert page.locator("form.sign-in-form").is_visible()
    save_for_docs(artifacts.screenshot(page, "sign-in"), "admin-sign-in.png")
    page.fill("#key", secret)
    page.click("form.sign-in-form button[type=submit]")
    page.wait_for_selector("#admin-panel")


def assert_charts_drawn(page):
    charts = page.evaluate(CHART_SIZES)
    assert len(charts) == 6, charts  # two models, three charts each
    for chart in charts:
        assert chart["width"] > 150 and chart["height"] > 40, chart
    histograms = [c for c in charts if "histogram" in c["kind"]]
    assert all(max(c["bars"]) > 20 for c in histograms), histograms  # the tallest bar is drawn tall


def assert_clean(page, net):
    assert page.evaluate("window.__csp") == [], page.evaluate("window.__csp")
    assert not net.page_errors, net.page_errors
    # The sign-in page itself is a 401, which Chromium logs as a failed load: the only error allowed.
    errors = [line for line in net.console if line.startswith("error") and "status of 401" not in line]
    assert not errors and not [line for line in net.console if "Content Security Policy" in line], net.console


def save_for_docs(path, name):
    """The screenshot at `path` becomes docs/img/<name>, only when UPDATE_DOC_IMAGES=1."""
    if UPDATE_DOC_IMAGES:
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS_IMG / name)


def test_an_operator_signs_in_and_sees_queue_workers_failures_and_charts_light_and_dark(
        web, open_page, artifacts, database_url):
    secrets = seed_history(database_url)
    page, net = open_page()
    page.set_viewport_size(WIDE)
    with Simulator(tokens_per_second=6.0, jitter=0.1) as sim, \
            WorkerProcess(database_url, sim.url, PROGRESS_INTERVAL="0.5", WORKER_CONCURRENCY="2") as worker:
        worker.wait_ready()
        fail_two_jobs(web, sim, secrets["alice"], page)
        for n in range(3):  # two run (the worker's slots), the rest wait their turn
            create(web, secrets["alice"], f"Write a long report, part {n + 1}", 600)
            create(web, secrets["bob"], f"Summarise chapter {n + 1}", 600)

        sign_in(page, web, secrets["ops"], artifacts)
        page.wait_for_selector("table.worker tbody tr")
        page_wait_until(page, lambda: page.locator("table.worker tbody tr").count() == 2, 15, "two running jobs")
        assert page.locator(".queued-count").inner_text() == "4"
        assert page.locator("table.next-in-line tbody tr").count() == 4
        assert "ops" in page.locator(".admin-head").inner_text()
        assert page.locator("table.failures tbody tr").count() == 2
        assert page.locator("table.failures .message").first.inner_text()
        assert_charts_drawn(page)
        # The panel polls: a fresh one arrives and is swapped in, still signed in.
        page_wait_until(page, lambda: any(e["status"] == 200 for e in net.matching(PANEL)), 15, "a panel poll")
        page.wait_for_timeout(300)
        assert_charts_drawn(page)
        assert_clean(page, net)
        save_for_docs(artifacts.screenshot(page, "admin-light"), "admin-light.png")

        dark, dark_net = open_page(color_scheme="dark", storage_state=page.context.storage_state())
        dark.set_viewport_size(WIDE)
        dark.goto(web.url + "/admin")
        dark.wait_for_selector("#admin-panel")
        assert_charts_drawn(dark)
        assert colours(dark) == {"background": "rgb(19, 19, 22)", "bar": "rgb(111, 156, 255)"}
        assert colours(page) == {"background": "rgb(246, 246, 243)", "bar": "rgb(47, 111, 237)"}
        assert_clean(dark, dark_net)
        save_for_docs(artifacts.screenshot(dark, "admin-dark"), "admin-dark.png")

        page.click(".admin-head button[type=submit]")  # sign out
        page.wait_for_selector("form.sign-in-form")
        revoke(database_url, "ops")  # the dark page is still signed in: its next poll finds the key gone
        dark.wait_for_selector("form.sign-in-form", timeout=15_000)
        assert "no longer works" in dark.locator(".sign-in").inner_text()
        artifacts.screenshot(dark, "revoked")


def colours(page):
    """The page's background and a chart bar's fill, as the browser computed them."""
    return page.evaluate("""() => ({
        background: getComputedStyle(document.body).backgroundColor,
        bar: getComputedStyle(document.querySelector("svg.chart rect.chart-bar")).fill})""")


def revoke(database_url, name):
    app = make_app(database_url)
    with app.app_context():
        assert keys.revoke(name)
        db.engine.dispose()
