"""The operator's CLI: `flask jobs submit/list/cancel/retry/watch` and `flask queue`, through
click's runner; `watch` against a real gunicorn, a real worker and the simulated Ollama."""
import os
import subprocess
import sys
import threading
from datetime import timedelta

import pytest
import requests
import sqlalchemy as sa

from webapp import owners, queue, turns
from webapp.batches import store as batch_store
from webapp.cli import stream
from webapp.cli.owner import OPERATOR
from webapp.cli.stream import parse
from webapp.extensions import db
from webapp.models import ApiKey, Job, utcnow

from helpers import both_backends, row, wait_until
from servers import ROOT, Gunicorn


def cli(app, *args, **kwargs):
    return app.test_cli_runner().invoke(args=list(args), **kwargs)


def submitted(app, *args):
    """A job made with `flask jobs submit`; its id (the command's stdout)."""
    result = cli(app, "jobs", "submit", *args)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def ended(status, prompt="ended", owner=OPERATOR, **fields):
    """A job that ran once and ended with `status` (written directly: the claim would take
    whichever job's turn it is)."""
    job = queue.enqueue(prompt=prompt, model="llama3.2", owner=owner, **fields)
    now = utcnow()
    db.session.execute(sa.update(Job).where(Job.id == job.id).values(
        status=status, result="partial", error_message=f"it {status}", attempts=1, runs=1, started_at=now,
        completed_at=now, current_tokens=7, completion_tokens=7))
    db.session.commit()
    return job


def key_owner(name):
    return owners.key(db.session.scalar(sa.select(ApiKey.secret_hash).where(ApiKey.name == name)))


# --- submit ---------------------------------------------------------------------------------------
@both_backends
def test_submit_queues_a_job_owned_by_the_operator_and_prints_its_id(app):
    job_id = submitted(app, "Why is the sky blue?", "--model", "qwen2.5:0.5b", "--system", "Be brief",
                       "--num-predict", "20", "--temperature", "0.5")
    job = row(job_id)
    assert (job.status, job.owner, job.model, job.system) == ("queued", "cli", "qwen2.5:0.5b", "Be brief")
    assert job.prompt == "Why is the sky blue?" and job.options == {"num_predict": 20, "temperature": 0.5}


def test_submit_takes_the_default_model_and_tells_how_to_follow(app):
    result = cli(app, "jobs", "submit", "Hello")
    job_id = result.stdout.strip()
    assert row(job_id).model == app.config["DEFAULT_MODEL"] and row(job_id).options == {}
    assert "flask jobs watch" in result.stderr and job_id in result.stderr


def test_submit_as_a_key_makes_the_keys_job(app):
    assert cli(app, "keys", "create", "deploy").exit_code == 0
    job_id = submitted(app, "Hello", "--key", "deploy")
    assert row(job_id).owner == key_owner("deploy")


@pytest.mark.parametrize(("args", "message"), [
    (["   "], "must not be empty"),
    (["Hello", "--num-predict", "0"], "num-predict"),
    (["Hello", "--temperature", "3"], "temperature"),
    (["Hello", "--key", "nobody"], "There is no key named 'nobody'"),
    (["Hello", "--watch", "--wat"], "No such option"),
])
def test_a_refused_submit_exits_3_not_a_jobs_ending(app, args, message):
    """click's own 1 and 2 would read as "failed" and "cancelled"."""
    result = cli(app, "jobs", "submit", *args)
    assert result.exit_code == 3 and message in result.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Job)) == 0


# --- list -------------------------------------------------------------------------------------------
def test_list_shows_the_operators_jobs_a_keys_or_everyones(app):
    cli(app, "keys", "create", "deploy")
    mine = submitted(app, "Mine, from the shell")
    theirs = submitted(app, "The key's", "--key", "deploy")
    browsers = queue.enqueue(prompt="A browser's", model="llama3.2", owner=owners.browser("session")).job_id
    done = ended("completed", prompt="Done already").job_id

    shown = cli(app, "jobs", "list").stdout
    assert mine in shown and done in shown and theirs not in shown and browsers not in shown
    assert "Mine, from the shell" in shown and "queued" in shown and "completed" in shown
    keys_list = cli(app, "jobs", "list", "--key", "deploy").stdout
    assert theirs in keys_list and mine not in keys_list
    everyone = cli(app, "jobs", "list", "--all").stdout
    assert all(job_id in everyone for job_id in (mine, theirs, browsers, done))
    assert "key deploy" in everyone and "browser …" in everyone
    only_done = cli(app, "jobs", "list", "--status", "completed").stdout
    assert done in only_done and mine not in only_done


def test_list_prints_a_prompt_as_text_not_as_markup(app):
    submitted(app, "[/] closes nothing [bold]")
    result = cli(app, "jobs", "list")
    assert result.exit_code == 0 and "[/] closes nothing [bold]" in result.stdout


def test_list_says_when_there_is_nothing(app):
    assert cli(app, "jobs", "list").stdout.strip() == "No jobs."


