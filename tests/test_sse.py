"""The SSE contract, in-process and through a real gunicorn with the gevent worker."""
import json
import time

import pytest
import requests

from webapp import queue
from webapp.web import live, sse, streams
from webapp.web.watch import Subscription

from helpers import WorkerThread, both_backends
from servers import Gunicorn, WorkerProcess, read_events

API = "/api/v1/ai/generation"


def collect(response, limit=100):
    """Events of an in-process streamed response, as dicts."""
    text = b"".join(response.response).decode()
    return [dict(line.split(": ", 1) for line in block.splitlines())
            for block in text.strip().split("\n\n")][:limit]


def test_unknown_job_is_a_plain_404_not_a_stream(client):
    response = client.get(f"{API}/nope/progress")
    assert response.status_code == 404 and response.mimetype == "application/json"


def test_ended_job_gets_its_final_event_at_once_then_the_stream_closes(app, client):
    job = queue.enqueue(prompt="hi", model="llama3.2")
    queue.request_cancel(job)
    response = client.get(f"{API}/{job.job_id}/progress", buffered=False)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache, no-transform"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert "Content-Encoding" not in response.headers
    events = collect(response)
    assert events[0] == {"retry": str(sse.RETRY_MS)}
    assert events[1]["event"] == "error" and events[1]["id"] == str(queue.get(job.job_id).version)
    assert json.loads(events[1]["data"]) == {"status": "cancelled", "error": "Cancelled before it started."}
    assert len(events) == 2


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class IdleSubscription(Subscription):
    """Nothing ever changes; waiting only moves the fake clock."""

    def __init__(self, clock, snap):
        super().__init__([snap])
        self.clock = clock

    def take(self, timeout):
        self.clock.now += timeout
        return []


def test_idle_stream_pings_every_15_seconds_then_times_out():
    clock = FakeClock()
    snap = {"job_id": "j", "status": "queued", "version": 3, "queue_position": 1}
    sub = IdleSubscription(clock, snap)
    frames = list(live.changes(sub, {"j": snap}, streams.json_event, lambda last: sse.ping(3),
                               max_duration=40.0, ping_after=15.0, clock=clock))
    assert frames[:2] == [sse.ping(3), sse.ping(3)] and "event: ping" in frames[0]
    assert frames[2].startswith("id: 3\nevent: timeout\n") and len(frames) == 3
    assert clock.now == 40.0


def test_shutdown_ends_streams_with_a_retry_hint():
    clock = FakeClock()
    snap = {"job_id": "j", "status": "processing", "version": 3, "queue_position": None}
    sub = Subscription([snap])
    sub.close()
    frames = list(live.changes(sub, {"j": snap}, streams.json_event, lambda last: "", 600, 15, clock))
    assert frames == [sse.retry()]


def test_slow_subscriber_gets_the_newest_snapshot_not_a_backlog():
    sub = Subscription([{"job_id": "j", "version": 1, "queue_position": None}])
    for version in range(2, 50):
        sub.offer({"job_id": "j", "version": version, "queue_position": None})
    assert [s["version"] for s in sub.take(0)] == [49]
    sub.offer({"job_id": "j", "version": 49, "queue_position": None})
    assert sub.take(0) == []


# --- through real gunicorn (gevent) --------------------------------------------------------------

def open_stream(server, job_id, **headers):
    return requests.get(f"{server.url}{API}/{job_id}/progress", stream=True, timeout=30, headers=headers)


@pytest.fixture
def web(database_url):
    with Gunicorn(database_url, SSE_POLL_INTERVAL="0.2") as server:
        yield server


