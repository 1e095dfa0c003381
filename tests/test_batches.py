"""Batches: creation (API and form), counters kept as items end (worker, cancel, retry, recovery),
items and exports, the resumable SSE stream, owners, and the batch page.

Waits poll a condition with a deadline; leases are backdated instead of waited out.
"""
import csv
import html
import io
import json
import re
import threading
from datetime import UTC, timedelta

import pytest
import sqlalchemy as sa

from webapp import queue, statuses
from webapp.extensions import db
from webapp.models import Batch, Job, utcnow
from webapp.owners import keys
from webapp.web import batch_input

from helpers import WorkerThread, both_backends, wait_until

API = "/api/v1/ai/generation/batches"
MYSQL_ONLY = pytest.mark.parametrize("backend", [pytest.param("mysql", marks=pytest.mark.mysql)],
                                     indirect=True)


# --- helpers ---------------------------------------------------------------------------------------
def bearer(secret):
    return {"Authorization": f"Bearer {secret}"} if secret else {}


def create(client, items, secret=None, **defaults):
    response = client.post(API, json={"items": items, **defaults}, headers=bearer(secret))
    assert response.status_code == 202, response.get_json()
    return response.get_json()["batch_id"]


def batch_row(batch_id):
    """The batch's row as committed now (a fresh transaction: MySQL reads a snapshot otherwise)."""
    db.session.commit()
    query = sa.select(Batch).where(Batch.batch_id == batch_id).execution_options(populate_existing=True)
    return db.session.execute(query).scalar_one()


def items_of(batch_id):
    """The batch's items as committed now, in index order."""
    pk = batch_row(batch_id).id
    query = (sa.select(Job).where(Job.batch_pk == pk).order_by(Job.batch_index)
             .execution_options(populate_existing=True))
    return list(db.session.scalars(query))


def job_status(pk):
    db.session.commit()
    return db.session.get(Job, pk, populate_existing=True).status


def status_counts(batch_id):
    """{status: COUNT(*)} of the batch's items, as the database counts them."""
    pk = batch_row(batch_id).id
    query = sa.select(Job.status, sa.func.count()).where(Job.batch_pk == pk).group_by(Job.status)
    return dict(db.session.execute(query).all())


def table_counts():
    db.session.commit()
    return (db.session.scalar(sa.select(sa.func.count()).select_from(Job)),
            db.session.scalar(sa.select(sa.func.count()).select_from(Batch)))


def wait_batch_ended(batch_id, timeout=15):
    return wait_until(lambda: (b := batch_row(batch_id)).status != "processing" and b,
                      timeout, f"batch {batch_id} to end")


def assert_counters_agree(batch_id):
    """The batch's counters equal what its items say, and its log numbers are in end order."""
    batch = batch_row(batch_id)
    counts = status_counts(batch_id)
    jobs = items_of(batch_id)
    assert (batch.completed, batch.failed, batch.cancelled) == (
        counts.get("completed", 0), counts.get("failed", 0), counts.get("cancelled", 0)), counts
    assert batch.total == len(jobs)
    assert batch.tokens == sum(job.current_tokens or 0 for job in jobs)
    ended = [job for job in jobs if job.status in ("completed", "failed", "cancelled")]
    seqs = [job.batch_seq for job in ended]
    assert None not in seqs and len(set(seqs)) == len(seqs), seqs
    assert all(job.batch_seq is None for job in jobs if job not in ended)
    assert max(seqs, default=0) <= batch.log_seq
    return batch, sorted(ended, key=lambda job: job.batch_seq)


def assert_log_in_end_order(batch_id):
    """Log numbers follow the order of completed_at (ties allowed: milliseconds). Kept apart from
    the counters' check and called last, so a test shows everything else first."""
    _, by_seq = assert_counters_agree(batch_id)
    pairs = [(job.batch_seq, job.batch_index, job.completed_at.isoformat()) for job in by_seq]
    times = [job.completed_at for job in by_seq]
    assert times == sorted(times), f"log numbers out of completed_at order (seq, index, completed_at): {pairs}"


def finish_all(batch_id, fail=(), tokens=lambda index: index + 1, result=lambda job: f"answer to {job.prompt}"):
    """Claim and end each queued item of the batch in this thread: `fail` holds the indexes that fail."""
    while (job := queue.claim("w1", 30)) is not None:
        assert job.batch_pk == batch_row(batch_id).id
        count = tokens(job.batch_index)
        if job.batch_index in fail:
            assert queue.finish(job.id, "w1", "failed", error_message=f"boom {job.batch_index}",
                                current_tokens=count)
        else:
            assert queue.finish(job.id, "w1", "completed", result=result(job), current_tokens=count,
                                completion_tokens=count, prompt_tokens=3, total_tokens=count + 3,
                                elapsed_time=10 * count)


def csrf_token(client, path="/batches"):
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def sse_events(response):
    """Every event of an in-process stream that ends by itself, as dicts of its fields."""
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    text = b"".join(response.response).decode()
    events = []
    for block in text.strip().split("\n\n"):
        fields = {}
        for line in block.splitlines():
            key, _, value = line.partition(": ")
            fields[key] = value
        events.append(fields)
    return events


def log_lines(client, batch_id, **kwargs):
    response = client.get(f"{API}/{batch_id}/log.txt", **kwargs)
    assert response.status_code == 200 and response.mimetype == "text/plain"
    return response.get_data(as_text=True).splitlines()


def expected_log_heads(batch_id):
    """What each log line starts with: `[its end's clock] index+1/total status`, in log order."""
    batch, by_seq = assert_counters_agree(batch_id)
    return [f"[{job.completed_at:%H:%M:%S}] {job.batch_index + 1}/{batch.total} {job.status}" for job in by_seq]


def assert_log_follows(lines, heads):
    assert len(lines) == len(heads), (lines, heads)
    for line, head in zip(lines, heads, strict=True):
        assert line.startswith(head + " · "), (line, head)


