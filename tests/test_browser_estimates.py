"""The time left on a real page (Chromium): it counts down between updates, as elapsed time counts
up, and each update sets it again. No worker runs: the test writes the worker's figures itself,
so the only thing that moves the figure between writes is the page."""
import re

import pytest

from webapp import queue

from browser_support import page_wait_until

pytest_plugins = ["browser_fixtures"]
pytestmark = pytest.mark.browser
ABOUT = re.compile(r"about ([\d.]+) s")


@pytest.fixture
def web_env():
    """The app's own settings: no test-speed polling needed, the page is held on one card."""
    return {}


def running_job(left_ms):
    """A job taken as a worker takes it, with the worker's first write: `left_ms` to go."""
    job = queue.enqueue(prompt="Count the time left down", model="llama3.2")
    assert queue.claim("w-countdown", 600).id == job.id
    write(job.id, left_ms)
    return job


def write(job_pk, left_ms):
    """A progress write as the worker makes it, with the time left and its range."""
    assert queue.heartbeat(job_pk, "w-countdown", 600, phase="generating", current_tokens=40, progress_percentage=20.0,
                           tokens_per_second=20.0, estimated_time_remaining=left_ms,
                           estimated_time_remaining_low=left_ms // 2, estimated_time_remaining_high=left_ms * 2)


def seconds_left(page, job_id):
    found = ABOUT.search(page.locator(f"#card-{job_id} .remaining").text_content() or "")
    return float(found.group(1)) if found else None


def test_the_time_left_counts_down_between_updates_and_each_update_sets_it(web, app, open_page, artifacts):
    job = running_job(50_000)
    page, net = open_page()
    # While held, neither a poll nor the stream brings the card: only the page's clock runs.
    held, hold = [], {"on": True}
    page.route("**/jobs/stream*", lambda route: route.abort())
    page.route(f"**/jobs/{job.job_id}/card*", lambda route: held.append(route) if hold["on"] else route.continue_())
    page.goto(f"{web.url}/jobs/{job.job_id}")
    first = seconds_left(page, job.job_id)
    assert first is not None and 45 <= first <= 50, first
    range_text = page.locator(f"#card-{job.job_id} .range").text_content()
    page_wait_until(page, lambda: (seconds_left(page, job.job_id) or first) <= first - 1.0, 10,
                    "the time left to go down")
    assert page.locator(f"#card-{job.job_id} .range").text_content() != range_text  # the range counts too
    artifacts.screenshot(page, "counted-down")

    write(job.id, 8_000)  # the worker learns the job is nearly done: the next update says so
    hold["on"] = False
    for route in held:
        route.continue_()
    page_wait_until(page, lambda: (seconds_left(page, job.job_id) or 99) < 8.5, 10, "the update to set it")
    artifacts.screenshot(page, "set-by-the-update")
