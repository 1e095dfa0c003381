"""What people read about a retried job: sentences, and the previous attempt's error shown as such
while the next attempt runs (the status route, the SSE snapshot and the card all read it)."""
from datetime import timedelta

import pytest
import sqlalchemy as sa
from markupsafe import escape
from sqlalchemy.exc import DataError

from webapp import queue
from webapp.extensions import db
from webapp.models import Job, utcnow
from webapp.ollama import MAX_MESSAGE, OllamaError, sentence
from webapp.worker.run import Run

from helpers import both_backends, lowest, row, run_next

API = "/api/v1/ai/generation"


def status(client, job_id):
    return client.get(f"{API}/{job_id}/status").get_json()["job"]


def card(client, job_id):
    return client.get(f"/jobs/{job_id}/card").get_data(as_text=True)


@pytest.mark.parametrize(("raw", "expected"), [
    ("an error was encountered while running the model: unexpected EOF",
     "an error was encountered while running the model: unexpected EOF."),
    ("timed out waiting for llama runner to start - progress 0.00 - ",
     "timed out waiting for llama runner to start - progress 0.00."),
    ("Ollama sent nothing for 300 s (stalled).", "Ollama sent nothing for 300 s (stalled)."),
    ("Is it there?", "Is it there?"),
])
def test_every_ollama_error_ends_as_a_sentence(raw, expected):
    assert sentence(raw) == expected
    assert str(OllamaError(raw, retryable=True)) == expected


@both_backends
def test_the_next_attempt_shows_the_last_ones_error_as_the_last_ones(app, client, sim):
    app.config.update(OLLAMA_URL=sim.url, MAX_ATTEMPTS=3)
    sim.set_fault("busy", times=1)
    job = queue.enqueue(prompt="Try me twice", model="llama3.2", options={"num_predict": 5})
    run_next(app, rand=lowest)

    waiting = status(client, job.job_id)
    reason = "Ollama answered 503: server busy, please try again.  maximum pending requests exceeded."
    assert (waiting["status"], waiting["last_error"]) == ("queued", reason)
    assert waiting["error_message"] == f"{reason} Trying again in under a second (attempt 2 of 3)."

    second = Run(app, queue.claim("w2", 30), "w2")  # attempt 2 is running: no "trying again" now
    running = status(client, job.job_id)
    assert (running["status"], running["attempts"], running["error_message"]) == ("processing", 2, None)
    assert running["last_error"] == reason
    assert f"Attempt 2 of 3; the last one failed: {escape(reason)}</p>" in card(client, job.job_id)

    second.run()
    done = status(client, job.job_id)
    assert done["status"] == "completed" and done["error_message"] is None
    assert "last_error" not in done  # an ended job's own message says how it ended
    assert "the last one failed" not in card(client, job.job_id)


@both_backends
def test_a_job_the_sweep_requeued_says_its_worker_was_lost(app, client):
    job = queue.enqueue(prompt="Lose me", model="llama3.2")
    queue.claim("w1", 30)
    db.session.execute(sa.update(Job).where(Job.id == job.id)
                       .values(lease_until=utcnow() - timedelta(seconds=60)))
    db.session.commit()
    assert queue.recover_expired(3) == 1
    requeued = row(job.job_id)
    assert requeued.status == "queued" and "lost" in requeued.error_message
    assert requeued.last_error == "The worker running it was lost."

    queue.claim("w2", 30)
    assert row(job.job_id).error_message is None
    assert ("Attempt 2 of 3; the last one failed: The worker running it was lost.</p>"
            in card(client, job.job_id))


def test_a_first_attempt_has_no_last_error_note(app, client):
    job = queue.enqueue(prompt="First go", model="llama3.2")
    queue.claim("w1", 30)
    running = status(client, job.job_id)
    assert running["status"] == "processing" and running["last_error"] is None
    assert "the last one failed" not in card(client, job.job_id)


def test_a_huge_error_from_ollama_is_cut_to_a_sentence_a_person_can_read():
    message = str(OllamaError("Ollama stopped with an error: " + "x" * 100_000, retryable=True))
    assert len(message) <= MAX_MESSAGE + 3 and message.endswith("….")


def test_a_final_write_the_database_refuses_for_good_is_not_retried_forever(app):
    job = queue.enqueue(prompt="refused", model="llama3.2")
    run = Run(app, queue.claim("w1", 30), "w1")

    def refuse(*args, **kwargs):
        raise DataError("UPDATE", {}, Exception("Data too long for column 'error_message'"))

    assert run._write_final(refuse) is False
    assert row(job.job_id).status == "processing"  # left to the lease sweep
