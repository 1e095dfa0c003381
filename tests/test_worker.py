"""The worker against the simulator: a job streams to completion, and each fault ends where it should."""
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from webapp import history, queue
from webapp.config import from_env
from webapp.extensions import db
from webapp.models import Job, utcnow
from webapp.worker.loop import RELEASE_WAIT
from webapp.worker.run import Run, backoff

from helpers import WorkerThread, both_backends, highest, lowest, row, run_next, wait_until

API = "/api/v1/ai/generation"


def enqueue(prompt="Write a haiku", **options):
    return queue.enqueue(prompt=prompt, model="llama3.2", options=options)


def watch_until_ended(client, job_id, seconds=20):
    """Poll the status route while the job runs; returns every distinct snapshot seen."""
    seen = []

    def ended():
        job = client.get(f"{API}/{job_id}/status").get_json()["job"]
        if not seen or job["version"] != seen[-1]["version"]:
            seen.append(job)
        return job["status"] in ("completed", "failed", "cancelled")

    wait_until(ended, seconds, "the job to end", interval=0.01, detail=lambda: seen[-1])
    return seen


@both_backends
def test_job_from_the_api_completes_with_the_simulators_text_and_counts(app, client, sim):
    app.config["OLLAMA_URL"] = sim.url
    sim.tokens_per_second = 60.0
    job_id = client.post(API, json={"prompt": "Tell me about otters"}).get_json()["job_id"]
    with WorkerThread(app):
        seen = watch_until_ended(client, job_id)
    final = seen[-1]
    record = sim.requests[0]
    assert final["status"] == "completed"
    assert final["result"] == record.text and record.text
    assert final["completion_tokens"] == record.final["eval_count"]
    assert final["prompt_tokens"] == record.final["prompt_eval_count"]
    assert final["total_tokens"] == final["prompt_tokens"] + final["completion_tokens"]
    assert final["progress"] == 100 and final["attempts"] == 1
    live = [s for s in seen if s["status"] == "processing" and s["current_tokens"] > 0]
    assert len(live) >= 3, f"only {len(live)} progress writes seen"
    counts = [s["current_tokens"] for s in seen]
    assert counts == sorted(counts), "the token count went back down (the live estimate overshot)"
    percents = [s["progress"] for s in seen]
    assert percents == sorted(percents) and max(s["progress"] for s in live) < 100
    assert all(s["tokens_per_second"] > 0 for s in live[1:])


def test_num_predict_is_sent_and_caps_the_count(app, sim):
    app.config["OLLAMA_URL"] = sim.url
    job = enqueue(num_predict=25)
    done = run_next(app)
    assert done.status == "completed" and done.completion_tokens == 25
    assert done.done_reason == "length"  # cut by num_predict: a censored length for later estimates
    assert sim.requests[0].body["options"] == {"num_predict": 25}
    assert job.job_id == done.job_id


def test_expected_length_comes_from_this_models_history(app, sim):
    app.config["OLLAMA_URL"] = sim.url
    for tokens in (30, 50, 40):
        enqueue(num_predict=tokens)
        run_next(app)
    enqueue()
    job = queue.claim("w2", 30)
    history.forget()
    run = Run(app, job, "w2")
    # The three earlier runs were cut by num_predict: each says "at least N", so the length to
    # expect is past all of them, not their median.
    assert [r.cut for r in run.meter.history.runs] == [True, True, True]
    assert run.meter.sample(0.0)["expected_tokens"] > 50
    assert run.meter.sample(0.0)["estimated_time_remaining"] is not None


def test_thinking_chunks_show_the_phase_but_not_in_the_text(app, sim, monkeypatch):
    app.config["OLLAMA_URL"] = sim.url
    sim.set_fault("thinking")
    sim.tokens_per_second = 40.0  # 8 thoughts take 0.2 s: several 0.05 s progress writes see them
    enqueue(num_predict=16)
    phases = []
    original = queue.heartbeat

    def spy(*args, **fields):
        phases.append(fields.get("phase"))
        return original(*args, **fields)

    monkeypatch.setattr(queue, "heartbeat", spy)
    done = run_next(app)
    record = sim.requests[0]
    assert done.status == "completed" and done.result == record.text
    thoughts = "".join(c.get("thinking", "") for c in record.chunks)
    assert thoughts and thoughts not in done.result
    assert done.completion_tokens == record.final["eval_count"]
    assert "thinking" in phases and "generating" in phases, phases
    assert "thinking" not in phases[phases.index("generating"):], "went back to thinking"


def test_merged_chunks_still_give_ollamas_token_count(app, sim):
    app.config["OLLAMA_URL"] = sim.url
    sim.set_fault("merged")
    enqueue(num_predict=30)
    done = run_next(app)
    assert done.status == "completed" and done.completion_tokens == 30
    assert len(sim.requests[0].chunks) < 30


def test_missing_metrics_count_as_zero(app, sim):
    app.config["OLLAMA_URL"] = sim.url
    sim.set_fault("missing_metrics")
    enqueue(num_predict=12)
    done = run_next(app)
    assert done.status == "completed" and done.prompt_tokens == 0 and done.total_tokens == 12


