"""The browser tests' fixtures, shared by the browser test modules, which load this file as a
pytest plugin (`pytest_plugins = ["browser_fixtures"]`). A plugin rather than imported names, so
that a module can override one fixture (`web_env`, `page_probes`) and the others use its version.

- browser: Debian's Chromium, headless, one per test module.
- nginx: nginx's path; skips (or fails under REQUIRE_BROWSER=1) before any server starts.
- artifacts: test-output/browser/<test name>/ for each test; test-output/browser/ is emptied once
  a run, when the first browser starts.
- web: the app under gunicorn (gevent), one per test, with `web_env` (WEB_ENV unless overridden).
- open_page: pages that record their requests and the `page_probes`, saved at teardown.
"""
import contextlib
import shutil

import pytest

from browser_support import CARDS_PROBE, OUTPUT, WEB_ENV, Artifacts, NetworkLog, launch_browser, nginx_executable
from servers import Gunicorn


@pytest.fixture(scope="module")
def browser(request):
    playwright, browser = launch_browser()
    request.getfixturevalue("browser_output")  # once Chromium runs: a run that skips keeps the old output
    yield browser
    browser.close()
    playwright.stop()


@pytest.fixture(scope="module")
def nginx():
    """nginx's path; skips (or fails under REQUIRE_BROWSER=1) before any server starts."""
    return nginx_executable()


@pytest.fixture(scope="session")
def browser_output():
    """test-output/browser/, emptied once a run, when the first `browser` starts: this run's output only."""
    shutil.rmtree(OUTPUT, ignore_errors=True)
    return OUTPUT


@pytest.fixture
def artifacts(request, browser):  # after the browser, so after browser_output emptied the folder
    return Artifacts(request.node.name)


@pytest.fixture
def web_env():
    """The environment `web` starts gunicorn with, on top of the test settings."""
    return WEB_ENV


@pytest.fixture
def web(browser, database_url, web_env):  # the browser first: without one, skip before starting servers
    with Gunicorn(database_url, **web_env) as server:
        yield server


@pytest.fixture
def page_probes():
    """What open_page(probe=True) records in every page, and writes out at teardown."""
    return [CARDS_PROBE]


@pytest.fixture
def open_page(browser, artifacts, page_probes):
    """open_page(probe=True, **context options) -> (page, network log). Each page records its
    requests, errors and dialogs (dismissed), and (with probe) what the `page_probes` record; at
    teardown a `final` screenshot, network.log and each probe's log are saved."""
    opened = []

    def open_(probe=True, **options):
        context = browser.new_context(viewport={"width": 1000, "height": 900}, **options)
        page = context.new_page()
        page.set_default_timeout(15_000)
        net = NetworkLog(page)

        def on_dialog(dialog):
            net.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        page.on("dialog", on_dialog)
        if probe:
            for page_probe in page_probes:
                page.add_init_script(page_probe.script)
        opened.append((context, page, net))
        return page, net

    yield open_
    for number, (context, page, net) in enumerate(opened, 1):
        suffix = "" if len(opened) == 1 else f"-{number}"
        with contextlib.suppress(Exception):  # the page may be gone; the logs still matter
            artifacts.screenshot(page, "final" + suffix)
        artifacts.write(f"network{suffix}.log", net.render())
        for page_probe in page_probes:
            with contextlib.suppress(Exception):
                text = page_probe.render(page)
                if text:
                    artifacts.write(f"{page_probe.log}{suffix}.log", text)
        context.close()