@both_backends
def test_live_stream_through_gunicorn(app, web, sim):
    sim.tokens_per_second = 40.0
    job = queue.enqueue(prompt="Explain SSE", model="llama3.2", options={"num_predict": 100})
    response = open_stream(web, job.job_id)
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = read_events(response)
    assert next(events) == {"retry": str(sse.RETRY_MS)}
    app.config["OLLAMA_URL"] = sim.url
    # The snapshot comes before any worker runs: it was sent at connect, not on a change.
    assert next(events)["event"] == "progress"
    seen = []
    with WorkerThread(app, concurrency=1):
        for event in events:
            seen.append(event)
            if event["event"] in ("complete", "error"):
                break
    # How fast events follow the row is a benchmark's question (bench/sse_bench.py), not a test's.
    generating = [json.loads(e["data"]) for e in seen if e["event"] == "progress"
                  and '"current_tokens":0,' not in e["data"]]
    assert len(generating) >= 2, "the stream did not follow the generation"
    percents = [d["progress"] for d in generating]
    ids = [int(e["id"]) for e in seen]
    assert percents == sorted(percents) and ids == sorted(set(ids))
    final = json.loads(seen[-1]["data"])
    status = requests.get(f"{web.url}{API}/{job.job_id}/status").json()["job"]
    assert seen[-1]["event"] == "complete" and final["status"] == "completed"
    for key in ("total_tokens", "prompt_tokens", "completion_tokens", "elapsed_time"):
        assert final[key] == status[key]
    assert list(events) == []  # the server closed the stream


@both_backends
def test_reconnects_resume_and_finish(app, web, sim):
    sim.tokens_per_second = 30.0
    app.config["OLLAMA_URL"] = sim.url
    job = queue.enqueue(prompt="Resume me", model="llama3.2", options={"num_predict": 60})
    with WorkerThread(app, concurrency=1):
        first = read_events(open_stream(web, job.job_id))
        next(first)
        last = next(e for e in first if e["event"] == "progress" and '"processing"' in e["data"])
        resumed = read_events(open_stream(web, job.job_id, **{"Last-Event-ID": last["id"]}))
        assert next(resumed) == {"retry": str(sse.RETRY_MS)}
        following = next(resumed)
        assert int(following["id"]) > int(last["id"]), "the snapshot the client had was repeated"
        ended = [e for e in resumed if e["event"] == "complete"]
    assert len(ended) == 1
    after = list(read_events(open_stream(web, job.job_id)))
    assert [e.get("event") for e in after] == [None, "complete"]


def test_an_idle_job_gets_pings_at_the_configured_interval(database_url, app):
    job = queue.enqueue(prompt="Nobody runs me", model="llama3.2")
    with Gunicorn(database_url, SSE_PING_INTERVAL="0.5") as server:
        events = read_events(open_stream(server, job.job_id))
        kinds = [next(events).get("retry"), *(next(events)["event"] for _ in range(3))]
    assert kinds == [str(sse.RETRY_MS), "progress", "ping", "ping"]


@pytest.mark.mysql
@pytest.mark.parametrize("backend", ["mysql"], indirect=True)
def test_two_web_processes_and_two_workers_see_every_job(app, database_url, sim):
    sim.tokens_per_second = 200.0
    env = {"PROGRESS_INTERVAL": "0.2"}
    with Gunicorn(database_url) as web_a, Gunicorn(database_url) as web_b, \
            WorkerProcess(database_url, sim.url, **env), WorkerProcess(database_url, sim.url, **env):
        ids = [requests.post(f"{web.url}{API}", json={"prompt": f"job {n}", "options": {"num_predict": 30}})
               .json()["job_id"] for n, web in enumerate([web_a, web_b] * 3)]
        for web in (web_a, web_b):
            for job_id in ids:
                kinds = [e.get("event") for e in read_events(open_stream(web, job_id))]
                assert kinds[-1] == "complete", (web.url, job_id, kinds)
    assert len(sim.requests) == 6


def test_sigterm_ends_streams_at_once_with_a_retry_hint(database_url, app):
    job = queue.enqueue(prompt="Still queued", model="llama3.2")
    with Gunicorn(database_url) as server:
        events = read_events(open_stream(server, job.job_id))
        assert [next(events).get("retry"), next(events)["event"]] == [str(sse.RETRY_MS), "progress"]
        stopped = time.monotonic()
        server.proc.send_signal(15)
        rest = list(events)
        assert time.monotonic() - stopped < 5, "the stream waited for the graceful timeout"
        assert rest == [{"retry": str(sse.RETRY_MS)}]
        assert server.proc.wait(10) == 0
