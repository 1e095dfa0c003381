"""Webhooks end to end: jobs made through the API, run by real `python worker.py` processes
(configured through the environment only), delivered to a real HTTP receiver on 127.0.0.1.

A receiver must be able to trust what arrives (signed with WEBHOOK_SECRET, checked with the
standard's own code), see `start` before `completed`, and drop a repeat by its id: a retry is the
same message. A worker killed after a job changed but before its webhook went out loses nothing:
the delivery was written with the change, and the next worker sends it. Waits poll a condition; a
lease is backdated instead of waited out.
"""
import json
import signal
from datetime import timedelta

import pytest
import sqlalchemy as sa
from conftest import app_in_context

from webapp.extensions import db
from webapp.models import WebhookDelivery, utcnow

from helpers import both_backends, row, wait_until
from receivers import HOOKED, SECRET, Receiver

API = "/api/v1/ai/generation"
# What a worker needs to send to the receiver: the secret, and leave to use plain http on loopback.
SENDING = {"WEBHOOK_SECRET": SECRET, "WEBHOOK_ALLOW_PRIVATE": "1", "WEBHOOK_ALLOW_HTTP": "1",
           "WEBHOOK_RETRY_DELAYS": "0.2,0.2,0.2"}
LONG = {"prompt": "Write a long essay about lighthouses", "options": {"num_predict": 60}}
SPEED = 100.0  # tokens a second: 0.6 s of text, so the progress writes (every 0.1 s) carry some of it


@pytest.fixture
def app(database_url):
    """The web side: the same database and secret as the workers, http to loopback allowed."""
    with app_in_context(database_url, **HOOKED) as app:
        yield app


@pytest.fixture
def receiver():
    with Receiver() as started:
        yield started


def create_job(client, webhook, events):
    response = client.post(API, json={**LONG, "webhook": webhook, "webhook_events_filter": events})
    assert response.status_code == 202, response.get_json()
    return row(response.get_json()["job_id"])


def deliveries(job_pk):
    """The job's deliveries as committed now, oldest first."""
    db.session.commit()
    query = (sa.select(WebhookDelivery).where(WebhookDelivery.job_pk == job_pk).order_by(WebhookDelivery.id)
             .execution_options(populate_existing=True))
    return list(db.session.scalars(query))


def wait_for_deliveries(job_pk, predicate, timeout, what):
    last = []

    def check():
        last[:] = [deliveries(job_pk)]
        return predicate(last[0])

    try:
        wait_until(check, timeout, what, interval=0.05)
    except AssertionError as error:
        shown = [(d.event, d.status, d.attempts, d.last_error) for d in (last[0] if last else [])]
        raise AssertionError(f"{error}; deliveries: {shown}") from None
    return last[0]


def all_delivered(rows):
    return bool(rows) and rows[-1].event == "completed" and all(d.status == "delivered" for d in rows)


def first_arrivals(tries):
    """Each message once, in the order it first arrived: what a receiver that drops repeats keeps."""
    seen, kept = set(), []
    for attempt in tries:
        if attempt.id not in seen:
            seen.add(attempt.id)
            kept.append(attempt)
    return kept