# --- 1. create through the API ---------------------------------------------------------------------
@both_backends
def test_api_create_applies_defaults_and_each_items_own_fields_win(client):
    body = {"model": "qwen2.5:0.5b", "system": "Be brief.", "options": {"num_predict": 12, "temperature": 0.1},
            "items": [{"prompt": "plain"},
                      {"prompt": "own model", "model": "llama3.2"},
                      {"prompt": "own system", "system": "Be long."},
                      {"prompt": "own options", "options": {"temperature": 0.7, "seed": 5}}]}
    response = client.post(API, json=body)
    assert response.status_code == 202
    answer = response.get_json()
    batch_id = answer["batch_id"]
    assert answer["success"] is True and answer["total"] == 4
    base = f"{API}/{batch_id}"
    assert answer["links"] == {"status": base, "items": f"{base}/items", "progress": f"{base}/progress",
                               "results_jsonl": f"{base}/results.jsonl", "results_csv": f"{base}/results.csv",
                               "log": f"{base}/log.txt", "page": f"/batches/{batch_id}"}
    assert response.headers["Location"] == base
    for name, link in answer["links"].items():
        if name != "progress":  # a live stream does not end by itself
            assert client.get(link).status_code == 200, name

    jobs = items_of(batch_id)
    assert [job.batch_index for job in jobs] == [0, 1, 2, 3]
    assert [job.prompt for job in jobs] == [item["prompt"] for item in body["items"]]
    assert [job.model for job in jobs] == ["qwen2.5:0.5b", "llama3.2", "qwen2.5:0.5b", "qwen2.5:0.5b"]
    assert [job.system for job in jobs] == ["Be brief.", "Be brief.", "Be long.", "Be brief."]
    assert [job.options for job in jobs] == [body["options"], body["options"], body["options"],
                                             {"num_predict": 12, "temperature": 0.7, "seed": 5}]
    assert {job.status for job in jobs} == {"queued"}
    batch = client.get(base).get_json()["batch"]
    assert (batch["total"], batch["queued"], batch["status"], batch["model"]) == (4, 4, "queued", "qwen2.5:0.5b")


@pytest.mark.parametrize(("body", "field", "words"), [
    ({"items": []}, "items", "1 to 10,000"),
    ({"items": [{"prompt": "p"}] * 10_001}, "items", "1 to 10,000"),
    ({"items": {"prompt": "p"}}, "items", "list"),
    ({"items": "p"}, "items", "list"),
    ({}, "items", "list"),
    ({"items": [{"prompt": "p"}], "prompt": "p"}, "prompt", "not a batch field"),
    ({"items": [{"prompt": "p"}], "options": {"num_predict": 0}}, "options.num_predict", "from 1"),
])
def test_api_create_refuses_bad_bodies_and_queues_nothing(client, body, field, words):
    """Validation only (SQLite): that a refused batch leaves MariaDB untouched is the next test's."""
    before = table_counts()
    response = client.post(API, json=body)
    assert response.status_code == 400
    error = response.get_json()
    assert error["success"] is False and error["field"] == field and words in error["error"]
    assert table_counts() == before


@both_backends
def test_api_create_refuses_bad_rows_by_index_and_queues_nothing(client):
    create(client, [{"prompt": "an earlier batch"}])
    before = table_counts()
    items = [{"prompt": "fine"}, {"prompt": "fine too"}, {"prompt": ""}, {"prompt": "ok"},
             {"prompt": "x", "options": {"num_predict": 0}}, "not an object", {"prompt": "y", "stream": True}]
    response = client.post(API, json={"items": items})
    assert response.status_code == 400
    error = response.get_json()["error"]
    for bad in ("items[2]: prompt", "items[4]: options.num_predict", "items[5]: body", "items[6]: stream"):
        assert bad in error, error
    for good in ("items[0]", "items[1]", "items[3]"):
        assert good not in error
    assert "Nothing was queued" in error
    assert table_counts() == before


@both_backends
def test_ten_thousand_tiny_items_are_one_batch(client):
    items = [{"prompt": f"p{n}"} for n in range(10_000)]
    batch_id = create(client, items)
    pk = batch_row(batch_id).id
    got = db.session.execute(sa.select(sa.func.count(), sa.func.count(sa.distinct(Job.batch_index)),
                                       sa.func.min(Job.batch_index), sa.func.max(Job.batch_index))
                             .where(Job.batch_pk == pk, Job.status == "queued")).one()
    assert tuple(got) == (10_000, 10_000, 0, 9_999)
    assert db.session.scalar(sa.select(Job.prompt).where(Job.batch_pk == pk, Job.batch_index == 9_876)) == "p9876"
    batch = client.get(f"{API}/{batch_id}").get_json()["batch"]
    assert (batch["total"], batch["queued"]) == (10_000, 10_000)
    # The download reads page by page: every item, once, in order.
    lines = client.get(f"{API}/{batch_id}/results.jsonl").get_data(as_text=True).splitlines()
    assert [json.loads(line)["index"] for line in lines] == list(range(10_000))


# --- 2. create from the form -----------------------------------------------------------------------
def form_post(client, **data):
    return client.post("/batches", data={"csrf_token": csrf_token(client), **data})


def created_from_form(response):
    assert response.status_code == 303, response.get_data(as_text=True)[:2000]
    location = response.headers["Location"]
    assert location.startswith("/batches/")
    return location.rsplit("/", 1)[1]


def form_error(response):
    assert response.status_code == 400
    return html.unescape(response.get_data(as_text=True))