# --- cancel -----------------------------------------------------------------------------------------
@both_backends
def test_cancel_ends_a_queued_job_at_once_then_refuses_with_exit_1(app):
    job_id = submitted(app, "Never mind")
    first = cli(app, "jobs", "cancel", "--", job_id)
    assert first.exit_code == 0 and f"Cancelled job {job_id}." in first.output
    assert row(job_id).status == "cancelled"
    again = cli(app, "jobs", "cancel", "--", job_id)
    assert again.exit_code == 1 and "already ended (cancelled)" in again.output
    unknown = cli(app, "jobs", "cancel", "no-such-job")
    assert unknown.exit_code == 1 and "No job with id 'no-such-job'" in unknown.output


@both_backends
def test_cancel_of_a_running_job_asks_its_worker(app):
    job = queue.enqueue(prompt="Running", model="llama3.2", owner=owners.browser("someone"))
    queue.claim("w1", 30)
    result = cli(app, "jobs", "cancel", "--", job.job_id)
    assert result.exit_code == 0 and "Cancel requested" in result.output
    assert row(job.job_id).cancel_requested and row(job.job_id).status == "processing"


# --- retry ------------------------------------------------------------------------------------------
@both_backends
@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_retry_queues_a_new_job_like_the_ended_one_for_its_owner(app, status):
    old = ended(status, prompt="Try me again", owner=owners.browser("someone"), system="Terse",
                options={"num_predict": 12})
    result = cli(app, "jobs", "retry", "--", old.job_id)
    assert result.exit_code == 0, result.output
    new = row(result.stdout.strip())
    assert new.job_id != old.job_id and new.status == "queued"
    assert (new.prompt, new.model, new.system, new.options, new.owner) == (
        "Try me again", "llama3.2", "Terse", {"num_predict": 12}, owners.browser("someone"))
    assert row(old.job_id).status == status, "an ended job stays as it ended"


def test_retry_refuses_what_is_not_failed_or_cancelled_with_exit_3(app):
    done = ended("completed").job_id
    waiting = submitted(app, "Still waiting")
    batch = batch_store.create("cli", [{"prompt": "item", "model": "llama3.2", "system": None, "options": {}}],
                               "llama3.2")
    item = db.session.scalar(sa.select(Job).where(Job.batch_pk == batch.id))
    queue.request_cancel(item)
    refusals = {done: "is completed", waiting: "is queued", item.job_id: f"an item of batch {batch.batch_id}",
                "no-such-job": "No job with id"}
    for job_id, message in refusals.items():
        result = cli(app, "jobs", "retry", "--", job_id)
        assert result.exit_code == 3 and message in result.output, result.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Job)) == 3


# --- flask queue ------------------------------------------------------------------------------------
@both_backends
def test_queue_shows_the_line_in_fair_turns_and_the_running_jobs_by_worker_with_leases(app):
    busy, quiet = owners.browser("busy"), owners.browser("quiet")
    for n in range(4):
        queue.enqueue(prompt=f"busy {n}", model="llama3.2", owner=busy)
    running = [queue.claim("worker-a", 30), queue.claim("worker-a", 30), queue.claim("worker-b", 30)]
    lost = running[2]
    db.session.execute(sa.update(Job).where(Job.id == lost.id).values(lease_until=utcnow() - timedelta(seconds=5)))
    db.session.commit()
    late = queue.enqueue(prompt="quiet one", model="llama3.2", owner=quiet)
    result = cli(app, "queue")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "2 queued, the oldest for" in text and "3 running on 2 worker(s)." in text
    # The quiet owner has nothing running: its job, though newer, goes first.
    queued = db.session.scalars(sa.select(Job).where(Job.status == "queued")).all()
    places = turns.places(queued)
    assert places[late.id] == 1
    line = text.split("next in line")[1].split("running on")[0]
    assert line.index(late.job_id) < line.index(next(j.job_id for j in queued if j.id != late.id))
    assert "worker worker-a: 2 running" in text and "worker worker-b: 1 running" in text
    assert all(job.job_id in text for job in running)
    assert "-5." in text.split("worker worker-b")[1], "a lease that ran out shows as negative"


def test_queue_when_empty(app):
    text = cli(app, "queue").stdout
    assert "0 queued." in text and "0 running on 0 worker(s)." in text


# --- watch ------------------------------------------------------------------------------------------
def test_the_web_and_worker_processes_do_not_import_rich():
    """They register the commands at start-up but never draw: rich costs a good part of a second."""
    check = "import sys, wsgi, worker; print(sorted(m for m in sys.modules if m.split('.')[0] == 'rich'))"
    env = {**os.environ, "DATABASE_URL": "sqlite://", "SECRET_KEY": "test-secret"}
    found = subprocess.run([sys.executable, "-c", check], cwd=ROOT, env=env, capture_output=True, text=True)
    assert found.returncode == 0 and found.stdout.strip() == "[]", found.stdout + found.stderr


