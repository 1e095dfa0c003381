"""The JSON API as the contract states it, on SQLite and on MySQL."""
from datetime import timedelta

import pytest

from webapp import history, statuses
from webapp.extensions import db
from webapp.models import Job, utcnow
from webapp.web import events

from helpers import both_backends, row

API = "/api/v1/ai/generation"
STATUS_FIELDS = {"status", "progress", "current_tokens", "tokens_per_second", "elapsed_time",
                 "estimated_remaining", "prompt_tokens", "completion_tokens", "total_tokens",
                 "error_message", "prompt", "model", "created_at", "started_at", "completed_at"}


def create(client, body=None, **kwargs):
    return client.post(API, json=body if body is not None else {"prompt": "Hello"}, **kwargs)


@both_backends
def test_create_then_status_has_every_contract_field(client):
    response = create(client, {"prompt": "Tell me a story", "model": "qwen2.5:0.5b",
                               "options": {"num_predict": 64, "temperature": 0.2}})
    assert response.status_code == 202
    body = response.get_json()
    assert body["success"] is True and body["status"] == "queued"
    job_id = body["job_id"]
    assert response.headers["Location"] == f"{API}/{job_id}/status"
    assert body["links"] == {"status": f"{API}/{job_id}/status", "progress": f"{API}/{job_id}/progress",
                             "card": f"/jobs/{job_id}/card", "page": f"/jobs/{job_id}"}
    status = client.get(body["links"]["status"])
    assert status.status_code == 200
    job = status.get_json()["job"]
    assert set(job) >= STATUS_FIELDS
    assert job["status"] == "queued" and job["prompt"] == "Tell me a story"
    assert job["model"] == "qwen2.5:0.5b" and job["progress"] == 0 and job["queue_position"] == 1
    assert job["created_at"].endswith("Z") and job["started_at"] is None
    assert "result" not in job  # only a completed job carries its text
    assert row(job_id).options == {"num_predict": 64, "temperature": 0.2}


def finished_jobs(model, tokens, count=6):
    """Jobs this server finished earlier, as the worker leaves them: what estimates learn from."""
    now = utcnow()
    for n in range(count):
        db.session.add(Job(prompt=f"earlier {n}", model=model, status=statuses.COMPLETED, prompt_kind="plain:s:-",
                           completion_tokens=tokens, tokens_per_second=50.0, load_ms=100, cold_start=False,
                           prompt_eval_ms=5, prompt_tokens=10, done_reason="stop",
                           started_at=now - timedelta(seconds=2), completed_at=now))
    db.session.commit()
    history.forget()


@both_backends
def test_the_202_tells_the_wait_ahead_once_the_model_has_history(client):
    first = create(client, {"prompt": "Hello", "model": "llama3.2"}).get_json()
    assert first["queue_position"] == 1 and first["estimated_remaining"] is None  # nothing learned yet
    finished_jobs("llama3.2", tokens=100)
    second = create(client, {"prompt": "Hello again", "model": "llama3.2"}).get_json()
    assert second["queue_position"] == 2
    assert 0 < second["estimated_remaining_low"] <= second["estimated_remaining"] <= second["estimated_remaining_high"]
    status = client.get(second["links"]["status"]).get_json()["job"]
    assert [second[name] for name in events.SUBMIT_FIELDS] == [status[name] for name in events.SUBMIT_FIELDS]


@both_backends
def test_job_ids_are_long_random_and_url_safe(client):
    ids = {create(client).get_json()["job_id"] for _ in range(5)}
    assert len(ids) == 5
    for job_id in ids:
        assert len(job_id) >= 22 and job_id.replace("-", "").replace("_", "").isalnum()


@both_backends
def test_unknown_job_is_json_404(client):
    for path in ("/nope/status", "/nope/cancel"):
        response = client.get(API + path) if path.endswith("status") else client.post(API + path)
        assert response.status_code == 404
        assert response.get_json() == {"success": False, "error": "No job with id 'nope'."}


@both_backends  # MySQL's default collation would match 'aB' to 'Ab'; the column compares bytes
def test_job_id_lookup_is_case_sensitive(client):
    job_id = create(client).get_json()["job_id"]
    assert client.get(f"{API}/{job_id.swapcase()}/status").status_code == 404
    assert client.get(f"{API}/{job_id}/status").status_code == 200