@both_backends
def test_form_lines_make_one_item_each_skipping_blank_lines(app, client):
    response = form_post(client, prompts="First prompt\n\n   \n  Second, with spaces  \r\nThird\n\n",
                         model="qwen2.5:0.5b", num_predict="40")
    batch_id = created_from_form(response)
    jobs = items_of(batch_id)
    assert [job.prompt for job in jobs] == ["First prompt", "Second, with spaces", "Third"]
    assert {job.model for job in jobs} == {"qwen2.5:0.5b"}
    assert all(job.options == {"num_predict": 40} for job in jobs)
    assert client.get(f"/batches/{batch_id}").status_code == 200
    # The browser's own list shows it.
    assert f"/batches/{batch_id}" in client.get("/batches").get_data(as_text=True)
    no_model = created_from_form(form_post(client, prompts="only one"))
    assert [(job.model, job.options) for job in items_of(no_model)] == [(app.config["DEFAULT_MODEL"], {})]


@both_backends
def test_form_jsonl_upload(client):
    rows = [{"prompt": "from jsonl"}, None, {"prompt": "own model", "model": "qwen2.5:0.5b"},
            {"prompt": "own options", "options": {"temperature": 0.5}}]
    text = "\n".join("" if row is None else json.dumps(row) for row in rows) + "\n"
    response = form_post(client, num_predict="9", file=(io.BytesIO(text.encode()), "prompts.jsonl"))
    jobs = items_of(created_from_form(response))
    assert [(job.prompt, job.model, job.options) for job in jobs] == [
        ("from jsonl", "llama3.2", {"num_predict": 9}),
        ("own model", "qwen2.5:0.5b", {"num_predict": 9}),
        ("own options", "llama3.2", {"num_predict": 9, "temperature": 0.5})]


@both_backends
def test_form_jsonl_line_may_hold_a_unicode_line_separator(client):
    """JSON allows U+2028/U+2029 unescaped in a string (json.dumps(..., ensure_ascii=False) writes
    them so); JSONL lines end at '\\n' only, so such a line is one row."""
    prompts = ["first\u2028part two", "second\u2029part two", "third\x85x"]
    text = "".join(json.dumps({"prompt": prompt}, ensure_ascii=False) + "\n" for prompt in prompts)
    response = form_post(client, file=(io.BytesIO(text.encode()), "prompts.jsonl"))
    assert [job.prompt for job in items_of(created_from_form(response))] == prompts


@both_backends
def test_form_csv_upload_with_a_prompt_column(client):
    prompts = ['Say "hi", then stop', "Two\nlines, one prompt", "plain"]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "prompt", "model"])
    writer.writerows([[1, prompts[0], "qwen2.5:0.5b"], [2, prompts[1], ""], [3, prompts[2], ""]])
    data = ("\ufeff" + buffer.getvalue()).encode()  # as a spreadsheet saves it, with its BOM
    jobs = items_of(created_from_form(form_post(client, file=(io.BytesIO(data), "sheet.csv"))))
    assert [(job.prompt, job.model) for job in jobs] == [(prompts[0], "qwen2.5:0.5b"), (prompts[1], "llama3.2"),
                                                         (prompts[2], "llama3.2")]


@pytest.mark.parametrize(("name", "content", "label"), [
    ("lines", "fine\n\nalso fine\n" + "x" * 32_001 + "\nok", "line 4"),
    ("bad.jsonl", '{"prompt": "fine"}\n\n{"prompt": ""}\n{"prompt": "ok"}\n', "line 3"),
    ("bad.jsonl", '{"prompt": "fine"}\n{"prompt": "x", "options": {"top_k": 0}}\n', "line 2"),
    ("bad.csv", 'prompt,model\n"two\nlines",llama3.2\nok,no spaces allowed\nfine,\n', "line 4"),
])
def test_form_bad_row_is_refused_by_its_line_and_nothing_is_queued(client, name, content, label):
    create(client, [{"prompt": "an earlier batch"}])
    before = table_counts()
    if name == "lines":
        response = form_post(client, prompts=content)
    else:
        response = form_post(client, file=(io.BytesIO(content.encode()), name))
    error = form_error(response)
    assert re.search(re.escape(label) + r": (prompt|model|options\.top_k)", error), error[:3000]
    assert "Nothing was queued" in error
    other_lines = {f"line {n}:" for n in range(1, 6)} - {f"{label}:"}
    assert not any(other in error for other in other_lines)
    assert table_counts() == before


@both_backends
def test_form_csv_without_a_prompt_column_is_400_naming_it(client):
    before = table_counts()
    response = form_post(client, file=(io.BytesIO(b"question,model\nWhy?,llama3.2\n"), "sheet.csv"))
    error = form_error(response)
    assert "'prompt' column" in error
    assert table_counts() == before


def test_form_without_its_csrf_token_queues_nothing(client):
    csrf_token(client)
    before = table_counts()
    assert client.post("/batches", data={"prompts": "hello"}).status_code == 400
    assert table_counts() == before


# --- 3. counters with a real worker ----------------------------------------------------------------
@both_backends
def test_batch_runs_to_its_end_and_its_counters_equal_the_items(app, client, sim):
    app.config["OLLAMA_URL"] = sim.url
    items = [{"prompt": f"Item {n}: tell me about {n}", "options": {"num_predict": 3 + n}} for n in range(8)]
    for bad in (2, 6):  # the simulator does not know this model: a 404, which no retry can help
        items[bad]["model"] = "nosuch-model"
    batch_id = create(client, items, model="llama3.2")
    cancelled = items_of(batch_id)[4]
    answer = client.post(f"/api/v1/ai/generation/{cancelled.job_id}/cancel")
    assert answer.status_code == 202 and answer.get_json()["cancel"] == "cancelled"

    with WorkerThread(app, concurrency=2):
        batch = wait_batch_ended(batch_id)

    jobs = items_of(batch_id)
    assert [job.status for job in jobs] == ["completed", "completed", "failed", "completed", "cancelled",
                                            "completed", "failed", "completed"]
    assert status_counts(batch_id) == {"completed": 5, "failed": 2, "cancelled": 1}
    batch, by_seq = assert_counters_agree(batch_id)
    assert batch.status == "completed" and batch.completed_at is not None
    assert sorted(job.batch_seq for job in jobs) == list(range(1, 9))
    assert batch.log_seq == 8
    assert batch.tokens == sum(job.completion_tokens for job in jobs if job.status == "completed") > 0
    assert batch.item_ms == sum(job.elapsed_time for job in jobs)
    for job in jobs:
        if job.status == "completed":
            assert job.completion_tokens == job.options["num_predict"] and job.result
        if job.status == "failed":
            assert "nosuch-model" in job.error_message
    snap = client.get(f"{API}/{batch_id}").get_json()["batch"]
    assert {key: snap[key] for key in ("status", "completed", "failed", "cancelled", "queued", "running",
                                       "ended", "tokens", "progress", "log_seq")} == {
        "status": "completed", "completed": 5, "failed": 2, "cancelled": 1, "queued": 0, "running": 0,
        "ended": 8, "tokens": batch.tokens, "progress": 100.0, "log_seq": 8}

    lines = log_lines(client, batch_id)
    assert_log_follows(lines, expected_log_heads(batch_id))
    for line, job in zip(lines, by_seq, strict=True):
        if job.status == "completed":
            assert f" · {job.completion_tokens} tok · " in line
        else:
            assert job.error_message in line
    assert_log_in_end_order(batch_id)