def test_the_stream_parser_splits_only_at_line_feeds():
    """U+2028 in the text is not a line end (str.splitlines would take it for one)."""
    chunks = [b'retry: 3000\n\nid: 7\nevent: output\ndata: {"text": "a\xe2\x80', b'\xa8b"}\r\n\n: comment\n',
              b'event: complete\ndata: {}\n\n']
    assert list(parse(chunks)) == [("7", "output", {"text": "a\u2028b"}), (None, "complete", {})]


def watched(app, job_id, url):
    return cli(app, "jobs", "watch", "--", job_id, env={"LIVEGEN_URL": url})


def tokens_of(job_id):
    db.session.commit()  # end the previous read: each poll sees the latest commit
    return row(job_id).current_tokens


def cancel_once_running(app, job_id):
    """Cancel the job from another thread once its text is arriving (as an operator would)."""
    def cancel():
        with app.app_context():
            wait_until(lambda: tokens_of(job_id) > 5, 30, "the job to run")
            queue.request_cancel(row(job_id))
            db.session.remove()
    thread = threading.Thread(target=cancel, daemon=True)
    thread.start()
    return thread


@both_backends
def test_watch_exits_0_1_2_for_completed_failed_and_cancelled(app, sim, spawn, database_url):
    sim.tokens_per_second = 100.0
    spawn(sim.url).wait_ready()
    with Gunicorn(database_url, SSE_POLL_INTERVAL="0.05") as web:
        result = cli(app, "jobs", "submit", "Tell me about lighthouses", "--num-predict", "40", "--watch",
                     env={"LIVEGEN_URL": web.url})
        job_id = db.session.scalar(sa.select(Job.job_id).where(Job.prompt == "Tell me about lighthouses"))
        assert result.exit_code == 0, result.output
        assert result.stdout == row(job_id).result + "\n", "the answer alone, on stdout"
        assert "completed" in result.stderr and "100%" in result.stderr and "40 tokens" in result.stderr

        failing = submitted(app, "No such model", "--model", "nosuch")
        failed = watched(app, failing, web.url)
        assert failed.exit_code == 1 and "failed" in failed.stderr and "nosuch" in failed.stderr
        assert failed.stdout == ""

        long_one = submitted(app, "A long story", "--num-predict", "2000")
        canceller = cancel_once_running(app, long_one)
        cancelled = watched(app, long_one, web.url)
        canceller.join(10)
        assert cancelled.exit_code == 2 and "cancelled" in cancelled.stderr, cancelled.output
        assert row(long_one).result and "─ text " in cancelled.stderr, "the text it kept stays on screen"
        assert cancelled.stdout == ""


def test_watch_reopens_a_stream_that_ends_at_its_time_limit_and_misses_no_text(app, sim, spawn, database_url,
                                                                              monkeypatch):
    sim.tokens_per_second = 40.0  # 120 tokens: three seconds, three streams of one second
    opened, real_get = [], requests.get

    def get(url, **kwargs):  # the stream's requests, noted: a reconnect says where it stood
        if url.endswith("/progress?include=output"):
            opened.append(kwargs["headers"])
        return real_get(url, **kwargs)
    monkeypatch.setattr(stream.requests, "get", get)
    spawn(sim.url).wait_ready()
    with Gunicorn(database_url, SSE_POLL_INTERVAL="0.05", SSE_MAX_DURATION="1") as web:
        job_id = submitted(app, "Outlast the stream", "--num-predict", "120")
        result = watched(app, job_id, web.url)
    assert result.exit_code == 0, result.output
    assert result.stdout == row(job_id).result + "\n" and "database" not in result.stderr
    assert len(opened) >= 2 and all("Last-Event-ID" in headers for headers in opened[1:])


def test_watch_follows_a_private_job_in_the_database(app, sim, spawn, database_url):
    """Under PRIVATE_JOBS the stream is its owner's only, and the CLI has no secret to show."""
    spawn(sim.url).wait_ready()
    with Gunicorn(database_url, PRIVATE_JOBS="1") as web:
        job_id = submitted(app, "Mine alone", "--num-predict", "30")
        result = watched(app, job_id, web.url)
    assert result.exit_code == 0, result.output
    assert "does not show this job" in " ".join(result.stderr.split())
    assert result.stdout == row(job_id).result + "\n"


def test_watch_follows_the_database_when_the_server_cannot_be_reached(app, sim, spawn):
    spawn(sim.url).wait_ready()
    job_id = submitted(app, "Nobody serves the web today", "--num-predict", "30")
    result = watched(app, job_id, "http://127.0.0.1:9")
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())  # rich wraps the note at the console's width
    assert "cannot be reached" in said and "following the job in the database instead" in said
    assert result.stdout == row(job_id).result + "\n"


def test_watch_of_no_such_job_exits_3(app):
    result = watched(app, "no-such-job", "http://127.0.0.1:9")
    assert result.exit_code == 3 and "No job with id 'no-such-job'" in result.output