@both_backends
def test_webhooks_arrive_signed_in_order_and_a_retry_after_two_500s_is_the_same_message(client, sim, spawn, receiver):
    receiver.script = [500, 500]  # the first message is refused twice, then taken
    sim.tokens_per_second = SPEED
    spawn(sim.url, **SENDING).wait_ready()
    job = create_job(client, receiver.url + "/hooks/livegen", ["start", "output", "completed"])
    rows = wait_for_deliveries(job.id, all_delivered, 30, "every delivery of the job to be delivered")
    done = row(job.job_id)
    assert done.status == "completed"

    tries = receiver.got()
    payloads = [attempt.verified() for attempt in tries]  # every try signed with WEBHOOK_SECRET
    assert all(attempt.path == "/hooks/livegen" for attempt in tries)
    kept = first_arrivals(tries)
    assert [attempt.id for attempt in kept] == [d.delivery_id for d in rows]
    types = [attempt.verified()["type"] for attempt in kept]
    assert types[0] == "job.start" and types[-1] == "job.completed"
    assert set(types[1:-1]) == {"job.output"}  # start before everything, completed after

    start = [attempt for attempt in tries if attempt.id == rows[0].delivery_id]
    assert [attempt.answer for attempt in start] == [500, 500, 200]
    assert {attempt.body for attempt in start} == {rows[0].body.encode()}  # the same bytes each try
    assert [attempt.answer for attempt in tries[3:]] == [200] * (len(tries) - 3)
    assert len(tries) == len(rows) + 2  # nothing sent again once taken
    assert (rows[0].attempts, rows[0].last_status_code) == (3, 200)
    assert all(d.attempts == 1 for d in rows[1:])

    last = payloads[-1]
    assert (last["data"]["job_id"], last["data"]["status"]) == (job.job_id, "completed")
    assert last["data"]["output"] == done.result == sim.requests[0].text
    for told in (p for p in payloads if p["type"] == "job.output"):
        assert told["data"]["job_id"] == job.job_id and done.result.startswith(told["data"]["output"])


@both_backends
def test_a_worker_killed_after_the_change_and_before_the_send_loses_no_webhook(client, sim, spawn, receiver):
    """The first worker has no WEBHOOK_SECRET, so its sender never starts: it runs the job, records
    the deliveries with each change, and is killed with none of them sent."""
    sim.tokens_per_second = SPEED
    first = spawn(sim.url)
    job = create_job(client, receiver.url + "/hook", ["start", "output", "completed"])
    recorded = wait_for_deliveries(job.id, lambda rows: rows and rows[-1].event == "completed", 30,
                                   "the job to end with its deliveries recorded")
    assert row(job.job_id).status == "completed"
    assert all((d.status, d.attempts, d.lease_until) == ("pending", 0, None) for d in recorded)
    first.signal(signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    assert receiver.got() == []

    second = spawn(sim.url, **SENDING)
    rows = wait_for_deliveries(job.id, all_delivered, 30, "the second worker to deliver them")
    assert [d.delivery_id for d in rows] == [d.delivery_id for d in recorded]
    tries = receiver.got()
    assert [attempt.id for attempt in tries] == [d.delivery_id for d in rows]  # each once, in order
    assert [attempt.body for attempt in tries] == [d.body.encode() for d in recorded]
    types = [attempt.verified()["type"] for attempt in tries]
    assert types[0] == "job.start" and types[-1] == "job.completed" and set(types[1:-1]) == {"job.output"}
    assert "Traceback" not in second.output()


@both_backends
def test_a_delivery_held_by_a_killed_worker_is_sent_again_once_its_lease_runs_out(app, client, sim, spawn, receiver):
    receiver.script = ["hang"]  # the first try never gets an answer: the worker dies holding it
    first = spawn(sim.url, **SENDING)
    job = create_job(client, receiver.url + "/hook", ["completed"])
    hung, = receiver.wait_for(1, timeout=30)
    held, = deliveries(job.id)
    assert hung.id == held.delivery_id and hung.verified()["type"] == "job.completed"
    assert (held.status, held.attempts) == ("pending", 0) and held.lease_until > utcnow()  # leased, untried
    first.signal(signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    # The lease (WEBHOOK_TIMEOUT * 2 + 30 s) would run out by itself; backdated instead of waited for.
    db.session.execute(sa.update(WebhookDelivery).where(WebhookDelivery.id == held.id)
                       .values(lease_until=utcnow() - timedelta(seconds=1)))
    db.session.commit()

    spawn(sim.url, **SENDING)
    delivered, = wait_for_deliveries(job.id, all_delivered, 30, "the second worker to send it again")
    assert (delivered.attempts, delivered.last_status_code) == (1, 200)
    tries = receiver.got()
    assert [attempt.answer for attempt in tries] == ["hang", 200]
    assert {attempt.id for attempt in tries} == {held.delivery_id}  # the same message: a receiver drops one
    assert {attempt.body for attempt in tries} == {held.body.encode()}
    payload = tries[1].verified()
    assert payload == json.loads(held.body) and payload["data"]["status"] == "completed"