# --- 4. cancel --------------------------------------------------------------------------------------
@MYSQL_ONLY
def test_cancel_mid_batch_stops_running_items_keeps_their_text_and_starts_nothing(app, client, sim):
    sim.tokens_per_second = 40.0
    app.config["OLLAMA_URL"] = sim.url
    items = [{"prompt": "quick one", "options": {"num_predict": 3}}] + [
        {"prompt": f"long story {n}", "options": {"num_predict": 400}} for n in range(1, 8)]
    batch_id = create(client, items)
    with WorkerThread(app, concurrency=2):
        def two_streaming():
            jobs = items_of(batch_id)
            running = [job for job in jobs if job.status == "processing" and job.current_tokens > 0]
            return jobs[0].status == "completed" and len(running) == 2 and running

        running = wait_until(two_streaming, 10, "item 0 to complete and two items to stream")
        response = client.post(f"{API}/{batch_id}/cancel")
        cancel_done = utcnow()
        assert response.status_code == 202
        assert response.get_json()["cancelled_now"] == 5  # items 3..7; 1 and 2 are running
        batch = wait_until(lambda: (b := batch_row(batch_id)).status != "processing" and b, 5,
                           "the running items to stop")
        # The worker keeps claiming after the cancel: a job queued now runs, none of the batch's.
        sentinel = queue.enqueue(prompt="after the cancel", model="llama3.2", options={"num_predict": 3})
        wait_until(lambda: job_status(sentinel.id) == "completed", 10, "the job queued after the cancel")

    assert batch.status == "cancelled" and batch.cancel_requested
    jobs = items_of(batch_id)
    assert [job.status for job in jobs] == ["completed"] + ["cancelled"] * 7
    assert all(job.started_at is None or job.started_at <= cancel_done for job in jobs), \
        [(job.batch_index, job.started_at, cancel_done) for job in jobs]
    assert [job.started_at is not None for job in jobs] == [True, True, True] + [False] * 5
    prompts = [record.body["prompt"] for record in sim.requests]
    assert sorted(prompts) == sorted([jobs[0].prompt, jobs[1].prompt, jobs[2].prompt, sentinel.prompt])
    records = {record.body["prompt"]: record for record in sim.requests}
    for job in (jobs[1], jobs[2]):
        assert job.batch_index in {r.batch_index for r in running}
        assert 0 < job.current_tokens < 400 and job.result, (job.current_tokens, job.result)
        assert records[job.prompt].text.startswith(job.result) and records[job.prompt].client_closed
    batch, _ = assert_counters_agree(batch_id)
    assert (batch.completed, batch.failed, batch.cancelled) == (1, 0, 7)
    assert batch.cancelled == status_counts(batch_id)["cancelled"]
    again = client.post(f"{API}/{batch_id}/cancel")
    assert again.status_code == 409 and "already ended" in again.get_json()["error"]
    assert_log_in_end_order(batch_id)


@both_backends
def test_cancel_of_a_queued_batch_ends_it_at_once_then_409(client):
    batch_id = create(client, [{"prompt": f"p{n}"} for n in range(4)])
    before = batch_row(batch_id)
    assert before.status == "processing"
    response = client.post(f"{API}/{batch_id}/cancel")
    assert response.status_code == 202 and response.get_json()["cancelled_now"] == 4
    batch, by_seq = assert_counters_agree(batch_id)
    assert (batch.status, batch.cancelled, batch.completed_at is not None) == ("cancelled", 4, True)
    assert [job.batch_index for job in by_seq] == [0, 1, 2, 3]
    assert queue.claim("w1", 30) is None
    version = batch.version
    again = client.post(f"{API}/{batch_id}/cancel")
    assert again.status_code == 409
    assert batch_row(batch_id).version == version
    assert_log_in_end_order(batch_id)


@both_backends
def test_cancel_of_a_completed_batch_is_409_and_changes_nothing(client):
    batch_id = create(client, [{"prompt": "a"}, {"prompt": "b"}])
    finish_all(batch_id)
    before = batch_row(batch_id)
    assert before.status == "completed"
    version = before.version
    response = client.post(f"{API}/{batch_id}/cancel")
    assert response.status_code == 409 and response.get_json()["success"] is False
    after = batch_row(batch_id)
    assert (after.status, after.version, after.cancel_requested, after.cancelled) == ("completed", version, False, 0)