@pytest.mark.parametrize(("fault", "words"), [
    ("unknown_model", "model 'llama3.2' not found"),
    ("bad_request", "cannot unmarshal"),
])
def test_client_errors_fail_at_once_with_ollamas_message(app, sim, fault, words):
    app.config["OLLAMA_URL"] = sim.url
    sim.set_fault(fault)
    enqueue()
    done = run_next(app)
    assert done.status == "failed" and done.attempts == 1
    assert words in done.error_message and "model 'llama3.2'" in done.error_message
    assert done.error_message.endswith(".") and "Tried" not in done.error_message


@pytest.mark.parametrize(("fault", "words"), [
    ("busy", "503"),
    ("load_fail", "timed out waiting for llama runner"),
    ("error_midstream", "an error was encountered while running the model"),
    ("eof", "ended the stream before the generation was done"),
    ("drop", "cut in the middle"),
    ("stall", "sent nothing for 0.5 s"),
])
def test_transient_faults_retry_with_backoff_then_fail_naming_the_tries(app, sim, fault, words):
    app.config.update(OLLAMA_URL=sim.url, OLLAMA_READ_TIMEOUT=0.5, MAX_ATTEMPTS=2)
    sim.set_fault(fault)
    job = enqueue()
    before = utcnow()
    first = run_next(app, rand=highest)  # the longest back-off after attempt 1: 2 s * 2**1
    assert first.status == "queued" and first.attempts == 1 and first.worker_id is None
    assert words in first.last_error and first.last_error.endswith(".")
    assert first.error_message == f"{first.last_error} Trying again in 4 s (attempt 2 of 2)."
    assert before + timedelta(seconds=4) <= first.run_after <= utcnow() + timedelta(seconds=4)
    assert queue.claim("w1", 30) is None, "claimed before its back-off was over"
    _make_runnable(job.id)
    second = run_next(app)
    assert second.status == "failed" and second.attempts == 2
    assert words in second.error_message and second.error_message.endswith(". Tried 2 times.")


def test_connection_refused_is_retried(app):
    app.config["MAX_ATTEMPTS"] = 1  # OLLAMA_URL points at port 9, where nothing listens
    enqueue()
    done = run_next(app)
    assert done.status == "failed" and done.error_message.endswith("(connection refused). Tried once.")


def test_a_job_retried_after_a_fault_completes(app, sim):
    app.config["OLLAMA_URL"] = sim.url
    sim.set_fault("eof", times=1)
    enqueue(num_predict=10)
    retrying = run_next(app, rand=lowest)  # no back-off: runnable at once
    assert retrying.status == "queued" and "Trying again in under a second" in retrying.error_message
    done = run_next(app)
    assert done.status == "completed" and done.attempts == 2 and done.result == sim.requests[1].text
    assert done.error_message is None


def _make_runnable(pk):
    """Backdate the back-off instead of waiting it out."""
    db.session.execute(sa.update(Job).where(Job.id == pk).values(run_after=utcnow() - timedelta(seconds=1)))
    db.session.commit()


def test_backoff_is_full_jitter_capped():
    assert backoff(3, rand=lambda low, high: (low, high)) == (0, 16.0)  # the whole range is drawn from
    assert backoff(3, rand=highest) == 16.0
    assert backoff(20, rand=highest) == 600.0
    assert backoff(3, rand=lowest) == 0


def test_with_the_default_grace_the_drain_ends_before_a_paas_kills_at_30_s(tmp_path):
    grace = from_env({}, str(tmp_path))["SHUTDOWN_GRACE"]
    assert grace + RELEASE_WAIT < 30  # the drain's one deadline: grace, then releases


def test_a_cancel_flag_keeps_a_requeued_job_from_running_again(app):
    job = enqueue()
    claimed = queue.claim("w1", 30)
    queue.request_cancel(claimed)                        # flagged while it runs...
    queue.retry_later(claimed.id, "w1", 0, "Ollama hiccup")  # ...and put back at the same moment
    _make_runnable(job.id)
    assert queue.claim("w2", 30) is None
    assert queue.recover_expired(3) == 1 and row(job.job_id).status == "cancelled"


def test_cancel_while_the_model_loads_ends_at_once(app, sim):
    app.config["OLLAMA_URL"] = sim.url
    sim.load_delay = 3.0
    job = enqueue()
    claimed = queue.claim("w1", 30)
    run = Run(app, claimed, "w1")

    def serve():
        with app.app_context():
            run.run()

    thread = threading.Thread(target=serve)
    thread.start()
    queue.request_cancel(claimed)
    # Ended while the model loads (3 s), not after it: the deadline stays under the load.
    wait_until(lambda: row(job.job_id).status == "cancelled", 2,
               "the cancel to end the job before the load did (else it waited for the load)", interval=0.05)
    assert "loading" in row(job.job_id).error_message
    thread.join(10)