INVALID = [
    ({}, "prompt"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": 42}, "prompt"),
    ({"prompt": "x" * 32_001}, "prompt"),
    ({"prompt": "lone surrogate \ud800"}, "prompt"),
    ({"prompt": "hi", "model": "no spaces allowed"}, "model"),
    ({"prompt": "hi", "model": 7}, "model"),
    ({"prompt": "hi", "model": "x" * 201}, "model"),
    ({"prompt": "hi", "system": ["a"]}, "system"),
    ({"prompt": "hi", "options": []}, "options"),
    ({"prompt": "hi", "options": {"num_predict": 0}}, "options.num_predict"),
    ({"prompt": "hi", "options": {"num_predict": 10**6}}, "options.num_predict"),
    ({"prompt": "hi", "options": {"num_predict": 1.5}}, "options.num_predict"),
    ({"prompt": "hi", "options": {"num_predict": True}}, "options.num_predict"),
    ({"prompt": "hi", "options": {"temperature": "hot"}}, "options.temperature"),
    ({"prompt": "hi", "options": {"temperature": 3}}, "options.temperature"),
    ({"prompt": "hi", "options": {"top_p": 1.5}}, "options.top_p"),
    ({"prompt": "hi", "options": {"top_k": 0}}, "options.top_k"),
    ({"prompt": "hi", "options": {"seed": "1"}}, "options.seed"),
    ({"prompt": "hi", "options": {"stop": [1]}}, "options.stop"),
    ({"prompt": "hi", "options": {"stop": ["a"] * 9}}, "options.stop"),
    ({"prompt": "hi", "options": {"num_ctx": 4096}}, "options.num_ctx"),
    ({"prompt": "hi", "stream": False}, "stream"),
]


@both_backends
@pytest.mark.parametrize(("body", "field"), INVALID)
def test_invalid_field_is_400_naming_it(client, body, field):
    response = create(client, body)
    assert response.status_code == 400
    error = response.get_json()
    assert error["success"] is False and error["field"] == field
    assert error["error"].startswith(f"{field}: ")


@pytest.mark.parametrize("body", [[], "text", 3, None])
def test_body_that_is_not_an_object_is_400(client, body):
    response = client.post(API, data=__import__("json").dumps(body), content_type="application/json")
    assert response.status_code == 400
    assert "JSON object" in response.get_json()["error"]


def test_valid_options_are_accepted(client):
    options = {"num_predict": -1, "temperature": 0, "top_p": 0.5, "top_k": 40, "seed": 7, "stop": "\n"}
    assert create(client, {"prompt": "hi", "options": options}).status_code == 202


def test_deeply_nested_json_is_400_not_500(client):
    response = client.post(API, data="[" * 100_000, content_type="application/json")
    assert response.status_code == 400 and "nested" in response.get_json()["error"]


@both_backends
def test_malformed_json_is_400(client):
    response = client.post(API, data='{"prompt": "hi"', content_type="application/json")
    assert response.status_code == 400
    assert "not valid JSON" in response.get_json()["error"]


@both_backends
@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_non_json_body_is_415(client, content_type):
    response = client.post(API, data='{"prompt": "hi"}', content_type=content_type)
    assert response.status_code == 415
    assert "application/json" in response.get_json()["error"]


@both_backends
def test_two_megabyte_body_is_413(client):
    response = client.post(API, data="x" * (2 * 1024 * 1024), content_type="application/json")
    assert response.status_code == 413
    assert response.get_json()["success"] is False


@both_backends
def test_token_protects_creation_and_cancel(app, client):
    app.config["API_TOKEN"] = "s3cret"
    assert create(client).status_code == 401
    wrong = create(client, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in wrong.get_json()["error"]
    good = create(client, headers={"Authorization": "Bearer s3cret"})
    assert good.status_code == 202
    cancel = f"{API}/{good.get_json()['job_id']}/cancel"
    assert client.post(cancel).status_code == 401
    assert client.post(cancel, headers={"Authorization": "Bearer s3cret"}).status_code == 202


def test_wrong_method_is_json_405(client):
    response = client.delete(API)
    assert response.status_code == 405
    assert response.get_json()["success"] is False and "POST" in response.headers["Allow"]


@both_backends
def test_rate_limit_is_429_with_retry_after(app, client):
    app.config["RATE_LIMIT_PER_MINUTE"] = 2
    assert [create(client).status_code for _ in range(3)] == [202, 202, 429]
    limited = create(client)
    assert int(limited.headers["Retry-After"]) > 0 and "try again" in limited.get_json()["error"]


@both_backends
def test_cancel_a_queued_job_at_once_then_409(client):
    job_id = create(client).get_json()["job_id"]
    response = client.post(f"{API}/{job_id}/cancel")
    assert response.status_code == 202 and response.get_json()["cancel"] == "cancelled"
    assert client.get(f"{API}/{job_id}/status").get_json()["job"]["status"] == "cancelled"
    again = client.post(f"{API}/{job_id}/cancel")
    assert again.status_code == 409 and "already ended" in again.get_json()["error"]


def test_queue_position_counts_jobs_ahead(client):
    ids = [create(client).get_json()["job_id"] for _ in range(3)]
    positions = [client.get(f"{API}/{i}/status").get_json()["job"]["queue_position"] for i in ids]
    assert positions == [1, 2, 3]


def test_html_404_for_people_json_for_api(client):
    page = client.get("/jobs/unknown")
    assert page.status_code == 404 and page.mimetype == "text/html"
    assert b"No job with id" in page.data
    assert client.get("/nowhere", headers={"Accept": "application/json"}).get_json()["success"] is False


def test_database_unreachable_is_503_with_retry_after_not_500(tmp_path):
    from conftest import make_app

    app = make_app(f"sqlite:///{tmp_path}/missing/dir/db.sqlite3")
    client = app.test_client()
    api = client.get(f"{API}/abc/status")
    assert api.status_code == 503 and api.headers["Retry-After"] == "2"
    assert "try again" in api.get_json()["error"]
    page = client.get("/")
    assert page.status_code == 503 and b"try again" in page.data