# --- 5. retry the failed items ----------------------------------------------------------------------
@both_backends
def test_retry_failed_requeues_them_and_takes_them_off_the_counters(app, client, sim):
    app.config["OLLAMA_URL"] = sim.url
    app.config["MAX_ATTEMPTS"] = 1  # a mid-stream error ends the item failed, its partial text kept
    sim.set_fault("error_midstream", times=2)
    batch_id = create(client, [{"prompt": f"Item {n}"} for n in range(4)], options={"num_predict": 30})
    with WorkerThread(app, concurrency=1):
        wait_batch_ended(batch_id)
    batch, _ = assert_counters_agree(batch_id)
    failed = [job for job in items_of(batch_id) if job.status == "failed"]
    assert (batch.status, batch.completed, batch.failed) == ("completed", 2, 2)
    assert all(job.current_tokens > 0 for job in failed), "a failed item keeps what it generated"
    failed_tokens = sum(job.current_tokens for job in failed)
    failed_ms = sum(job.elapsed_time for job in failed)
    tokens_before, ms_before = batch.tokens, batch.item_ms  # the ORM object is refreshed in place below
    failed = [(job.id, job.current_tokens) for job in failed]

    response = client.post(f"{API}/{batch_id}/retry")
    assert response.status_code == 202 and response.get_json()["retried"] == 2
    after = batch_row(batch_id)
    assert (after.status, after.completed_at, after.failed, after.completed) == ("processing", None, 0, 2)
    assert after.tokens == tokens_before - failed_tokens
    assert after.item_ms == ms_before - failed_ms
    again = {job.id: job for job in items_of(batch_id)}
    for pk, _tokens in failed:
        back = again[pk]
        assert (back.status, back.result, back.batch_seq, back.current_tokens, back.attempts,
                back.error_message, back.completed_at) == ("queued", None, None, 0, 0, None, None)
    assert_counters_agree(batch_id)
    assert len(log_lines(client, batch_id)) == 2  # a retried item's line leaves the log
    assert client.get(f"{API}/{batch_id}").get_json()["batch"]["status"] == "processing"
    assert client.post(f"{API}/{batch_id}/retry").get_json()["retried"] == 0

    with WorkerThread(app, concurrency=1):
        done = wait_batch_ended(batch_id)
    assert done.status == "completed"
    batch, by_seq = assert_counters_agree(batch_id)
    assert (batch.completed, batch.failed, batch.cancelled) == (4, 0, 0)
    assert status_counts(batch_id) == {"completed": 4}
    assert batch.tokens == sum(job.completion_tokens for job in items_of(batch_id)) == 4 * 30
    assert [job.id for job in by_seq[-2:]] == sorted(pk for pk, _tokens in failed)  # they ended last
    assert_log_follows(log_lines(client, batch_id), expected_log_heads(batch_id))
    assert_log_in_end_order(batch_id)


# --- 6. items and exports ---------------------------------------------------------------------------
TRICKY = 'She said "hi, there",\nthen left; 100% sure\r\n\'ok\''


@both_backends
def test_items_are_paged_by_index(client):
    batch_id = create(client, [{"prompt": f"p{n}"} for n in range(5)])
    pages, after = [], None
    while True:
        query = "limit=2" + (f"&after={after}" if after is not None else "")
        response = client.get(f"{API}/{batch_id}/items?{query}")
        assert response.status_code == 200
        body = response.get_json()
        pages.append([item["index"] for item in body["items"]])
        after = body["next"]
        if after is None:
            break
        assert after == pages[-1][-1]
    assert pages == [[0, 1], [2, 3], [4]]
    everything = client.get(f"{API}/{batch_id}/items").get_json()
    assert [item["prompt"] for item in everything["items"]] == [f"p{n}" for n in range(5)]
    assert everything["next"] is None
    assert client.get(f"{API}/{batch_id}/items?after=-1&limit=5").get_json()["next"] == 4
    for bad in ("limit=0", "limit=1001", "after=-2", "after=x", "limit=2.5"):
        response = client.get(f"{API}/{batch_id}/items?{bad}")
        assert response.status_code == 400, bad
        assert response.get_json()["field"] == bad.split("=")[0]


