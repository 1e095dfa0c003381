"""CORS for the embeddable card: the card's GET routes answer CORS_ORIGINS' pages, and nothing else
is opened; a page on another origin still changes nothing."""
import json

import pytest

from webapp import owners, queue
from webapp.snapshots import HOLD_SHARE
from webapp.web.pages import SSE_FRESH_MS
from webapp.web.templating import SOON_MS, STALLED_AFTER_MS

from helpers import row

HOST = "https://app.example"
API = "/api/v1/ai/generation"
CARD_ROUTES = ["/jobs/{}/card", "/jobs/stream?jobs={}", API + "/{}/status", "/static/app.css", "/static/embed.js"]
OTHER_ROUTES = ["/", "/jobs/{}", "/jobs/{}/result", "/jobs/{}/output", API + "/{}/progress",
                API + "/{}/progress?include=output", API, "/static/app.js", "/batches", "/no/such/route"]


@pytest.fixture
def job_id(app):
    app.config["CORS_ORIGINS"] = frozenset({HOST, "http://localhost:8000"})
    return queue.enqueue(prompt="embed me", model="llama3.2").job_id


def get(client, path, origin=HOST, **headers):
    """The answer's headers (a stream is closed after its first frame)."""
    response = client.get(path, headers={"Origin": origin, **headers}, buffered=False)
    try:
        return response.status_code, response.headers
    finally:
        response.close()


@pytest.mark.parametrize("path", CARD_ROUTES)
def test_an_allowed_origin_may_read_each_of_the_cards_routes(client, job_id, path):
    status, headers = get(client, path.format(job_id))
    assert status in (200, 286)
    assert headers["Access-Control-Allow-Origin"] == HOST
    assert "Origin" in headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in headers  # never as the visitor's session
    assert headers["Access-Control-Expose-Headers"] == "X-Livegen-Timing"


def test_origins_are_compared_as_browsers_send_them(client, job_id):
    _, headers = get(client, f"/jobs/{job_id}/card", origin="http://localhost:8000")
    assert headers["Access-Control-Allow-Origin"] == "http://localhost:8000"
    for near in ("http://localhost:8001", "https://app.example.evil", "http://app.example", "null"):
        _, headers = get(client, f"/jobs/{job_id}/card", origin=near)
        assert "Access-Control-Allow-Origin" not in headers, near


@pytest.mark.parametrize("path", CARD_ROUTES)
def test_another_origin_gets_no_cors_headers(client, job_id, path):
    _, headers = get(client, path.format(job_id), origin="https://other.example")
    assert "Access-Control-Allow-Origin" not in headers and "Access-Control-Expose-Headers" not in headers
    assert "Origin" in headers["Vary"]  # a cache keeps the allowed origin's answer apart


@pytest.mark.parametrize("path", OTHER_ROUTES)
def test_no_other_route_is_opened(client, job_id, path):
    _, headers = get(client, path.format(job_id))
    assert not [name for name, _ in headers.items() if name.startswith("Access-Control-")], path


def test_a_cards_404_is_readable_so_the_card_can_say_so(client, job_id):
    status, headers = get(client, "/jobs/no-such-job/card")
    assert status == 404 and headers["Access-Control-Allow-Origin"] == HOST


def test_private_jobs_stay_private_across_origins(client, app, job_id):
    app.config["PRIVATE_JOBS"] = True
    someones = queue.enqueue(prompt="mine", model="llama3.2", owner=owners.browser("someone")).job_id
    for path in ("/jobs/{}/card", API + "/{}/status"):
        status, headers = get(client, path.format(someones))
        assert status == 404 and headers["Access-Control-Allow-Origin"] == HOST  # the usual 404, readable


def test_a_preflight_is_refused_nothing_needs_one(client, job_id):
    response = client.options(f"/jobs/{job_id}/card", headers={
        "Origin": HOST, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "x-custom"})
    assert response.status_code == 405 and "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize("path", [API, API + "/{}/cancel", "/jobs", "/jobs/{}/cancel"])
def test_an_allowed_origin_still_changes_nothing(client, job_id, path):
    response = client.post(path.format(job_id), json={"prompt": "from elsewhere"},
                           headers={"Origin": HOST, "Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 403 and "Access-Control-Allow-Origin" not in response.headers
    assert row(job_id).status == "queued" and len(queue.recent(row(job_id).owner, 10)) == 1


def test_a_wildcard_opens_the_cards_routes_to_every_origin_and_only_them(client, app, job_id):
    app.config["CORS_ORIGINS"] = frozenset({"*"})
    assert get(client, f"/jobs/{job_id}/card", origin="https://anyone.example")[1]["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Origin" not in get(client, f"/jobs/{job_id}")[1]


def test_without_cors_origins_nothing_is_opened(client, app, job_id):
    app.config["CORS_ORIGINS"] = frozenset()
    for path in CARD_ROUTES:
        _, headers = get(client, path.format(job_id))
        assert "Access-Control-Allow-Origin" not in headers and "Origin" not in headers.get("Vary", ""), path


def test_the_card_carries_the_timings_our_pages_read_from_their_html(client, job_id):
    _, headers = get(client, f"/jobs/{job_id}/card")
    assert json.loads(headers["X-Livegen-Timing"]) == {
        "sse_fresh_ms": SSE_FRESH_MS, "stalled_after_ms": STALLED_AFTER_MS, "soon_ms": SOON_MS,
        "hold_share": HOLD_SHARE}
    page = client.get("/").get_data(as_text=True)
    assert f'data-sse-fresh-ms="{SSE_FRESH_MS}"' in page and f'data-hold-share="{HOLD_SHARE}"' in page
