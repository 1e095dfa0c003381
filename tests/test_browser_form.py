"""The prompt form in a real browser (Debian's Chromium through Playwright): a prompt is never
lost, even when the next one is sent while the first request is still on its way."""
import pytest
import sqlalchemy as sa

from browser_support import wait_for_cards

pytestmark = pytest.mark.browser
pytest_plugins = ["browser_fixtures"]  # browser, nginx, artifacts, web, open_page


def prompts_in(database_url):
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return [p for (p,) in conn.execute(sa.text("SELECT prompt FROM ai_generation_jobs ORDER BY id"))]
    finally:
        engine.dispose()


def test_two_prompts_sent_200_ms_apart_both_become_jobs_and_the_form_ends_empty(web, open_page, artifacts,
                                                                                 database_url):
    page, net = open_page()
    held = []

    def hold_the_first_create(route):  # released below, once the second prompt has been sent
        if route.request.method == "POST" and not held:
            held.append(route)
        else:
            route.continue_()

    page.route("**/jobs", hold_the_first_create)
    page.goto(web.url + "/")
    page.fill("#prompt", "First: why is the sky blue?")
    page.click("form.compose-form button[type=submit]")
    page.wait_for_timeout(200)
    assert held, "the first create is on its way"
    assert page.input_value("#prompt") == "", "the sent prompt is cleared at once, ready for the next"
    page.fill("#prompt", "Second: why is the sea salty?")
    page.click("form.compose-form button[type=submit]")
    page.wait_for_timeout(100)
    held[0].continue_()
    wait_for_cards(page, lambda cards: len(cards) == 2, timeout=15)
    artifacts.screenshot(page, "two-jobs")
    assert prompts_in(database_url) == ["First: why is the sky blue?", "Second: why is the sea salty?"]
    assert page.input_value("#prompt") == "", "the form ends empty"
    assert not net.page_errors, net.page_errors


def test_a_prompt_whose_request_failed_comes_back(web, open_page, artifacts, database_url):
    page, net = open_page()
    page.route("**/jobs", lambda route: route.abort() if route.request.method == "POST" else route.continue_())
    page.goto(web.url + "/")
    page.fill("#prompt", "Do not lose me")
    page.click("form.compose-form button[type=submit]")
    page.wait_for_function("() => document.getElementById('prompt').value === 'Do not lose me'", timeout=5_000)
    assert prompts_in(database_url) == []