@both_backends
def test_jsonl_and_csv_exports_have_every_item_with_its_output(client):
    prompts = ["plain", TRICKY, "third, with a comma", "ünïcödé ✓"]
    batch_id = create(client, [{"prompt": prompt} for prompt in prompts])
    finish_all(batch_id, fail={2}, result=lambda job: f"Out {job.batch_index}: {job.prompt}")
    jobs = items_of(batch_id)

    response = client.get(f"{API}/{batch_id}/results.jsonl")
    assert response.status_code == 200 and response.mimetype == "application/x-ndjson"
    assert "attachment" in response.headers["Content-Disposition"]
    lines = response.get_data(as_text=True).splitlines()
    assert len(lines) == len(jobs)
    rows = [json.loads(line) for line in lines]
    assert [(row["index"], row["job_id"], row["status"], row["prompt"], row["output"]) for row in rows] == [
        (job.batch_index, job.job_id, job.status, job.prompt, job.result) for job in jobs]
    assert rows[1]["output"] == f"Out 1: {TRICKY}" and rows[2]["output"] is None
    assert rows[2]["error"] == "boom 2" and rows[0]["error"] is None
    assert [row["completion_tokens"] for row in rows] == [job.completion_tokens for job in jobs]

    response = client.get(f"{API}/{batch_id}/results.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    table = list(csv.reader(io.StringIO(response.get_data(as_text=True), newline="")))
    header, body = table[0], table[1:]
    assert {"index", "job_id", "status", "prompt", "output", "error"} <= set(header)
    assert len(body) == len(jobs)
    records = [dict(zip(header, values, strict=True)) for values in body]
    assert [record["prompt"] for record in records] == prompts
    assert [record["output"] for record in records] == [job.result or "" for job in jobs]
    assert [(record["index"], record["job_id"], record["status"]) for record in records] == [
        (str(job.batch_index), job.job_id, job.status) for job in jobs]


# --- 7. the SSE stream ------------------------------------------------------------------------------
@both_backends
def test_stream_of_an_ended_batch_sends_every_item_once_then_progress_and_complete(client):
    batch_id = create(client, [{"prompt": f"p{n}"} for n in range(6)])
    finish_all(batch_id, fail={3})
    _, by_seq = assert_counters_agree(batch_id)
    url = f"{API}/{batch_id}/progress"

    events = sse_events(client.get(url, buffered=False))
    assert events[0] == {"retry": "3000"}
    kinds = [event["event"] for event in events[1:]]
    assert kinds == ["item"] * 6 + ["progress", "complete"]
    items = [json.loads(event["data"]) for event in events[1:7]]
    ids = [int(event["id"]) for event in events[1:7]]
    assert ids == sorted(set(ids)) == [job.batch_seq for job in by_seq]
    assert [item["seq"] for item in items] == ids
    assert [(item["job_id"], item["index"], item["status"]) for item in items] == [
        (job.job_id, job.batch_index, job.status) for job in by_seq]
    assert items[[job.batch_index for job in by_seq].index(3)]["error"] == "boom 3"
    final = json.loads(events[-1]["data"])
    assert (final["status"], final["completed"], final["failed"], final["ended"]) == ("completed", 5, 1, 6)
    assert int(events[-1]["id"]) == int(events[-2]["id"]) == ids[-1]

    for resume in ids:  # wherever a client dropped off, it gets exactly the rest
        header = {"Last-Event-ID": str(resume)}
        rest = sse_events(client.get(url, headers=header, buffered=False))
        got = [int(event["id"]) for event in rest if event.get("event") == "item"]
        assert got == [seq for seq in ids if seq > resume], resume
        assert [event.get("event") for event in rest[-2:]] == ["progress", "complete"]
    by_query = sse_events(client.get(f"{url}?after={ids[3]}", buffered=False))
    assert [int(event["id"]) for event in by_query if event.get("event") == "item"] == ids[4:]


@pytest.mark.parametrize("bad", ["abc", "-1", "1.5", "3-4", "1e3", " 7"])
def test_stream_with_a_bad_last_event_id_is_400_json(client, bad):
    batch_id = create(client, [{"prompt": "p"}])
    response = client.get(f"{API}/{batch_id}/progress", headers={"Last-Event-ID": bad})
    assert response.status_code == 400 and response.mimetype == "application/json"
    assert response.get_json()["success"] is False and response.get_json()["field"] == "after"


@both_backends
def test_stream_of_a_live_batch_sends_what_ended_then_times_out(app, client):
    app.config["SSE_MAX_DURATION"] = 0  # one tick, then the time limit
    batch_id = create(client, [{"prompt": f"p{n}"} for n in range(3)])
    job = queue.claim("w1", 30)
    job_id = job.job_id  # the stream's reads end this session: its objects detach
    assert queue.finish(job.id, "w1", "completed", result="done", current_tokens=4)
    events = sse_events(client.get(f"{API}/{batch_id}/progress", buffered=False))
    assert [event.get("event") for event in events] == [None, "item", "progress", "timeout"]
    assert json.loads(events[1]["data"])["job_id"] == job_id
    progress = json.loads(events[2]["data"])
    assert (progress["status"], progress["completed"], progress["queued"], progress["tokens"]) == (
        "processing", 1, 2, 4)
    assert events[3]["id"] == events[1]["id"] == str(batch_row(batch_id).log_seq)
    # Resuming from there: no item again.
    rest = sse_events(client.get(f"{API}/{batch_id}/progress", headers={"Last-Event-ID": events[3]["id"]},
                                 buffered=False))
    assert [event.get("event") for event in rest] == [None, "progress", "timeout"]


# --- 8. owners --------------------------------------------------------------------------------------
@both_backends
def test_another_key_cannot_cancel_retry_or_list_the_batch(app, client):
    alice, bob = keys.create("alice"), keys.create("bob")
    failed_id = create(client, [{"prompt": "c"}], secret=alice)
    finish_all(failed_id, fail={0})
    batch_id = create(client, [{"prompt": "a"}, {"prompt": "b"}], secret=alice)
    before = [(b.status, b.version, b.cancel_requested, b.failed) for b in map(batch_row, (batch_id, failed_id))]
    assert client.post(f"{API}/{batch_id}/cancel", headers=bearer(bob)).status_code == 404
    assert client.post(f"{API}/{failed_id}/retry", headers=bearer(bob)).status_code == 404
    assert client.post(f"{API}/{batch_id}/cancel").status_code == 401
    after = [(b.status, b.version, b.cancel_requested, b.failed) for b in map(batch_row, (batch_id, failed_id))]
    assert after == before
    listed = client.get(API, headers=bearer(bob))
    assert listed.status_code == 200 and listed.get_json()["batches"] == []
    refused = client.get(f"{API}?after={batch_id}", headers=bearer(bob))
    assert refused.status_code == 400 and refused.get_json()["field"] == "after"
    # Reads are by link while PRIVATE_JOBS is off.
    assert client.get(f"{API}/{batch_id}", headers=bearer(bob)).status_code == 200
    assert client.post(f"{API}/{failed_id}/retry", headers=bearer(alice)).get_json()["retried"] == 1
    assert client.post(f"{API}/{batch_id}/cancel", headers=bearer(alice)).status_code == 202


@both_backends
def test_private_batches_are_404_to_everyone_but_their_owner(app, client):
    app.config["PRIVATE_JOBS"] = True
    alice, bob = keys.create("alice"), keys.create("bob")
    batch_id = create(client, [{"prompt": "a"}], secret=alice)
    finish_all(batch_id)
    paths = [f"{API}/{batch_id}", f"{API}/{batch_id}/items", f"{API}/{batch_id}/progress",
             f"{API}/{batch_id}/results.jsonl", f"{API}/{batch_id}/results.csv", f"{API}/{batch_id}/log.txt",
             f"/batches/{batch_id}", f"/batches/{batch_id}/card", f"/batches/{batch_id}/stream"]
    for path in paths:
        assert client.get(path, headers=bearer(bob)).status_code == 404, path
        assert app.test_client().get(path).status_code == 404, path  # a browser with no session
        owner = client.get(path, headers=bearer(alice), buffered=False)
        assert owner.status_code in (200, 286), path
        owner.close()
    stranger = client.get(f"{API}/{batch_id}", headers=bearer(bob)).get_json()
    assert stranger == {"success": False, "error": f"No batch with id '{batch_id}'."}


@both_backends
def test_listing_has_only_the_callers_batches_newest_first_a_page_at_a_time(app, client):
    alice, bob = keys.create("alice"), keys.create("bob")
    mine = [create(client, [{"prompt": f"mine {n}"}], secret=alice) for n in range(5)]
    create(client, [{"prompt": "not mine"}], secret=bob)
    seen, after = [], None
    while True:
        query = "limit=2" + (f"&after={after}" if after else "")
        response = client.get(f"{API}?{query}", headers=bearer(alice))
        assert response.status_code == 200
        body = response.get_json()
        seen.append([batch["batch_id"] for batch in body["batches"]])
        after = body["next"]
        if after is None:
            break
        assert after == seen[-1][-1]
    assert seen == [mine[4:2:-1], mine[2:0:-1], mine[:1]]
    whole = client.get(API, headers=bearer(alice)).get_json()
    assert [batch["batch_id"] for batch in whole["batches"]] == mine[::-1] and whole["next"] is None
    assert {batch["total"] for batch in whole["batches"]} == {1}
    assert client.get(API).status_code == 401
    assert client.get(f"{API}?limit=0", headers=bearer(alice)).status_code == 400


# --- 9. the batch page ------------------------------------------------------------------------------
REFRESH = '<meta http-equiv="refresh"'


def page_counters(text):
    return {name: int(value) for name, value in re.findall(r'class="count-(\w+)">(\d+)<', text)}


@both_backends
def test_batch_page_shows_counters_and_log_and_refreshes_only_while_it_runs(client):
    batch_id = create(client, [{"prompt": f"p{n}"} for n in range(4)])
    page = client.get(f"/batches/{batch_id}")
    assert page.status_code == 200 and REFRESH in page.get_data(as_text=True)
    assert page_counters(page.get_data(as_text=True)) == {"queued": 4, "running": 0, "completed": 0, "failed": 0,
                                                         "cancelled": 0}
    assert client.get(f"/batches/{batch_id}/card").status_code == 200

    first = queue.claim("w1", 30)
    assert queue.finish(first.id, "w1", "completed", result="x", current_tokens=2)
    queue.claim("w1", 30)  # running now
    text = html.unescape(client.get(f"/batches/{batch_id}").get_data(as_text=True))
    assert page_counters(text) == {"queued": 2, "running": 1, "completed": 1, "failed": 0, "cancelled": 0}
    lines = log_lines(client, batch_id)
    assert len(lines) == 1 and lines[0] in text
    card = client.get(f"/batches/{batch_id}/card")
    # The card's version is the latest write to the batch or a running item, in ms: it moves
    # with the running items' figures too, and the page refuses a card older than the one it has.
    stamp = int(card.headers["X-Job-Version"])
    assert card.status_code == 200 and f'data-version="{stamp}"' in card.get_data(as_text=True)
    assert stamp >= int(batch_row(batch_id).last_update_at.replace(tzinfo=UTC).timestamp() * 1000)

    while (job := queue.claim("w1", 30)) is not None:
        assert queue.finish(job.id, "w1", "failed", error_message="it broke")
    running = db.session.scalar(sa.select(Job).where(Job.status == "processing"))
    assert queue.finish(running.id, "w1", "completed", result="y", current_tokens=3)
    assert batch_row(batch_id).status == "completed"

    page = client.get(f"/batches/{batch_id}")
    text = html.unescape(page.get_data(as_text=True))
    assert page.status_code == 200 and REFRESH not in text
    assert page_counters(text) == {"queued": 0, "running": 0, "completed": 2, "failed": 2, "cancelled": 0}
    lines = log_lines(client, batch_id)
    assert len(lines) == 4
    positions = [text.index(line) for line in lines]
    assert positions == sorted(positions), "the console shows the log in its order"
    card = client.get(f"/batches/{batch_id}/card")
    assert card.status_code == 286 and 'hx-trigger' not in card.get_data(as_text=True)


def test_unknown_batch_is_404_everywhere(client):
    for path in (f"{API}/nope", f"{API}/nope/items", f"{API}/nope/progress", f"{API}/nope/results.csv",
                 f"{API}/nope/log.txt", "/batches/nope", "/batches/nope/card"):
        assert client.get(path).status_code == 404, path
    assert client.post(f"{API}/nope/cancel").status_code == 404
    assert client.post(f"{API}/nope/retry").status_code == 404


# --- 10. items the sweep ends -----------------------------------------------------------------------
def backdate_lease(pk, seconds=60):
    db.session.execute(sa.update(Job).where(Job.id == pk).values(lease_until=utcnow() - timedelta(seconds=seconds)))
    db.session.commit()


@both_backends
def test_items_the_sweep_ends_are_counted_in_their_batch(client):
    batch_id = create(client, [{"prompt": f"p{n}"} for n in range(3)])
    lost = queue.claim("w1", 30)
    asked = queue.claim("w2", 30)
    assert (lost.batch_index, asked.batch_index) == (0, 1)
    assert queue.request_cancel(asked) == "requested"
    backdate_lease(lost.id)
    backdate_lease(asked.id)
    assert queue.recover_expired(2) == 2  # one cancelled (asked to stop), one queued again (attempt 1 of 2)
    batch, _ = assert_counters_agree(batch_id)
    assert (batch.cancelled, batch.failed, batch.completed, batch.status) == (1, 0, 0, "processing")
    assert [job.status for job in items_of(batch_id)] == ["queued", "cancelled", "queued"]

    again = queue.claim("w3", 30)
    assert again.id == lost.id and again.attempts == 2
    assert queue.heartbeat(again.id, "w3", 30, current_tokens=7)
    backdate_lease(again.id)
    assert queue.recover_expired(2) == 1  # its last attempt: failed
    batch, by_seq = assert_counters_agree(batch_id)
    assert (batch.cancelled, batch.failed, batch.tokens) == (1, 1, 7)
    assert [job.id for job in by_seq] == [asked.id, lost.id]
    version = batch.version
    assert queue.recover_expired(2) == 0
    assert batch_row(batch_id).version == version  # a sweep with nothing to do counts nothing

    last = items_of(batch_id)[2]
    assert queue.request_cancel(last) == "cancelled"
    batch, _ = assert_counters_agree(batch_id)
    assert (batch.status, batch.completed, batch.failed, batch.cancelled) == ("completed", 0, 1, 2)
    assert_log_in_end_order(batch_id)


# --- log numbers and completed_at, when an item's end waits for a lock ---------------------------
@MYSQL_ONLY
def test_log_numbers_follow_completed_at_when_an_items_end_waits_for_its_row(app, client, database_url):
    """An item's end whose row is locked by someone else for a moment (a progress write, a batch
    cancel) commits after a later end: its log number must still not put it before that one."""
    batch_id = create(client, [{"prompt": "a"}, {"prompt": "b"}])
    first, second = queue.claim("w1", 30), queue.claim("w1", 30)
    first_pk, second_pk = first.id, second.id
    engine = sa.create_engine(database_url)
    holder = engine.connect()
    holder.begin()
    holder.execute(sa.text("SELECT id FROM ai_generation_jobs WHERE id = :pk FOR UPDATE"), {"pk": first_pk})
    connection = []

    def end_first():
        with app.app_context():
            connection.append(db.session.scalar(sa.text("SELECT CONNECTION_ID()")))
            assert queue.finish(first_pk, "w1", "completed", result="a", current_tokens=1)
            db.session.remove()

    thread = threading.Thread(target=end_first)
    try:
        thread.start()
        waiting = sa.text("SELECT trx_state FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = :cid")

        def first_waits():
            db.session.commit()
            return connection and db.session.scalar(waiting, {"cid": connection[0]}) == "LOCK WAIT"

        wait_until(first_waits, 30, "the first item's end to wait for its row")  # a deadline, not a pause
        seen = utcnow()
        wait_until(lambda: utcnow() > seen, 1, "the clock to move on a millisecond")
        assert queue.finish(second_pk, "w1", "completed", result="b", current_tokens=1)
    finally:
        holder.rollback()
        holder.close()
        thread.join(10)
        engine.dispose()
    assert not thread.is_alive()
    batch, by_seq = assert_counters_agree(batch_id)
    assert (batch.status, batch.completed) == ("completed", 2)
    assert_log_in_end_order(batch_id)


# --- limits on what one batch and one owner may queue ------------------------------------------------
def test_the_form_takes_a_batch_past_the_one_job_body_limit(client):
    """A batch's body may pass MAX_CONTENT_LENGTH (1 MB) up to MAX_BATCH_BYTES, the form's too."""
    prompts = "\n".join(f"Prompt number {n} " + "x" * 120 for n in range(9_000))
    assert len(prompts.encode()) > 1024 * 1024
    batch_id = created_from_form(form_post(client, prompts=prompts))
    assert batch_row(batch_id).total == 9_000


def test_a_shared_system_prompt_counts_once_per_item_against_what_a_batch_may_store(client, monkeypatch):
    monkeypatch.setattr(batch_input, "MAX_STORED_CHARS", 10_000)
    before = table_counts()
    refused = client.post(API, json={"items": [{"prompt": "p"}] * 100, "system": "s" * 100})
    assert refused.status_code == 400 and "10,100 characters" in refused.get_json()["error"]
    assert table_counts() == before
    assert client.post(API, json={"items": [{"prompt": "p"}] * 50, "system": "s" * 100}).status_code == 202


@both_backends
def test_an_owners_unfinished_batch_items_are_capped(app, client):
    app.config["MAX_QUEUED_BATCH_ITEMS"] = 5
    first = create(client, [{"prompt": "a"}] * 3)
    refused = client.post(API, json={"items": [{"prompt": "b"}] * 3})
    assert refused.status_code == 429 and "MAX_QUEUED_BATCH_ITEMS" in refused.get_json()["error"]
    assert client.post(f"{API}/{first}/cancel").status_code == 202
    create(client, [{"prompt": "b"}] * 3)  # the cancelled batch's items no longer count


@both_backends
def test_a_second_cancel_while_running_items_stop_changes_nothing(client):
    batch_id = create(client, [{"prompt": "a"}, {"prompt": "b"}])
    job = queue.claim("w1", 30)
    assert client.post(f"{API}/{batch_id}/cancel").get_json()["cancelled_now"] == 1
    seen = batch_row(batch_id)
    again = client.post(f"{API}/{batch_id}/cancel")
    assert again.status_code == 202 and again.get_json()["cancelled_now"] == 0
    assert (batch_row(batch_id).log_seq, batch_row(batch_id).version) == (seen.log_seq, seen.version)
    assert queue.finish(job.id, "w1", statuses.CANCELLED, current_tokens=3, elapsed_time=900)
    ended = batch_row(batch_id)
    assert (ended.status, ended.cancelled, ended.item_ms) == ("cancelled", 2, 0), "a cancelled item's time is no mean's"



@both_backends
def test_an_items_page_links_back_to_its_batch_and_a_single_jobs_page_does_not(client):
    batch_id = create(client, [{"prompt": "first"}, {"prompt": "second"}])
    second = items_of(batch_id)[1]
    page = client.get(f"/jobs/{second.job_id}").get_data(as_text=True)
    assert f'href="/batches/{batch_id}">a batch of 2</a>' in page and "Item 2 of" in page
    single = client.post("/api/v1/ai/generation", json={"prompt": "alone"}).get_json()["job_id"]
    assert "batch-link" not in client.get(f"/jobs/{single}").get_data(as_text=True)
