"""A completed job's Markdown result in a real browser (Debian's Chromium through Playwright, the
app under gunicorn): XSS payloads in a model's output render as inert text, links are safe.

The page is opened with the Content-Security-Policy bypassed: the CSP alone would stop inline
handlers and javascript: URLs, and this test is about the rendered markup being harmless without it.
Screenshots and a network log go to test-output/browser/<test name>/.
"""
import contextlib

import pytest

from webapp import queue, statuses

from browser_support import NetworkLog

pytestmark = pytest.mark.browser
pytest_plugins = ["browser_fixtures"]  # browser, artifacts, web

# The brief's payloads, each in a paragraph of its own, plus two that go further.
PAYLOADS = [
    "[x](javascript:alert(1))",
    "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script>",
    '<a href="#" onclick="alert(1)">click</a>',
    "<svg onload=alert(2)>",
]
RESULT = ("# Payloads\n\n" + "\n\n".join(PAYLOADS) + "\n\n"
          "A [tab-hidden one](jav&#x09;ascript:alert(3)) and ![an image](https://example.com/pixel.png).\n\n"
          "A [safe link](https://example.com) and [ok](https://example.com).\n")

# Everything in the rendered result that could run or fetch, read in one go.
INSPECT = """
(root) => {
  const all = [root, ...root.querySelectorAll("*")];
  return {
    handlers: all.flatMap((el) => Array.from(el.attributes).filter((a) => /^on/i.test(a.name))
                                      .map((a) => `${el.tagName}.${a.name}`)),
    scripts: root.querySelectorAll("script").length,
    imgs: root.querySelectorAll("img, svg, iframe, object, embed").length,
    links: Array.from(root.querySelectorAll("a")).map((a) => ({
      href: a.getAttribute("href"), resolved: a.href, rel: a.getAttribute("rel"), text: a.textContent})),
    inlineScripts: Array.from(document.scripts).filter((s) => !s.src).length,
  };
}
"""


@pytest.fixture
def web_env():
    """gunicorn with the app's own settings, not WEB_ENV: the job has ended before the page opens."""
    return {}


def completed_job(result):
    """A job taken through the queue as a worker would: enqueued, claimed, finished."""
    job = queue.enqueue(prompt="Show me some Markdown", model="llama3.2")
    claimed = queue.claim("w-markdown", 30)
    assert claimed is not None and claimed.id == job.id
    assert queue.finish(job.id, "w-markdown", statuses.COMPLETED, result=result,
                         current_tokens=42, prompt_tokens=8, completion_tokens=42, total_tokens=50)
    return job.job_id


def only_local(web, blocked):
    """A route handler: the app's own requests go through; anything else is recorded and aborted."""
    def handle(route):
        if route.request.url.startswith(web.url + "/"):
            route.continue_()
        else:
            blocked.append((route.request.resource_type, route.request.url))
            route.abort()
    return handle


def test_markdown_payloads_render_inert(web, app, browser, artifacts):
    job_url = f"{web.url}/jobs/{completed_job(RESULT)}"
    context = browser.new_context(viewport={"width": 1000, "height": 1100}, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    net = NetworkLog(page)
    dialogs, blocked = [], []

    def on_dialog(dialog):
        dialogs.append(f"{dialog.type}: {dialog.message}")
        net.dialogs.append(dialogs[-1])
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.route("**/*", only_local(web, blocked))
    try:
        page.goto(job_url)
        markdown = page.locator("#result-markdown")
        assert "markdown" in markdown.get_attribute("class").split()
        artifacts.screenshot(page, "rendered")

        found = markdown.evaluate(INSPECT)
        assert found["handlers"] == [], found
        assert found["scripts"] == 0 and found["imgs"] == 0 and found["inlineScripts"] == 0, found
        assert not [link for link in found["links"]
                    if link["resolved"].lower().startswith(("javascript:", "data:", "vbscript:"))], found
        safe = [link for link in found["links"] if link["href"] == "https://example.com"]
        assert [link["text"] for link in safe] == ["safe link", "ok"], found
        for link in safe:
            assert {"noopener", "nofollow"} <= set(link["rel"].split()), link
        image = [link for link in found["links"] if link["text"] == "an image"]
        assert [link["href"] for link in image] == ["https://example.com/pixel.png"], "an image becomes a link"

        shown = markdown.inner_text()
        for payload in PAYLOADS:
            assert payload in shown, f"{payload!r} is not shown as text:\n{shown}"
        assert page.locator("details.raw #result-text").text_content() == RESULT, "the raw text is kept as is"

        # Click every link, and every payload shown as text; no link may take the page anywhere but
        # the app itself or the (blocked) outside world.
        for index in range(len(found["links"])):
            if page.url != job_url:
                page.goto(job_url)
            page.locator("#result-markdown a").nth(index).click()
            page.wait_for_timeout(300)
        page.goto(job_url)
        for payload in PAYLOADS:
            page.locator("#result-markdown").get_by_text(payload, exact=False).first.click()
        page.wait_for_timeout(500)  # give any injected handler the chance to fire
        artifacts.screenshot(page, "after-clicks")

        assert dialogs == [], dialogs
        assert ("document", "https://example.com/") in blocked, f"the safe link was followed: {blocked}"
        assert not [url for kind, url in blocked if kind != "document"], f"fetched unasked: {blocked}"
        assert not [e for e in net.entries if e["url"].split("?")[0].endswith("/x")], "the raw img was loaded"
        assert page.url == job_url
    finally:
        with contextlib.suppress(Exception):
            artifacts.screenshot(page, "final")
        artifacts.write("network.log", net.render() + "\nblocked:\n" + "\n".join(map(str, blocked)) + "\n")
        context.close()
