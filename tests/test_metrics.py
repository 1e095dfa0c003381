"""`/metrics`: Prometheus text the official parser reads, counters equal to what the database
holds after real runs (on both databases), the token guard, the web processes' own figures added
up under a real gunicorn (multiprocess mode), and the worker's own figures on its port."""
import glob
import os
import re
from datetime import timedelta

import pytest
import requests
import sqlalchemy as sa
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.exc import OperationalError

from webapp import ollama, queue, retention, statuses
from webapp.batches import store
from webapp.config import SettingError, from_env
from webapp.extensions import db
from webapp.models import Job, WebhookDelivery, utcnow
from webapp.telemetry import reasons, totals
from webapp.worker import deliveries
from webapp.worker.run import tried

from helpers import WorkerThread, both_backends, run_next, wait_until
from servers import Gunicorn, free_port

API = "/api/v1/ai/generation"
MODELS = ("llama3.2", "qwen2.5:0.5b")


# --- reading a scrape ----------------------------------------------------------------------------
def parse(text, parser=text_string_to_metric_families):
    """{(sample name, ((label, value), ...)): value} of a scrape, read by prometheus_client's parser."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in parser(text) for sample in family.samples}


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


def total(samples, name):
    """The sum of every sample of `name`, whatever its labels (0 without any)."""
    return sum(found for (sample, _labels), found in samples.items() if sample == name)


def scrape(client, **headers):
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return parse(response.get_data(as_text=True))


def count(*where):
    """Jobs `where` holds, read fresh."""
    db.session.commit()
    return db.session.scalar(sa.select(sa.func.count()).select_from(Job).where(*where))


def database_figures():
    """What the jobs table says: completed jobs and their tokens per model, failed and cancelled."""
    db.session.commit()  # a fresh read
    done = db.session.execute(sa.select(Job.model, sa.func.count(), sa.func.sum(Job.completion_tokens))
                              .where(Job.status == statuses.COMPLETED).group_by(Job.model)).all()
    ended = dict(db.session.execute(sa.select(Job.status, sa.func.count()).group_by(Job.status)).all())
    return {model: (count, tokens) for model, count, tokens in done}, ended


# --- the format ----------------------------------------------------------------------------------
def test_metrics_parse_with_the_prometheus_text_parser(app, client):
    queue.enqueue(prompt="waits", model="llama3.2")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert response.headers["Cache-Control"] == "no-store"
    names = {family.name for family in text_string_to_metric_families(response.get_data(as_text=True))}
    assert names >= {"livegen_jobs", "livegen_queue_depth", "livegen_queue_oldest_age_seconds", "livegen_jobs_running",
                     "livegen_tokens_per_second", "livegen_worker_leases", "livegen_jobs_completed",
                     "livegen_tokens_generated", "livegen_jobs_failed", "livegen_jobs_cancelled",
                     "livegen_webhook_attempts", "livegen_webhook_deliveries", "livegen_job_wait_seconds",
                     "livegen_job_load_seconds", "livegen_job_generation_seconds", "livegen_job_tokens_per_second",
                     "livegen_sse_streams_open", "livegen_watcher_tick_seconds", "livegen_watcher_reads",
                     "livegen_database_up"}


def test_prometheus_asking_for_openmetrics_gets_it(client):
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    samples = parse(response.get_data(as_text=True), openmetrics_families)
    assert value(samples, "livegen_database_up") == 1


# --- equal to the database -----------------------------------------------------------------------
@both_backends
def test_after_jobs_run_by_a_real_worker_the_counters_equal_the_database(app, client, sim):
    app.config["OLLAMA_URL"] = sim.url
    for index in range(6):
        queue.enqueue(prompt=f"Count to {index}", model=MODELS[index % 2], options={"num_predict": 10 + index})
    queue.enqueue(prompt="Fails", model="no-such-model")  # 404: failed at once, no retry
    queue.request_cancel(queue.enqueue(prompt="Never runs", model="llama3.2"))
    with WorkerThread(app, concurrency=3):
        wait_until(lambda: count(Job.status.in_(statuses.LIVE)) == 0, 30, "every job to end")
    done, ended = database_figures()
    samples = scrape(client)
    assert {model: (value(samples, "livegen_jobs_completed_total", model=model),
                    value(samples, "livegen_tokens_generated_total", model=model)) for model in done} == done
    assert sum(count for count, _tokens in done.values()) == 6 == total(samples, "livegen_jobs_completed_total")
    assert value(samples, "livegen_jobs_failed_total", reason="model_not_found") == ended[statuses.FAILED] == 1
    assert value(samples, "livegen_jobs_cancelled_total") == ended[statuses.CANCELLED] == 1
    for histogram in ("wait_seconds", "generation_seconds", "load_seconds", "tokens_per_second"):
        assert {model: value(samples, f"livegen_job_{histogram}_count", model=model) for model in done} == {
            model: count for model, (count, _tokens) in done.items()}


def test_a_histogram_counts_each_job_in_its_bucket_and_sums_it(app, client, sim):
    app.config["OLLAMA_URL"] = sim.url
    queue.enqueue(prompt="Say hi", model="llama3.2", options={"num_predict": 5})
    job = run_next(app)
    samples = scrape(client)
    seconds = job.elapsed_time / 1000
    upper = next(upper for upper in totals.HISTOGRAMS["generation_seconds"] if seconds <= upper)
    name = "livegen_job_generation_seconds_bucket"
    assert value(samples, name, model="llama3.2", le=totals.bound(upper)) == 1
    below = [bound for bound in totals.HISTOGRAMS["generation_seconds"] if bound < upper]
    assert all(value(samples, name, model="llama3.2", le=totals.bound(bound)) == 0 for bound in below)
    assert value(samples, name, model="llama3.2", le="+Inf") == 1
    assert value(samples, "livegen_job_generation_seconds_sum", model="llama3.2") == pytest.approx(seconds)


def test_counters_do_not_go_down_when_retention_deletes_the_jobs(app, client, sim):
    app.config["OLLAMA_URL"] = sim.url
    for index in range(3):
        queue.enqueue(prompt=f"Old {index}", model="llama3.2", options={"num_predict": 8})
        run_next(app)
    before = scrape(client)
    assert retention.purge(1, now=utcnow() + timedelta(days=2)) == 3
    after = scrape(client)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Job)) == 0
    for name in ("livegen_jobs_completed_total", "livegen_tokens_generated_total", "livegen_job_wait_seconds_count"):
        assert value(after, name, model="llama3.2") == value(before, name, model="llama3.2") > 0


def test_a_batch_cancelled_counts_its_queued_items(app, client):
    batch = store.create("someone", [{"prompt": f"item {n}", "model": "llama3.2"} for n in range(4)], "llama3.2")
    assert store.cancel(batch) == 4
    assert value(scrape(client), "livegen_jobs_cancelled_total") == 4


def test_the_state_now_queued_ready_backing_off_running_and_webhooks(app, client):
    ready = queue.enqueue(prompt="first", model="llama3.2")
    backing_off = queue.enqueue(prompt="retry later", model="llama3.2")
    db.session.execute(sa.update(Job).where(Job.id == backing_off.id).values(
        run_after=utcnow() + timedelta(minutes=5), created_at=utcnow() - timedelta(minutes=2)))
    db.session.add(WebhookDelivery(delivery_id="msg_1", job_pk=ready.id, event="start", url="https://x.test/",
                                   body="{}", next_attempt_at=utcnow() - timedelta(seconds=30)))
    db.session.commit()
    running = queue.claim("host:1:abc", 30)  # the oldest in turn: `ready`
    samples = scrape(client)
    assert running.id == ready.id
    assert value(samples, "livegen_jobs", status="queued") == 1
    assert value(samples, "livegen_jobs", status="processing") == 1
    assert value(samples, "livegen_queue_depth") == 0  # the one queued waits out its back-off
    assert value(samples, "livegen_queue_oldest_age_seconds") >= 120
    assert value(samples, "livegen_jobs_running", model="llama3.2") == 1
    assert value(samples, "livegen_worker_leases", worker="host:1:abc") == 1
    assert value(samples, "livegen_webhook_deliveries", status="pending") >= 1
    assert value(samples, "livegen_webhook_oldest_due_age_seconds") >= 30


def test_each_message_the_code_writes_has_its_reason():
    class Answer:
        def __init__(self, status):
            self.status_code, self.text, self.reason = status, "", ""

        def json(self):
            return {"error": "model 'x' not found"}

    url, connection = "http://127.0.0.1:9/api/generate", requests.exceptions.ConnectionError
    written = {
        "model_not_found": ollama._refusal(Answer(404), "x"),
        "bad_request": ollama._refusal(Answer(400), "x"),
        "ollama_error": ollama._refusal(Answer(500), "x"),
        "ollama_unreachable": ollama._describe(connection("Connection refused"), url, 300),
        "ollama_stalled": ollama._describe(requests.exceptions.ReadTimeout("Read timed out"), url, 300),
        "ollama_disconnected": ollama._describe(requests.exceptions.ChunkedEncodingError(), url, 300),
    }
    for reason, message in written.items():
        assert reasons.reason(f"{message} {tried(3)}") == reason, message
    assert reasons.reason(ollama._describe(requests.exceptions.ConnectTimeout(), url, 300)) == "ollama_unreachable"
    assert reasons.reason("Ollama stopped with an error: out of memory.") == "ollama_error"
    assert reasons.reason("The worker was lost 3 times; giving up.") == "worker_lost"
    assert reasons.reason("Something else entirely.") == reasons.reason(None) == "other"


def test_each_webhook_try_is_counted_with_its_result(app, client, monkeypatch):
    for n in range(3):
        job = queue.enqueue(prompt=f"hooked {n}", model="llama3.2")
        db.session.add(WebhookDelivery(delivery_id=f"msg_{n}", job_pk=job.id, event="start", url="https://x.test/",
                                       body="{}", next_attempt_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    answers = {"msg_0": (True, 204, None), "msg_1": (False, 503, "The receiver answered 503."),
               "msg_2": (False, None, "No answer.")}
    monkeypatch.setattr(deliveries, "attempt", lambda _session, _secret, delivery, *_: answers[delivery.delivery_id])
    sender = deliveries.Sender(app)
    try:
        assert sender.send_due() == 3
    finally:
        sender.stop(0)
        sender.session.close()
    samples = scrape(client)
    assert [value(samples, "livegen_webhook_attempts_total", result=result)
            for result in ("delivered", "rejected", "error")] == [1, 1, 1]
    assert value(samples, "livegen_webhook_deliveries", status="pending") == 2  # the two to try again


# --- the guard, the rate limit, an outage ---------------------------------------------------------
def test_with_a_metrics_token_a_scrape_needs_it(app, client):
    app.config["METRICS_TOKEN"] = "s3cret-scrape"
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert "livegen_" not in refused.get_data(as_text=True)
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Basic s3cret-scrape"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape"}).status_code == 200


def test_scrapes_are_not_rate_limited(app, client):
    app.config["RATE_LIMIT_PER_MINUTE"] = 1
    assert all(client.get("/metrics").status_code == 200 for _ in range(5))


def test_a_database_that_does_not_answer_gives_database_up_0_and_the_rest(app, client, monkeypatch):
    def away():
        raise OperationalError("SELECT", {}, Exception("gone"))

    monkeypatch.setattr(totals, "read", away)
    samples = scrape(client)
    assert value(samples, "livegen_database_up") == 0
    assert value(samples, "livegen_watcher_reads_total") is not None  # this process's figures still come


@pytest.mark.parametrize("port", ["70000", "-1", "nine"])
def test_a_bad_worker_metrics_port_is_a_setting_error(port, tmp_path):
    with pytest.raises(SettingError, match="WORKER_METRICS_PORT"):
        from_env({"WORKER_METRICS_PORT": port}, str(tmp_path))


# --- the web processes' own figures ---------------------------------------------------------------
def test_an_open_stream_counts_until_it_closes(app, client):
    job = queue.enqueue(prompt="watched", model="llama3.2")
    stream = client.get(f"{API}/{job.job_id}/progress", buffered=False)
    next(iter(stream.response))
    assert value(scrape(client), "livegen_sse_streams_open", route="streams.progress") == 1
    stream.close()
    assert value(scrape(client), "livegen_sse_streams_open", route="streams.progress") == 0


def open_streams(web, job_ids):
    """SSE responses held open, each on its own connection (so they spread over the processes)."""
    opened = []
    for job_id in job_ids:
        response = requests.get(f"{web.url}{API}/{job_id}/progress", stream=True, timeout=10)
        assert response.status_code == 200
        opened.append(response)
    return opened


def web_scrape(web):
    response = requests.get(f"{web.url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    return parse(response.text)


def stream_files(directory):
    """The processes that have counted an open stream: their live-gauge files."""
    return {re.search(r"_(\d+)\.db$", path).group(1) for path in glob.glob(f"{directory}/gauge_livesum_*.db")}


def test_under_gunicorn_streams_are_added_up_over_the_worker_processes(database_url, tmp_path):
    directory = tmp_path / "prometheus"
    directory.mkdir()
    (directory / "counter_999999.db").write_bytes(b"")  # left by an earlier start: emptied at start
    with Gunicorn(database_url, WEB_CONCURRENCY="2", PROMETHEUS_MULTIPROC_DIR=str(directory),
                  SSE_PING_INTERVAL="0.2", SSE_POLL_INTERVAL="0.05") as web:
        assert not (directory / "counter_999999.db").exists()
        job_ids = [requests.post(f"{web.url}{API}", json={"prompt": f"p{n}"}, timeout=10).json()["job_id"]
                   for n in range(3)]
        streams = []
        # Connections go to whichever process accepts first: open them until both have some.
        while len(stream_files(directory)) < 2 and len(streams) < 200:
            streams += open_streams(web, job_ids)
        assert len(stream_files(directory)) == 2
        wait_until(lambda: total(web_scrape(web), "livegen_sse_streams_open") == len(streams), 10,
                   f"{len(streams)} open streams counted")
        assert total(web_scrape(web), "livegen_watcher_reads_total") > 0  # the watchers' ticks, added up
        for stream in streams:
            stream.close()
        # The server sees a client gone at its next write (a ping every 0.2 s here).
        wait_until(lambda: total(web_scrape(web), "livegen_sse_streams_open") == 0, 15, "every stream closed")


def test_gunicorn_makes_its_own_metrics_directory_and_removes_it_at_exit(database_url, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with Gunicorn(database_url, WEB_CONCURRENCY="2") as web:
        assert value(web_scrape(web), "livegen_database_up") == 1
        directory = re.search(r"metrics: worker processes' figures in (\S+)", web.output()).group(1)
        assert os.path.isdir(directory)
    assert not os.path.exists(directory)


# --- the worker's own figures, on its port --------------------------------------------------------
def test_the_worker_serves_its_own_figures_on_its_port(app, client, sim, spawn):
    port = free_port()
    worker = spawn(sim.url, WORKER_METRICS_PORT=port, METRICS_TOKEN="worker-scrape", WORKER_CONCURRENCY=2)
    worker_id = worker.wait_ready()
    for index in range(3):
        queue.enqueue(prompt=f"Tell me {index}", model="llama3.2", options={"num_predict": 20})
    wait_until(lambda: count(Job.status == statuses.COMPLETED) == 3, 30, "three jobs completed")
    url = f"http://127.0.0.1:{port}/metrics"
    assert requests.get(url, timeout=5).status_code == 401
    answer = requests.get(url, headers={"Authorization": "Bearer worker-scrape"}, timeout=5)
    samples = parse(answer.text)
    assert value(samples, "livegen_worker_info", worker=worker_id) == 1
    assert value(samples, "livegen_worker_slots") == 2
    assert value(samples, "livegen_worker_progress_write_seconds_count") >= 3
    assert value(samples, "livegen_worker_claim_seconds_count") >= 3
    assert value(samples, "livegen_worker_running_jobs") == 0
    assert value(samples, "process_resident_memory_bytes") > 0
    # What the database knows of the same run reaches the web's /metrics.
    assert value(scrape(client), "livegen_jobs_completed_total", model="llama3.2") == 3
