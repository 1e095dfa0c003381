"""The HTML routes without a browser: form posts, CSRF, the card's polling contract, headers."""
import re
from datetime import datetime
from html import escape

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from webapp import queue, ratelimits
from webapp.extensions import db
from webapp.models import Job
from webapp.web import pages

from helpers import both_backends, row


def csrf_token(client):
    page = client.get("/").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_form_post_redirects_to_the_job_page(client):
    response = client.post("/jobs", data={"prompt": "Hello", "csrf_token": csrf_token(client)})
    assert response.status_code == 303 and response.headers["Location"].startswith("/jobs/")


def test_a_database_fault_after_the_forms_job_was_made_sends_the_browser_to_it(client, monkeypatch):
    """A 503 would have the person submit it again: the job exists, so htmx goes to its page."""
    token = csrf_token(client)

    def fault():
        raise OperationalError("SELECT", {}, Exception("Lost connection to MySQL server during query"))

    monkeypatch.setattr(pages, "recent_cards", fault)
    response = client.post("/jobs", data={"prompt": "Made once", "csrf_token": token}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    job_id = response.headers["HX-Redirect"].rsplit("/", 1)[1]
    assert row(job_id).prompt == "Made once"


def test_form_without_its_csrf_token_is_refused(client):
    csrf_token(client)
    response = client.post("/jobs", data={"prompt": "Hello"})
    assert response.status_code == 400 and b"reload the page" in response.data


@pytest.mark.parametrize(("htmx", "status"), [(True, 200), (False, 400)])
def test_form_errors_are_shown_with_and_without_htmx(client, htmx, status):
    headers = {"HX-Request": "true"} if htmx else {}
    response = client.post("/jobs", data={"prompt": "Hi", "model": "no spaces", "csrf_token": csrf_token(client)},
                           headers=headers)
    assert response.status_code == status  # htmx swaps 2xx only
    assert b"must be an Ollama model name" in response.data


@both_backends
def test_the_form_over_the_rate_limit_is_429_with_retry_after_and_the_apis_message(app, client, monkeypatch):
    app.config["RATE_LIMIT_PER_MINUTE"] = 1
    # A fixed clock, 20 s into its minute: every hit counts in the same window and waits 40 s.
    monkeypatch.setattr(ratelimits, "utcnow", lambda: datetime(2030, 1, 1, 12, 0, 20))
    token = csrf_token(client)
    first = client.post("/jobs", data={"prompt": "Hello", "csrf_token": token})
    second = client.post("/jobs", data={"prompt": "Hello again", "csrf_token": token})
    api = client.post("/api/v1/ai/generation", json={"prompt": "Hello"})  # the same address: counted too

    assert first.status_code == 303
    assert (second.status_code, api.status_code) == (429, 429)
    assert second.headers["Retry-After"] == api.headers["Retry-After"] == "40"
    message = api.get_json()["error"]
    assert message == "Too many new jobs; try again in 40 s."
    assert second.mimetype == "text/html" and escape(message) in second.get_data(as_text=True)
    assert db.session.scalars(sa.select(Job.prompt)).all() == ["Hello"]  # refused ones made no job


def test_card_polls_while_running_and_stops_with_286_once_ended(client):
    job = queue.enqueue(prompt="p", model="llama3.2")
    running = client.get(f"/jobs/{job.job_id}/card")
    assert running.status_code == 200 and b'hx-trigger="every 1s"' in running.data
    queue.request_cancel(job)
    ended = client.get(f"/jobs/{job.job_id}/card")
    assert ended.status_code == 286 and b"hx-trigger" not in ended.data


def test_pages_forbid_inline_script(client):
    policy = client.get("/").headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]


def test_the_session_cookie_is_httponly_samesite_lax_and_secure_over_https(client):
    plain = client.get("/").headers.get("Set-Cookie", "")
    assert "HttpOnly" in plain and "SameSite=Lax" in plain and "Secure" not in plain, plain
    client.delete_cookie("session")
    secure = client.get("/", base_url="https://localhost").headers.get("Set-Cookie", "")
    assert "Secure" in secure and "SameSite=Lax" in secure, secure
