"""Learned estimates through the real worker: what a job learns from earlier ones, a job past its
expected length, a warm or cold start as Ollama's /api/ps tells it, queued jobs' estimates at
their places, and what a completed job leaves for later ones."""
from datetime import timedelta

import pytest
import sqlalchemy as sa

from webapp import history, queue, statuses
from webapp.extensions import db
from webapp.models import Job, utcnow
from webapp.ollama import model_is_loaded
from webapp.snapshots import snapshot_of, snapshots_of

from helpers import both_backends, row, run_next


def completed(model="llama3.2", tokens=25, count=10, seconds=1.0, cut=False, load_ms=200, cold=False, at_once=1):
    """Earlier jobs this server finished (rows as the worker leaves them), each taking `seconds`,
    `at_once` side by side and back to back before now."""
    now = utcnow()
    for n in range(count):
        done = now - timedelta(seconds=seconds * (n // at_once))
        db.session.add(Job(prompt=f"earlier {n}", model=model, status=statuses.COMPLETED, prompt_kind="plain:s:-",
                           completion_tokens=tokens + n % 3, tokens_per_second=50.0, load_ms=load_ms,
                           cold_start=cold, prompt_eval_ms=10, prompt_tokens=20,
                           done_reason="length" if cut else "stop",
                           started_at=done - timedelta(seconds=seconds), completed_at=done))
    db.session.commit()
    history.forget()


def progress_writes(monkeypatch):
    """Every progress write the worker makes, as the fields it wrote."""
    writes = []
    real = queue.heartbeat

    def recording(job_pk, worker_id, lease_seconds, **fields):
        writes.append(fields)
        return real(job_pk, worker_id, lease_seconds, **fields)

    monkeypatch.setattr(queue, "heartbeat", recording)
    return writes


@both_backends
def test_a_job_past_its_expected_length_keeps_an_eta_and_a_moving_bar(app, sim, monkeypatch):
    completed(tokens=25)  # every earlier answer was about 25 tokens
    app.config["OLLAMA_URL"] = sim.url
    sim.tokens_per_second = 200.0
    queue.enqueue(prompt="Tell me everything", model="llama3.2", options={"num_predict": 150})
    writes = progress_writes(monkeypatch)
    done = run_next(app)
    assert done.status == statuses.COMPLETED and done.completion_tokens == 150
    generating = [w for w in writes if w["current_tokens"] > 0]
    past = [w for w in generating if w["current_tokens"] > 30]
    assert len(past) >= 3, f"too few writes past the expected length: {generating}"
    assert all(w["estimated_time_remaining"] is not None for w in generating)
    assert all(w["expected_tokens"] > w["current_tokens"] or w["current_tokens"] == 150 for w in past)
    bars = [w["progress_percentage"] for w in generating]
    assert all(b > a for a, b in zip(bars, bars[1:], strict=False)), f"the bar stood still: {bars}"
    assert max(bars) < 90


@both_backends
def test_a_completed_job_leaves_what_later_estimates_learn_from(app, sim):
    app.config["OLLAMA_URL"] = sim.url
    sim.load_delay = 0.3
    queue.enqueue(prompt="In one word: colour of the sky?", model="llama3.2", options={"num_predict": 12})
    done = run_next(app)
    assert done.prompt_kind.startswith("word:")
    assert done.done_reason == "length" and done.cold_start is True
    assert done.load_ms >= 250 and done.prompt_eval_ms is not None
    assert done.estimated_time_remaining == 0
    history.forget()  # the claim read (and kept) the history before this job ended
    learned = history.learned("llama3.2")
    assert [(r.tokens, r.cut) for r in learned.runs] == [(12, True)]


@both_backends
def test_with_history_a_queued_job_has_an_estimate_and_its_range(app):
    completed(tokens=100, seconds=2.0)
    queue.enqueue(prompt="first", model="llama3.2")
    waiting = queue.enqueue(prompt="second", model="llama3.2")
    snap = snapshot_of(queue.get(waiting.job_id))
    assert snap["queue_position"] == 2
    assert snap["estimated_remaining_low"] <= snap["estimated_remaining"] <= snap["estimated_remaining_high"]
    # Two jobs of ~2 s each ahead on one slot, then its own run of ~100 tokens at 50 tok/s.
    assert 4000 <= snap["estimated_remaining"] <= 7000
    assert snap["time_since_submit"] >= 0


@both_backends
def test_queued_jobs_wait_their_places_at_the_pace_of_as_many_slots_as_recent_runs_used(app):
    completed(tokens=100, seconds=2.0, count=12, at_once=4)  # the worker ran 4 at a time, 2 s each
    jobs = [queue.enqueue(prompt=f"item {n}", model="llama3.2") for n in range(12)]
    snaps = sorted(snapshots_of(queue.get_many([job.job_id for job in jobs])), key=lambda snap: snap["queue_position"])
    assert [snap["queue_position"] for snap in snaps] == list(range(1, 13))
    left = [snap["estimated_remaining"] for snap in snaps]
    # Nothing runs now, yet the queue is served 4 at a time: each place adds 2 s / 4, then the
    # job's own run (~101 tokens at 50 tok/s, after a warm load of 0.2 s).
    assert [b - a for a, b in zip(left, left[1:], strict=False)] == pytest.approx([500] * 11, abs=2)
    assert left[2] - left[0] == pytest.approx(1000, abs=2)  # place 3 waits two places more than place 1
    assert left[0] == pytest.approx(500 + 2020 + 200, abs=30)
    assert all(snap["estimated_remaining_low"] <= snap["estimated_remaining"] <= snap["estimated_remaining_high"]
               for snap in snaps)


@both_backends
def test_the_servers_slots_are_the_most_run_side_by_side_or_running_now(app):
    completed(seconds=2.0, count=8, at_once=3)
    assert history.pace() == (3, (2.0, 2.0, 2.0))
    # A job run twice (say, released at a shutdown) started with its first run: its span holds its
    # wait between the runs too, so it says nothing of how long a job takes or of the slots.
    now = utcnow()
    db.session.add(Job(prompt="run twice", model="llama3.2", status=statuses.COMPLETED, runs=2,
                       started_at=now - timedelta(seconds=20), completed_at=now))
    db.session.commit()
    history.forget()
    assert history.pace() == (3, (2.0, 2.0, 2.0))
    for n in range(5):
        queue.enqueue(prompt=f"running {n}", model="llama3.2")
        queue.claim(f"w{n}", 30)
    history.forget()
    assert history.pace() == (5, (2.0, 2.0, 2.0))  # more run now than ran side by side before


@both_backends
def test_a_warm_start_waits_the_learned_warm_load_and_a_cold_one_the_cold_load(app, sim, monkeypatch):
    completed(tokens=100, load_ms=200)  # with the model loaded, a load took 0.2 s
    completed(tokens=100, load_ms=3000, cold=True)  # and 3 s when it was not
    app.config["OLLAMA_URL"] = sim.url
    writes = progress_writes(monkeypatch)
    for prompt, cold in (("cold start", True), ("warm start", False)):
        assert model_is_loaded(sim.url, "llama3.2") is not cold  # what Ollama's /api/ps says
        queue.enqueue(prompt=prompt, model="llama3.2")
        writes.clear()
        done = run_next(app)
        assert done.cold_start is cold
        first = writes[0]  # at once, before any token: the rest of the load, the prompt, then ~101 tokens at 50 tok/s
        assert first["current_tokens"] == 0
        load_left = max((3000 if cold else 200) - first["elapsed_time"], 0)  # the write's own clock, not the test's
        assert first["estimated_time_remaining"] == pytest.approx(2020 + load_left, abs=60)
        history.forget()  # the next job reads what is learned afresh (its own run is in it now)


def test_without_history_there_is_no_estimate_and_the_card_says_so(app, client):
    job = queue.enqueue(prompt="a first job", model="llama3.2")
    snap = snapshot_of(queue.get(job.job_id))
    assert snap["estimated_remaining"] is None
    assert b"no estimate yet" in client.get(f"/jobs/{job.job_id}/card").data


def test_the_card_shows_the_estimate_its_range_and_the_time_since_submit(app, client):
    completed(tokens=100, seconds=2.0)
    job = queue.enqueue(prompt="a job", model="llama3.2")
    page = client.get(f"/jobs/{job.job_id}/card").get_data(as_text=True)
    assert "about " in page and "since submit" in page and "data-remaining-low=" in page
    assert row(job.job_id).status == statuses.QUEUED


@both_backends
def test_the_time_left_is_as_of_now_and_a_running_job_is_never_0_s_away(app):
    job = queue.enqueue(prompt="running", model="llama3.2")
    queue.claim("w1", 30)
    queue.heartbeat(job.id, "w1", 30, estimated_time_remaining=4000, estimated_time_remaining_low=2000,
                    estimated_time_remaining_high=8000)
    for written_ago, shown in ((1.0, (3000, 1000, 7000)), (10.0, (1000, 500, 2000))):
        db.session.execute(sa.update(Job).where(Job.id == job.id)
                           .values(last_update_at=utcnow() - timedelta(seconds=written_ago)))
        db.session.commit()
        snap = snapshot_of(queue.get(job.job_id))
        figures = (snap["estimated_remaining"], snap["estimated_remaining_low"], snap["estimated_remaining_high"])
        assert figures == pytest.approx(shown, abs=150), written_ago


def test_a_final_chunk_with_null_durations_still_completes_the_job():
    from webapp.worker.run import learned_from

    figures = learned_from({"done": True, "load_duration": None, "prompt_eval_duration": None}, cold=False)
    assert figures["load_ms"] == 0 and figures["prompt_eval_ms"] == 0 and figures["done_reason"] is None


@both_backends
def test_a_job_back_in_the_queue_keeps_no_range_of_its_last_run(app):
    job = queue.enqueue(prompt="retry me", model="llama3.2")
    queue.claim("w1", 30)
    queue.heartbeat(job.id, "w1", 30, estimated_time_remaining=4000, estimated_time_remaining_low=2000,
                    estimated_time_remaining_high=8000, expected_tokens=120)
    queue.retry_later(job.id, "w1", 5, "Ollama went away. Trying again in 5 s.")
    back = row(job.job_id)
    assert (back.estimated_time_remaining, back.estimated_time_remaining_low,
            back.estimated_time_remaining_high, back.expected_tokens) == (None, None, None, None)
