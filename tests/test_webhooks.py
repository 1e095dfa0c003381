"""Webhooks in one process: settings, the create fields and their checks (SSRF included), the
outbox (what is recorded, in which transaction, coalesced, claimed in order, settled), the sender
against a real receiver on 127.0.0.1 (signed, retried with the same id and body, refused at send
time where the address is private), and the deliveries the API shows.

No sleeps: a retry's time is backdated, a lease run out is a lease backdated. The outbox's queue
logic runs on SQLite and on MySQL.
"""
import base64
import contextlib
import functools
import json
import socket
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa
from conftest import app_in_context
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from webapp import output, queue, turns
from webapp.config import SettingError, from_env
from webapp.extensions import db
from webapp.models import Batch, Job, WebhookDelivery, utcnow
from webapp.owners import keys
from webapp.webhooks import outbox, targets
from webapp.worker.deliveries import Sender

from helpers import both_backends, row, run_next, wait_until
from receivers import HOOKED, SECRET, Answering, Receiver, new_secret

API = "/api/v1/ai/generation"
BATCHES = f"{API}/batches"
NOWHERE = "https://hooks.example.test/livegen"  # .test never resolves: nothing is ever sent there
ALL = "start,output,completed"


@pytest.fixture
def app(database_url):
    """The suite's app (conftest's), with webhooks switched on."""
    with app_in_context(database_url, **HOOKED) as app:
        yield app


@pytest.fixture
def receiver():
    with Receiver() as started:
        yield started


@contextlib.contextmanager
def sending(app):
    """A Sender of `app` (configured as it is now), used by calling send_due() in this thread."""
    sender = Sender(app)
    try:
        yield sender
    finally:
        sender.stop(0)
        sender.pool.shutdown()
        sender.session.close()


# --- helpers -------------------------------------------------------------------------------------
def bearer(secret):
    return {"Authorization": f"Bearer {secret}"} if secret else {}


def post_job(client, webhook=NOWHERE, events=None, key=None, **fields):
    body = {"prompt": "Say hello", "options": {"num_predict": 30}, **fields}
    if webhook is not None:
        body["webhook"] = webhook
    if events is not None:
        body["webhook_events_filter"] = events
    return client.post(API, json=body, headers=bearer(key))


def create_job(client, webhook=NOWHERE, events=None, key=None, **fields):
    response = post_job(client, webhook, events, key, **fields)
    assert response.status_code == 202, response.get_json()
    return row(response.get_json()["job_id"])


def enqueue(webhook=NOWHERE, events=ALL, prompt="Say hello"):
    return queue.enqueue(prompt=prompt, model="llama3.2", options={"num_predict": 30},
                         webhook=webhook, webhook_events=events)


def deliveries(**owner):
    """The deliveries as committed now, oldest first; of one job (job_pk=) or batch (batch_pk=)."""
    db.session.commit()
    query = (sa.select(WebhookDelivery).order_by(WebhookDelivery.id)
             .execution_options(populate_existing=True))
    for column, value in owner.items():
        query = query.where(getattr(WebhookDelivery, column) == value)
    return list(db.session.scalars(query))


def events_of(rows):
    return [delivery.event for delivery in rows]


def body(delivery):
    return json.loads(delivery.body)


def taken(delivery):
    """A delivery as a sender holds it after a claim."""
    return outbox.Taken(delivery.id, delivery.delivery_id, delivery.event, delivery.url, delivery.body,
                        delivery.attempts)


def make_due(delivery_pk, **backdated):
    """Backdate `next_attempt_at` (and `lease_until` if named) by a second: due now, not later."""
    past = utcnow() - timedelta(seconds=1)
    values = {"next_attempt_at": past, **dict.fromkeys(backdated, past)}
    db.session.execute(sa.update(WebhookDelivery).where(WebhookDelivery.id == delivery_pk).values(**values))
    db.session.commit()


def beat(job, before, new, worker_id="w1"):
    """A progress write that adds `new` to the text (`before` already written), as the run makes one."""
    start = len(before)
    pieces = output.pieces(job.id, job.runs, {"text": (start, new)})
    assert queue.heartbeat(job.id, worker_id, 30, pieces=pieces, tell_output=True, output_chars=start + len(new))


def count_rows(model):
    db.session.commit()
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def assert_about(moment, expected, slack=5):
    """A scheduled time `expected` give or take the time the test took to get there."""
    assert abs((moment - expected).total_seconds()) < slack, (moment, expected)


# --- 1. settings ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "value"), [
    ("WEBHOOK_SECRET", "not-a-secret"),
    ("WEBHOOK_SECRET", "whsec_" + base64.b64encode(bytes(range(16))).decode()),  # 16 bytes: too short
    ("WEBHOOK_SECRET", "whsec_!!!not*base64!!!" * 3),
    ("WEBHOOK_RETRY_DELAYS", "soon"),
    ("WEBHOOK_RETRY_DELAYS", "5,-1,30"),
    ("WEBHOOK_RETRY_DELAYS", ","),
    ("WEBHOOK_TIMEOUT", "0"),
])
def test_a_bad_webhook_setting_is_a_setting_error_naming_it(name, value):
    with pytest.raises(SettingError) as raised:
        from_env({name: value}, "/i")
    assert str(raised.value).startswith(f"{name} must be")
    if name == "WEBHOOK_SECRET":
        assert value not in str(raised.value)  # a secret, even a wrong one, is not echoed into logs


def test_good_webhook_settings_are_read_and_the_defaults_are_safe():
    secret = new_secret()
    config = from_env({"WEBHOOK_SECRET": secret, "WEBHOOK_RETRY_DELAYS": "0.5, 2,60", "WEBHOOK_TIMEOUT": "3",
                       "WEBHOOK_ALLOW_HTTP": "1", "WEBHOOK_ALLOW_PRIVATE": "1"}, "/i")
    assert config["WEBHOOK_SECRET"] == secret and config["WEBHOOK_RETRY_DELAYS"] == (0.5, 2.0, 60.0)
    assert config["WEBHOOK_TIMEOUT"] == 3.0 and config["WEBHOOK_ALLOW_HTTP"] and config["WEBHOOK_ALLOW_PRIVATE"]
    defaults = from_env({}, "/i")
    assert defaults["WEBHOOK_SECRET"] is None
    assert not defaults["WEBHOOK_ALLOW_HTTP"] and not defaults["WEBHOOK_ALLOW_PRIVATE"]
    assert defaults["WEBHOOK_RETRY_DELAYS"] == (5, 300, 1800, 7200, 18000, 36000, 36000)


# --- 2. the create fields ------------------------------------------------------------------------
def test_a_webhook_on_create_is_kept_with_its_events_in_the_order_they_happen(client):
    response = post_job(client, events=["completed", "start"])
    assert response.status_code == 202
    made = response.get_json()
    assert made["links"]["webhooks"] == f"{API}/{made['job_id']}/webhooks"
    job = row(made["job_id"])
    assert (job.webhook, job.webhook_events) == (NOWHERE, "start,completed")
    # Without a filter: `completed` only. Without a webhook: nothing, and no link to deliveries.
    assert create_job(client).webhook_events == "completed"
    plain = post_job(client, webhook=None).get_json()
    assert "webhooks" not in plain["links"]
    assert (row(plain["job_id"]).webhook, row(plain["job_id"]).webhook_events) == (None, None)


@pytest.mark.parametrize(("fields", "field", "words"), [
    ({"webhook": "http://hooks.example.test/x"}, "webhook", "WEBHOOK_ALLOW_HTTP"),
    ({"webhook": "ftp://hooks.example.test/x"}, "webhook", "https"),
    ({"webhook": "hooks.example.test/x"}, "webhook", "https"),
    ({"webhook": "https://user:pass@hooks.example.test/x"}, "webhook", "user name or password"),
    ({"webhook": "https://hooks.example.test/" + "a" * (targets.MAX_URL - 25)}, "webhook", "2000"),
    ({"webhook": ""}, "webhook", "URL"),
    ({"webhook": 42}, "webhook", "URL"),
    ({"webhook": NOWHERE, "webhook_events_filter": ["start", "finished"]}, "webhook_events_filter", "completed"),
    ({"webhook": NOWHERE, "webhook_events_filter": "completed"}, "webhook_events_filter", "list"),
    ({"webhook": NOWHERE, "webhook_events_filter": []}, "webhook_events_filter", "list"),
    ({"webhook": NOWHERE, "webhook_events_filter": [1]}, "webhook_events_filter", "list"),
    ({"webhook": NOWHERE, "webhook_events_filter": ["start"] * 4}, "webhook_events_filter", "list"),
    ({"webhook_events_filter": ["completed"]}, "webhook_events_filter", "webhook"),
])
def test_a_bad_webhook_field_is_400_naming_it_and_nothing_is_made(app, client, fields, field, words):
    app.config["WEBHOOK_ALLOW_HTTP"] = False
    response = client.post(API, json={"prompt": "Say hello", **fields})
    assert response.status_code == 400, response.get_json()
    answer = response.get_json()
    assert answer["success"] is False and answer["field"] == field
    assert answer["error"].startswith(f"{field}: ") and words in answer["error"]
    assert count_rows(Job) == 0


def test_the_longest_url_and_http_are_accepted_when_allowed(app, client):
    longest = "https://hooks.example.test/" + "a" * (targets.MAX_URL - 27)
    assert len(longest) == targets.MAX_URL
    assert row(create_job(client, webhook=longest).job_id).webhook == longest  # the column holds it whole
    assert post_job(client, webhook=longest + "a").status_code == 400
    app.config["WEBHOOK_ALLOW_HTTP"] = True
    assert post_job(client, webhook="http://hooks.example.test/x").status_code == 202
    app.config["WEBHOOK_ALLOW_HTTP"] = False
    assert post_job(client, webhook="http://hooks.example.test/x").status_code == 400


def test_without_a_secret_a_webhook_is_refused_on_both_creates(app, client):
    app.config["WEBHOOK_SECRET"] = None
    for path, extra in ((API, {"prompt": "Say hello"}), (BATCHES, {"items": [{"prompt": "Say hello"}]})):
        response = client.post(path, json={**extra, "webhook": NOWHERE})
        assert response.status_code == 400
        assert response.get_json()["field"] == "webhook" and "WEBHOOK_SECRET" in response.get_json()["error"]
    assert (count_rows(Job), count_rows(Batch)) == (0, 0)
    assert client.post(API, json={"prompt": "Say hello"}).status_code == 202  # no webhook asked: fine


@pytest.mark.parametrize("url", ["https://[::1/hook", "http://[/", "http://a..b.example.test/hook",
                                 "https://x:99999/hook"])
@pytest.mark.parametrize("path", [API, BATCHES])
def test_a_malformed_webhook_url_is_400_naming_it_not_a_500(app, client, url, path):
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    request = {"items": [{"prompt": "Say hello"}]} if path == BATCHES else {"prompt": "Say hello"}
    response = client.post(path, json={**request, "webhook": url})
    assert response.status_code == 400
    assert response.get_json()["field"] == "webhook"


# --- 3. SSRF: at create ----------------------------------------------------------------------------
PRIVATE_TARGETS = ["https://127.0.0.1/hook", "https://10.0.0.1/hook", "http://169.254.169.254/latest/meta-data/",
                   "https://[::1]:8443/hook", "https://localhost/hook"]


@pytest.mark.parametrize("url", PRIVATE_TARGETS)
def test_a_private_target_is_refused_at_create_unless_allowed(app, client, url):
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    for path, extra in ((API, {"prompt": "Say hello"}), (BATCHES, {"items": [{"prompt": "Say hello"}]})):
        response = client.post(path, json={**extra, "webhook": url})
        assert response.status_code == 400, response.get_json()
        answer = response.get_json()
        assert answer["field"] == "webhook" and "WEBHOOK_ALLOW_PRIVATE" in answer["error"]
    assert (count_rows(Job), count_rows(Batch), count_rows(WebhookDelivery)) == (0, 0, 0)
    app.config["WEBHOOK_ALLOW_PRIVATE"] = True  # the refusal is this setting's, not the URL's shape
    assert post_job(client, webhook=url).status_code == 202


def test_the_address_check_covers_mapped_and_numeric_forms_and_lets_public_ones_through():
    for address in ("127.0.0.1", "10.0.0.1", "169.254.169.254", "::1", "::ffff:127.0.0.1", "0.0.0.0",
                    "100.64.0.1", "fd00::1", "fe80::1%eth0", "192.168.1.1"):
        assert targets.forbidden(address), address
    for address in ("93.184.215.14", "2606:4700::1111"):
        assert not targets.forbidden(address), address
    with pytest.raises(targets.Refused):
        targets.check("https://2130706433/hook")  # 127.0.0.1 written as one number


# --- 4. SSRF: at send ------------------------------------------------------------------------------
def test_a_delivery_to_a_private_address_is_refused_at_send(app, client, receiver):
    """Recorded while private targets were allowed (or written into the table by hand, to a name
    that resolves to loopback), then sent by a worker where they are not: nothing arrives."""
    job = create_job(client, webhook=receiver.url + "/hook", events=["start", "completed"])
    queue.request_cancel(job)  # recorded: its `completed`
    hand_made = create_job(client, webhook=receiver.url + "/hook")
    db.session.execute(sa.insert(WebhookDelivery).values(
        delivery_id=outbox.new_delivery_id(), job_pk=hand_made.id, event="completed",
        url=f"http://localhost:{receiver.port}/hook", body="{}", status="pending", attempts=0,
        next_attempt_at=utcnow(), created_at=utcnow()))
    db.session.commit()
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    with sending(app) as sender:
        assert sender.send_due() == 2
    assert receiver.got() == []
    for delivery in deliveries():
        assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, None)
        # `localhost` may resolve to ::1 first: either way, a loopback address named as such.
        assert delivery.last_error.startswith("Refused: the address "), delivery.last_error
        assert "is loopback, private, link-local or metadata" in delivery.last_error
        assert delivery.lease_until is None and delivery.next_attempt_at > utcnow()
    # The same rows, sent where private targets are allowed, do arrive: the refusal was the setting's.
    app.config["WEBHOOK_ALLOW_PRIVATE"] = True
    for delivery in deliveries():
        make_due(delivery.id)
    with sending(app) as sender:
        assert sender.send_due() == 2
    assert len(receiver.got()) == 2 and {d.status for d in deliveries()} == {"delivered"}


def test_a_name_public_at_create_and_loopback_at_send_is_refused_at_send(app, client, receiver, monkeypatch):
    """DNS rebinding: the name passed the create's check, then answers 127.0.0.1."""
    name, answer = "rebind.example.test", {"address": "93.184.215.14"}
    real = socket.getaddrinfo

    def resolver(host, port, *args, **kwargs):
        if host == name:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer["address"], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    # The create's check takes its resolver as a default argument, bound at import: hand it ours.
    monkeypatch.setattr(targets, "check", functools.partial(targets.check, resolve=resolver))
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    job = create_job(client, webhook=f"http://{name}:{receiver.port}/hook")
    assert job.webhook == f"http://{name}:{receiver.port}/hook"
    queue.request_cancel(job)
    answer["address"] = "127.0.0.1"
    assert post_job(client, webhook=f"http://{name}:{receiver.port}/hook").status_code == 400  # the check asks it
    with sending(app) as sender:
        assert sender.send_due() == 1
    assert receiver.got() == []
    refused, = deliveries()
    assert refused.status == "pending" and refused.attempts == 1
    assert refused.last_error.startswith("Refused: the address 127.0.0.1"), refused.last_error


# --- 5. what is recorded, and when ------------------------------------------------------------------
@both_backends
def test_no_webhook_no_delivery_rows(app, client, sim):
    app.config["OLLAMA_URL"] = sim.url
    create_job(client, webhook=None)
    run_next(app)
    cancelled = create_job(client, webhook=None)
    assert client.post(f"{API}/{cancelled.job_id}/cancel").status_code == 202
    batch = client.post(BATCHES, json={"items": [{"prompt": "a"}], "options": {"num_predict": 5}})
    assert batch.status_code == 202
    run_next(app)
    assert count_rows(WebhookDelivery) == 0


@both_backends
@pytest.mark.parametrize(("asked", "recorded"), [
    (None, ["completed"]),
    (["start"], ["start"]),
    (["output"], ["output"]),
    (["completed"], ["completed"]),
    (["start", "output", "completed"], ["start", "output", "completed"]),
])
def test_the_events_filter_decides_what_is_recorded(client, asked, recorded):
    job = create_job(client, events=asked)
    claimed = queue.claim("w1", 30)
    assert claimed.id == job.id
    beat(claimed, "", "Hello")
    assert queue.finish(job.id, "w1", "completed", result="Hello", output_chars=5)
    assert events_of(deliveries(job_pk=job.id)) == recorded


@both_backends
def test_start_is_recorded_only_by_the_claim_that_changed_the_row(client, monkeypatch):
    job = create_job(client, events=["start"])
    assert queue.claim("w1", 30).id == job.id
    started, = deliveries(job_pk=job.id)
    assert (started.event, body(started)["data"]["status"]) == ("start", "processing")
    # A second worker that read the same job as next, before the first one's commit: its
    # conditional UPDATE changes nothing, and so it records nothing.
    monkeypatch.setattr(turns, "next_job", lambda now: job.id)
    assert queue.claim("w2", 30) is None
    assert deliveries(job_pk=job.id) == [started]
    assert row(job.job_id).worker_id == "w1"


@both_backends
def test_start_is_in_the_claims_transaction_a_failed_record_undoes_the_claim(client, monkeypatch):
    job = create_job(client, events=["start"])

    def broken(job, event):
        raise RuntimeError("the delivery could not be written")

    monkeypatch.setattr(outbox, "job_body", broken)
    with pytest.raises(RuntimeError):
        queue.claim("w1", 30)
    db.session.rollback()
    again = row(job.job_id)
    assert (again.status, again.worker_id, again.attempts) == ("queued", None, 0)
    assert deliveries() == []


@both_backends
def test_completed_is_recorded_for_cancelled_and_failed_jobs(app, client):
    # A queued job cancelled through the API.
    cancelled = create_job(client)
    assert client.post(f"{API}/{cancelled.job_id}/cancel").status_code == 202
    told, = deliveries(job_pk=cancelled.id)
    assert told.event == "completed" and body(told)["type"] == "job.completed"
    assert body(told)["data"]["status"] == "cancelled" and body(told)["data"]["output"] == ""

    # A job whose worker was lost: requeued by the sweep (nothing to tell), then failed by it.
    lost = create_job(client, events=["completed"])
    for attempt, told_now in ((1, []), (2, ["completed"])):
        assert queue.claim(f"w{attempt}", 30).id == lost.id
        beat(row(lost.job_id), "", "Half a sentence", worker_id=f"w{attempt}")
        db.session.execute(sa.update(Job).where(Job.id == lost.id).values(lease_until=utcnow() - timedelta(seconds=5)))
        db.session.commit()
        assert queue.recover_expired(max_attempts=2) == 1
        assert events_of(deliveries(job_pk=lost.id)) == told_now  # a requeue is not an end
    ended, = deliveries(job_pk=lost.id)
    data = body(ended)["data"]
    assert (data["job_id"], data["status"]) == (lost.job_id, "failed")
    assert "lost 2 times" in data["error_message"] and data["output"] == "Half a sentence"

    # A job the worker itself ends as failed.
    failing = create_job(client)
    assert queue.claim("w3", 30).id == failing.id
    assert queue.finish(failing.id, "w3", "failed", error_message="Ollama said no.")
    said, = deliveries(job_pk=failing.id)
    assert (body(said)["data"]["status"], body(said)["data"]["error_message"]) == ("failed", "Ollama said no.")


@both_backends
def test_output_is_coalesced_until_a_sender_takes_it(client):
    job = create_job(client, events=["output"])
    claimed = queue.claim("w1", 30)
    before = utcnow()
    beat(claimed, "", "Hello")
    beat(claimed, "Hello", ", world")
    first, = deliveries(job_pk=job.id)  # two writes before any try: one delivery, the newer text
    assert body(first)["type"] == "job.output" and body(first)["data"]["output"] == "Hello, world"
    assert first.next_attempt_at >= before + outbox.OUTPUT_EVERY - timedelta(milliseconds=5)

    # Claimed by a sender: its body is what is being sent, and stays so; newer text goes to a new one.
    sent, = outbox.claim(utcnow() + timedelta(seconds=1), 60)
    assert sent.id == first.id
    beat(claimed, "Hello, world", "!")
    kept, second = deliveries(job_pk=job.id)
    assert kept.body == first.body and body(second)["data"]["output"] == "Hello, world!"
    # Tried and failed: still not rewritten (its retry carries the same bytes); the new one takes the text.
    outbox.settle(sent, False, 500, "The receiver answered 500.", (5.0,))
    beat(claimed, "Hello, world!", " Bye.")
    kept, second = deliveries(job_pk=job.id)
    assert kept.body == first.body and body(second)["data"]["output"] == "Hello, world! Bye."


@both_backends
def test_a_run_records_start_one_output_and_completed_with_the_job_and_its_text(app, client, sim):
    app.config["OLLAMA_URL"] = sim.url
    sim.tokens_per_second = 100.0  # 0.6 s of text: progress writes (every 0.05 s) carry some of it
    job = create_job(client, events=["start", "output", "completed"], prompt="Write a long essay about lighthouses",
                     options={"num_predict": 60})
    done = run_next(app)
    assert done.status == "completed"
    rows = deliveries(job_pk=job.id)
    # Every progress write came before any try: one `output`, holding the newest text then.
    assert events_of(rows) == ["start", "output", "completed"]
    start, told, end = (body(delivery) for delivery in rows)
    assert [b["type"] for b in (start, told, end)] == ["job.start", "job.output", "job.completed"]
    assert all(b["data"]["job_id"] == job.job_id for b in (start, told, end))
    assert start["data"]["status"] == "processing" and "output" not in start["data"]
    assert told["data"]["status"] == "processing" and told["data"]["output"]
    assert done.result.startswith(told["data"]["output"])
    assert end["data"]["status"] == "completed" and end["data"]["output"] == done.result == sim.requests[0].text
    assert end["data"]["completion_tokens"] == 60
    assert all(b["timestamp"].endswith("Z") for b in (start, told, end))
    assert {d.url for d in rows} == {NOWHERE} and {d.status for d in rows} == {"pending"}
    assert len({d.delivery_id for d in rows}) == 3 and all(d.delivery_id.startswith("msg_") for d in rows)


# --- 6. the claim and the settle --------------------------------------------------------------------
@both_backends
def test_claim_takes_each_jobs_oldest_pending_delivery_and_respects_time_and_leases(app):
    a = enqueue(events=ALL)
    claimed = queue.claim("w1", 30)
    beat(claimed, "", "Hi")
    assert queue.finish(a.id, "w1", "completed", result="Hi", output_chars=2)
    b = enqueue(events="completed")
    queue.request_cancel(b)
    a_start, a_output, a_end = deliveries(job_pk=a.id)
    b_end, = deliveries(job_pk=b.id)
    soon = utcnow() + timedelta(seconds=2)  # the output's half-second has passed

    first = outbox.claim(soon, 60)
    assert {t.id for t in first} == {a_start.id, b_end.id}  # one per job: its oldest
    outbox.settle(next(t for t in first if t.id == b_end.id), True, 200, None, (300.0,))
    outbox.settle(next(t for t in first if t.id == a_start.id), True, 200, None, (300.0,))
    after_start, = outbox.claim(soon, 60)
    assert after_start.id == a_output.id  # not `completed`: the output is older
    outbox.settle(after_start, False, 500, "The receiver answered 500.", (300.0,))
    # The end was recorded behind it: the failed output gives way, and `completed` is next.
    assert deliveries(job_pk=a.id)[1].status == "superseded"
    end, = outbox.claim(soon, 60)
    assert end.id == a_end.id
    outbox.settle(end, False, 500, "The receiver answered 500.", (300.0,))

    # `completed` waits its 300 s: nothing is due.
    assert outbox.claim(soon, 60) == []
    later = utcnow() + timedelta(seconds=301)
    retried, = outbox.claim(later, 60)
    assert retried.id == a_end.id and retried.attempts == 1
    # Leased for 60 s: not taken again within them, taken again after (its sender died).
    assert outbox.claim(later + timedelta(seconds=59), 60) == []
    again, = outbox.claim(later + timedelta(seconds=61), 60)
    assert again.id == a_end.id
    # Its tries run out: failed, and nothing of the job is left to send.
    outbox.settle(again, False, 500, "The receiver answered 500.", (300.0,))
    assert deliveries(job_pk=a.id)[2].status == "failed"
    assert outbox.claim(later + timedelta(seconds=62), 60) == []


@both_backends
def test_two_claimers_never_take_the_same_delivery(app):
    count = 24
    for n in range(count):
        queue.request_cancel(enqueue(events="completed", prompt=f"job {n}"))
    pending = {delivery.id for delivery in deliveries()}
    assert len(pending) == count
    gate, results, errors = threading.Barrier(2), [[], []], []

    def claimer(index):
        with app.app_context():
            try:
                gate.wait(10)
                results[index] = outbox.claim(utcnow(), 60, limit=count)
            except Exception as error:  # shown by the assert below
                errors.append(error)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=claimer, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    ids = [t.id for result in results for t in result]
    assert len(ids) == len(set(ids)) and set(ids) == pending
    assert all(d.lease_until is not None for d in deliveries())
    assert outbox.claim(utcnow(), 60, limit=count) == []  # all leased: a third claimer gets none


@both_backends
def test_settle_delivers_or_reschedules_by_the_delays_then_fails(client):
    queue.request_cancel(create_job(client))
    delivery, = deliveries()
    delays = (5.0, 60.0)
    for tries, wait in ((1, 5.0), (2, 60.0)):
        before = utcnow()
        outbox.settle(taken(delivery), False, 503, "The receiver answered 503.", delays)
        delivery, = deliveries()
        assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", tries, 503)
        assert_about(delivery.next_attempt_at, before + timedelta(seconds=wait), slack=2)
    outbox.settle(taken(delivery), False, None, "The receiver did not answer in time.", delays)
    delivery, = deliveries()  # len(delays) + 1 tries: failed, and never taken again
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("failed", 3,
                                                                         "The receiver did not answer in time.")
    assert outbox.claim(utcnow() + timedelta(days=1), 60) == []

    queue.request_cancel(create_job(client))
    fresh = deliveries()[-1]
    outbox.settle(taken(fresh), False, 500, "The receiver answered 500.", delays)
    outbox.settle(taken(deliveries()[-1]), True, 204, None, delays)
    done = deliveries()[-1]
    assert (done.status, done.attempts, done.last_status_code, done.last_error) == ("delivered", 2, 204, None)
    assert done.delivered_at is not None and done.lease_until is None


# --- 7. the sender against a real receiver ----------------------------------------------------------
@both_backends
def test_the_sender_signs_retries_with_the_same_id_and_body_and_delivers(app, client, receiver):
    receiver.script = [500, 500]
    job = create_job(client, webhook=receiver.url + "/hooks/livegen", prompt="Grüße, 世界")
    assert client.post(f"{API}/{job.job_id}/cancel").status_code == 202
    with sending(app) as sender:
        assert sender.send_due() == 1
        delivery, = deliveries()
        assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 500)
        assert delivery.last_error == "The receiver answered 500."
        assert sender.send_due() == 0  # its retry is 5 s away (WEBHOOK_RETRY_DELAYS)
        assert_about(delivery.next_attempt_at, utcnow() + timedelta(seconds=5), slack=3)
        make_due(delivery.id)
        assert sender.send_due() == 1
        delivery, = deliveries()
        assert_about(delivery.next_attempt_at, utcnow() + timedelta(seconds=300), slack=3)  # the second delay
        make_due(delivery.id)
        assert sender.send_due() == 1
    delivery, = deliveries()
    assert (delivery.status, delivery.attempts, delivery.last_status_code, delivery.last_error) == (
        "delivered", 3, 200, None)

    tries = receiver.got()
    assert [t.answer for t in tries] == [500, 500, 200]
    assert {t.id for t in tries} == {delivery.delivery_id}  # one message, tried three times: de-duplicable
    assert {t.body for t in tries} == {delivery.body.encode()}
    assert all(t.path == "/hooks/livegen" for t in tries)
    for attempt in tries:
        payload = attempt.verified()
        assert payload["type"] == "job.completed" and payload["data"]["job_id"] == job.job_id
        assert payload["data"]["status"] == "cancelled" and payload["data"]["prompt"] == "Grüße, 世界"
        assert attempt.headers["content-type"] == "application/json"
        assert attempt.headers["webhook-signature"].startswith("v1,")
        with pytest.raises(WebhookVerificationError):
            attempt.verified(new_secret())  # the signature is the secret's, not any secret's
        with pytest.raises(WebhookVerificationError):
            Webhook(SECRET).verify(attempt.body.replace(b"cancelled", b"completed"), attempt.headers)


@both_backends
def test_the_sender_gives_up_after_its_last_retry(app, client, receiver):
    receiver.script = [500] * 10
    queue.request_cancel(create_job(client, webhook=receiver.url + "/hook"))
    with sending(app) as sender:
        for _ in range(3):  # WEBHOOK_RETRY_DELAYS has 2: 3 tries in all
            make_due(deliveries()[0].id)
            assert sender.send_due() == 1
        make_due(deliveries()[0].id)
        assert sender.send_due() == 0
    delivery, = deliveries()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 3, 500)
    assert len(receiver.got()) == 3


@pytest.mark.parametrize(("answer", "code", "error"), [
    (302, 302, "The receiver answered 302."),  # a redirect is not followed (it could point anywhere)
    ("hang", None, "The receiver did not answer in time."),
])
def test_a_redirect_or_a_silent_receiver_is_a_failed_try(app, client, receiver, answer, code, error):
    receiver.script = [answer]
    app.config["WEBHOOK_TIMEOUT"] = 0.3
    queue.request_cancel(create_job(client, webhook=receiver.url + "/hook"))
    with sending(app) as sender:
        assert sender.send_due() == 1
    delivery, = deliveries()
    assert (delivery.status, delivery.attempts, delivery.last_status_code, delivery.last_error) == (
        "pending", 1, code, error)
    assert [t.path for t in receiver.got()] == ["/hook"]  # never /elsewhere


def test_a_url_the_http_client_cannot_parse_is_a_failed_try_not_the_end_of_the_sender(app, client, receiver):
    """Create refuses such a URL now; a row that holds one anyway (an older release let it
    through) must cost one failed try, not the sender."""
    for url in (receiver.url + "/unparsable", receiver.url + "/hook"):
        queue.request_cancel(create_job(client, webhook=url))
    db.session.execute(sa.update(WebhookDelivery).where(WebhookDelivery.url.endswith("/unparsable"))
                       .values(url="http://a..b.example.test/hook"))
    db.session.commit()
    with sending(app) as sender:
        assert sender.send_due() == 2
    bad, good = deliveries()
    assert good.status == "delivered" and len(receiver.got()) == 1
    assert (bad.status, bad.attempts) == ("pending", 1)
    assert bad.last_error.startswith("Could not reach the receiver"), bad.last_error


@both_backends
def test_a_delivery_leased_by_a_sender_that_died_is_sent_again_once_its_lease_runs_out(app, client, receiver):
    queue.request_cancel(create_job(client, webhook=receiver.url + "/hook"))
    held, = outbox.claim(utcnow(), 300)  # a sender took it, then died before it could settle it
    with sending(app) as sender:
        assert sender.send_due() == 0  # leased: not sent twice at once
        assert receiver.got() == []
        make_due(held.id, lease_until=True)
        assert sender.send_due() == 1
    delivery, = deliveries()
    assert (delivery.status, delivery.attempts) == ("delivered", 1)
    sent, = receiver.got()
    assert sent.id == held.delivery_id and sent.body == held.body.encode() and sent.verified()


@both_backends
def test_the_sender_keeps_each_jobs_order(app, client, receiver):
    job = create_job(client, webhook=receiver.url + "/hook", events=["start", "output", "completed"])
    claimed = queue.claim("w1", 30)
    beat(claimed, "", "Hello")
    assert queue.finish(job.id, "w1", "completed", result="Hello", output_chars=5)
    receiver.script = [500]
    with sending(app) as sender:
        assert sender.send_due() == 1  # `start` alone: the others wait behind it
        assert [t.verified()["type"] for t in receiver.got()] == ["job.start"]
        for delivery in deliveries():
            make_due(delivery.id)
        for _ in range(3):
            assert sender.send_due() == 1
    assert [t.verified()["type"] for t in receiver.got()] == ["job.start", "job.start", "job.output", "job.completed"]
    assert {d.status for d in deliveries()} == {"delivered"}


# --- 8. what the API shows ---------------------------------------------------------------------------
@both_backends
def test_a_jobs_deliveries_are_shown_to_its_owner_only(app, client, receiver):
    alice, bob = keys.create("alice"), keys.create("bob")
    job = create_job(client, webhook=receiver.url + "/hook", events=["start", "completed"], key=alice)
    plain = create_job(client, webhook=None, key=alice)
    assert client.post(f"{API}/{job.job_id}/cancel", headers=bearer(alice)).status_code == 202
    with sending(app) as sender:
        assert sender.send_due() == 1

    shown = client.get(f"{API}/{job.job_id}/webhooks", headers=bearer(alice))
    assert shown.status_code == 200
    answer = shown.get_json()
    assert (answer["webhook"], answer["events"]) == (receiver.url + "/hook", ["start", "completed"])
    delivery, = answer["deliveries"]
    assert delivery["id"] == receiver.got()[0].id
    assert (delivery["event"], delivery["status"], delivery["attempts"], delivery["last_status_code"]) == (
        "completed", "delivered", 1, 200)
    assert delivery["delivered_at"].endswith("Z") and delivery["next_attempt_at"] is None
    assert delivery["last_error"] is None

    assert client.get(f"{API}/{job.job_id}/webhooks", headers=bearer(bob)).status_code == 404
    assert client.get(f"{API}/{job.job_id}/webhooks").status_code == 401
    assert client.get(f"{API}/no-such-job/webhooks", headers=bearer(alice)).status_code == 404
    none = client.get(f"{API}/{plain.job_id}/webhooks", headers=bearer(alice)).get_json()
    assert (none["webhook"], none["events"], none["deliveries"]) == (None, [], [])


# --- 9. batches -----------------------------------------------------------------------------------
@both_backends
def test_a_batch_tells_its_start_its_items_coalesced_and_its_end(app, client, sim):
    app.config["OLLAMA_URL"] = sim.url
    alice, bob = keys.create("alice"), keys.create("bob")
    made = client.post(BATCHES, headers=bearer(alice), json={
        "items": [{"prompt": f"Item {n}"} for n in range(3)], "options": {"num_predict": 5},
        "webhook": NOWHERE, "webhook_events_filter": ["start", "output", "completed"]})
    assert made.status_code == 202, made.get_json()
    batch_id = made.get_json()["batch_id"]
    batch = db.session.scalar(sa.select(Batch).where(Batch.batch_id == batch_id))
    start, = deliveries(batch_pk=batch.id)  # in the create's transaction
    assert body(start)["type"] == "batch.start"
    assert (body(start)["data"]["batch_id"], body(start)["data"]["total"]) == (batch_id, 3)

    for _ in range(3):
        assert run_next(app).status == "completed"
    rows = deliveries(batch_pk=batch.id)
    assert events_of(rows) == ["start", "output", "completed"]  # two items' ends: one output, the newer
    told, end = body(rows[1]), body(rows[2])
    assert told["type"] == "batch.output" and told["data"]["ended"] == 2 and told["data"]["status"] == "processing"
    assert end["type"] == "batch.completed"
    assert (end["data"]["batch_id"], end["data"]["status"], end["data"]["completed"]) == (batch_id, "completed", 3)
    assert deliveries(job_pk=None) == deliveries()  # the items tell nothing of their own

    shown = client.get(f"{BATCHES}/{batch_id}/webhooks", headers=bearer(alice))
    assert shown.status_code == 200
    assert [d["event"] for d in shown.get_json()["deliveries"]] == ["start", "output", "completed"]
    assert [d["id"] for d in shown.get_json()["deliveries"]] == [d.delivery_id for d in rows]
    assert client.get(f"{BATCHES}/{batch_id}/webhooks", headers=bearer(bob)).status_code == 404


@both_backends
def test_a_cancelled_batch_tells_its_end_with_the_default_filter(client):
    made = client.post(BATCHES, json={"items": [{"prompt": "a"}, {"prompt": "b"}], "webhook": NOWHERE})
    assert made.status_code == 202
    batch_id = made.get_json()["batch_id"]
    assert client.post(f"{BATCHES}/{batch_id}/cancel").status_code == 202
    end, = deliveries()  # no `start`: the default filter is `completed` only
    assert body(end)["type"] == "batch.completed"
    assert (body(end)["data"]["batch_id"], body(end)["data"]["status"]) == (batch_id, "cancelled")
    assert body(end)["data"]["cancelled"] == 2


# --- 10. after the review: superseded outputs, the fenced settle, the newest 100, pruning ----------
def soon():
    """A moment past an `output`'s half-second wait (and before any retry's 5 s)."""
    return utcnow() + timedelta(seconds=1)


def add_delivery(job_pk, status, at, event="output"):
    """A delivery of `job_pk` written as a finished one is (no API makes one of a chosen age)."""
    db.session.execute(sa.insert(WebhookDelivery).values(
        delivery_id=outbox.new_delivery_id(), job_pk=job_pk, event=event, url=NOWHERE, body="{}", status=status,
        attempts=1, next_attempt_at=at, created_at=at))
    db.session.commit()


@both_backends
@pytest.mark.parametrize("subject", ["job", "batch"])
def test_an_output_that_failed_a_try_gives_way_to_newer_text_and_never_holds_completed_back(client, subject):
    delays = (5.0, 300.0)
    if subject == "job":
        job = create_job(client, events=["output", "completed"])
        source, claimed, written = {"job_pk": job.id}, queue.claim("w1", 30), []

        def newer_text():
            before = "".join(written)
            written.append(f" part {len(written)}.")
            beat(claimed, before, written[-1])

        def the_end():
            text = "".join(written)
            assert queue.finish(job.id, "w1", "completed", result=text, output_chars=len(text))
    else:
        made = client.post(BATCHES, json={"items": [{"prompt": "a"}, {"prompt": "b"}], "webhook": NOWHERE,
                                          "webhook_events_filter": ["output", "completed"]})
        assert made.status_code == 202, made.get_json()
        batch = db.session.scalar(sa.select(Batch).where(Batch.batch_id == made.get_json()["batch_id"]))
        source = {"batch_pk": batch.id}

        def newer_text():  # an item ended: what the item's end records, in its own transaction
            outbox.record_batch_output(batch.id)
            db.session.commit()

        def the_end():
            outbox.record_batch(batch.id, "completed")
            db.session.commit()

    newer_text()
    first, = outbox.claim(soon(), 60)
    outbox.settle(first, False, 500, "The receiver answered 500.", delays)
    newer_text()  # the failed one is not refreshed (its retry would carry other bytes): a new one, and it gives way
    stale, fresh = deliveries(**source)
    assert (stale.id, stale.status, stale.attempts) == (first.id, "superseded", 1)
    assert (fresh.event, fresh.status, fresh.attempts) == ("output", "pending", 0)
    second, = outbox.claim(soon(), 60)
    assert second.id == fresh.id  # the superseded one is not taken, though it was due first
    outbox.settle(second, False, 500, "The receiver answered 500.", delays)

    the_end()
    rows = deliveries(**source)
    assert [(d.event, d.status) for d in rows] == [("output", "superseded"), ("output", "superseded"),
                                                   ("completed", "pending")]
    # `completed` goes now, not after the failed output's retries (5 s, then 5 min, ... a day).
    end, = outbox.claim(utcnow(), 60)
    assert end.id == rows[2].id
    outbox.settle(end, True, 200, None, delays)
    assert outbox.claim(utcnow() + timedelta(days=2), 60) == []  # a superseded delivery is never tried again
    assert [d.status for d in deliveries(**source)] == ["superseded", "superseded", "delivered"]


@both_backends
def test_an_output_being_tried_is_not_superseded_and_its_result_is_recorded(client):
    job = create_job(client, events=["output", "completed"])
    claimed = queue.claim("w1", 30)
    beat(claimed, "", "Hello")
    first, = outbox.claim(soon(), 60)
    outbox.settle(first, False, 500, "The receiver answered 500.", (5.0, 300.0))
    make_due(first.id)
    retry, = outbox.claim(utcnow(), 60)  # a sender is trying it again now
    assert (retry.id, retry.attempts) == (first.id, 1)
    beat(claimed, "Hello", ", world")
    assert queue.finish(job.id, "w1", "completed", result="Hello, world", output_chars=12)
    assert [(d.event, d.status) for d in deliveries(job_pk=job.id)] == [
        ("output", "pending"), ("output", "pending"), ("completed", "pending")]
    outbox.settle(retry, True, 200, None, (5.0, 300.0))  # the try in flight ends: recorded
    tried = deliveries(job_pk=job.id)[0]
    assert (tried.status, tried.attempts, tried.last_status_code) == ("delivered", 2, 200)


@both_backends
def test_a_sender_whose_lease_ran_out_cannot_overwrite_the_next_senders_result(client):
    delays = (5.0, 300.0)
    for outcome_b, outcome_a in (((True, 204, None), (False, 500, "The receiver answered 500.")),
                                 ((False, 503, "The receiver answered 503."), (True, 200, None))):
        queue.request_cancel(create_job(client))
        a, = outbox.claim(utcnow(), 60)  # sender A takes it; its try outlasts its lease
        make_due(a.id, lease_until=True)
        b, = outbox.claim(utcnow(), 60)  # sender B takes it again
        assert (b.id, b.attempts) == (a.id, a.attempts)
        outbox.settle(b, *outcome_b, delays)
        recorded = deliveries()[-1]
        outbox.settle(a, *outcome_a, delays)  # A's answer comes last: it writes nothing
        after = deliveries()[-1]
        assert (after.status, after.attempts, after.last_status_code, after.last_error, after.next_attempt_at) == (
            recorded.status, recorded.attempts, recorded.last_status_code, recorded.last_error,
            recorded.next_attempt_at)
        assert after.status == ("delivered" if outcome_b[0] else "pending") and after.attempts == 1


@both_backends
def test_the_deliveries_shown_are_the_newest_100_oldest_first(client):
    job = create_job(client)
    start = utcnow() - timedelta(hours=1)
    db.session.execute(sa.insert(WebhookDelivery), [
        {"delivery_id": outbox.new_delivery_id(), "job_pk": job.id, "event": "output", "url": NOWHERE, "body": "{}",
         "status": "superseded", "attempts": 1, "next_attempt_at": start, "created_at": start} for _ in range(104)])
    db.session.commit()
    queue.request_cancel(job)  # its `completed`: the 105th
    rows = deliveries(job_pk=job.id)
    assert len(rows) == 105 and rows[-1].event == "completed"
    shown = client.get(f"{API}/{job.job_id}/webhooks").get_json()["deliveries"]
    assert [d["id"] for d in shown] == [d.delivery_id for d in rows[5:]]
    assert shown[-1]["event"] == "completed" and shown[-1]["status"] == "pending"


@both_backends
def test_prune_deletes_old_settled_deliveries_a_limited_number_at_a_time_never_pending_ones(client):
    job = create_job(client)
    old, recent = utcnow() - timedelta(days=8), utcnow() - timedelta(days=6)
    for status in ("delivered", "failed", "superseded", "pending"):
        add_delivery(job.id, status, old)
    add_delivery(job.id, "delivered", recent)
    cutoff = utcnow() - timedelta(days=7)
    assert outbox.prune(cutoff, limit=2) == 2
    assert outbox.prune(cutoff, limit=2) == 1
    assert outbox.prune(cutoff, limit=2) == 0
    assert [(d.status, d.next_attempt_at < cutoff) for d in deliveries()] == [("pending", True), ("delivered", False)]


@both_backends
def test_the_workers_sweep_prunes_deliveries_older_than_webhook_keep_days(app, client):
    from webapp.worker import Worker

    job = create_job(client)
    for days in (6, 4):
        add_delivery(job.id, "delivered", utcnow() - timedelta(days=days))
    add_delivery(job.id, "pending", utcnow() - timedelta(days=30))
    app.config["WEBHOOK_KEEP_DAYS"] = 5
    worker = Worker(app, concurrency=1, worker_id="sweeper")
    try:
        worker._maybe_sweep()
    finally:
        worker.webhooks.stop(0)
        worker.webhooks.session.close()
    kept = deliveries()
    assert [d.status for d in kept] == ["delivered", "pending"]
    assert utcnow() - kept[0].next_attempt_at < timedelta(days=5)  # the 4-day-old one; the 6-day-old one went


def test_webhook_keep_days_is_read_defaults_to_7_and_must_be_above_0():
    assert from_env({}, "/i")["WEBHOOK_KEEP_DAYS"] == 7
    assert from_env({"WEBHOOK_KEEP_DAYS": "2.5"}, "/i")["WEBHOOK_KEEP_DAYS"] == 2.5
    for value in ("0", "-1", "soon"):
        with pytest.raises(SettingError) as raised:
            from_env({"WEBHOOK_KEEP_DAYS": value}, "/i")
        assert str(raised.value).startswith("WEBHOOK_KEEP_DAYS must be")


# --- 11. after the review: the sender's HTTP session, its deadline, its slots ------------------------
def sets_a_cookie(receiver, handler):
    handler.wfile.write(b"HTTP/1.1 200 OK\r\nSet-Cookie: receiver_session=abc123; Path=/\r\n"
                        b"Content-Length: 0\r\n\r\n")


def an_endless_body(receiver, handler):
    """200 and its headers at once, then 10 bytes of a body said to be 10**9, and the socket held open."""
    handler.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000000000\r\n\r\n"
                        b"0123456789")
    receiver.holding.set()
    receiver.closing.wait(60)


def drips(receiver, handler):
    """A 200, one byte every 0.3 s: every read gets something well within a per-read timeout."""
    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
        if receiver.closing.wait(0.3):
            return
        handler.wfile.write(bytes([byte]))
    receiver.finished.set()


@pytest.mark.parametrize("leak", ["proxy", "netrc"])
def test_the_sender_takes_no_proxy_or_netrc_from_the_environment(app, client, receiver, monkeypatch, tmp_path, leak):
    with Receiver() as proxy:  # a "proxy" that records what reaches it (and answers 200)
        if leak == "proxy":
            for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
                monkeypatch.setenv(name, proxy.url)
            for name in ("NO_PROXY", "no_proxy"):
                monkeypatch.delenv(name, raising=False)
        else:
            netrc = tmp_path / "netrc"
            netrc.write_text("machine 127.0.0.1 login someone password their-secret\n")
            netrc.chmod(0o600)
            monkeypatch.setenv("NETRC", str(netrc))
        queue.request_cancel(create_job(client, webhook=receiver.url + "/hook"))
        with sending(app) as sender:
            assert sender.send_due() == 1
        assert proxy.got() == []
    sent, = receiver.got()  # straight to the receiver
    assert sent.path == "/hook" and "authorization" not in sent.headers
    assert deliveries()[0].status == "delivered"


def test_the_sender_keeps_no_cookies(app, client):
    with Answering(sets_a_cookie) as cookie_setter, sending(app) as sender:
        for _ in range(2):
            queue.request_cancel(create_job(client, webhook=cookie_setter.url + "/hook"))
            assert sender.send_due() == 1
    assert [d.status for d in deliveries()] == ["delivered", "delivered"]
    assert len(cookie_setter.requests) == 2 and all("cookie" not in r for r in cookie_setter.requests)
    assert len(sender.session.cookies) == 0


@both_backends
def test_a_try_reads_the_status_and_headers_never_the_body(app, client):
    app.config["WEBHOOK_TIMEOUT"] = 1.0  # a read of the body would end in this read timeout, undelivered
    with Answering(an_endless_body) as endless:
        queue.request_cancel(create_job(client, webhook=endless.url + "/hook"))
        with sending(app) as sender:
            assert sender.send_due() == 1
            # Settled while the receiver still holds its socket open with 999,999,990 bytes to come.
            assert endless.holding.is_set() and not endless.closing.is_set()
    delivery, = deliveries()
    assert (delivery.status, delivery.attempts, delivery.last_status_code, delivery.last_error) == (
        "delivered", 1, 200, None)


TRY_UNDER_GEVENT = """
from gevent import monkey

monkey.patch_all()  # as worker.py does: the deadline fires only where gevent patches sockets
import sys

from webapp.webhooks.outbox import Taken
from webapp.worker.deliveries import attempt, http_session

session = http_session(True, 2.0)  # 2 s for each read: a byte every 0.3 s passes every one
print(repr(attempt(session, sys.argv[1], Taken(1, "msg_drip", "completed", sys.argv[2], "{}", 0), 1.0)), flush=True)
"""


def test_a_try_has_a_deadline_however_slowly_the_receiver_drips():
    """In a process patched as the worker is: one try, a 1 s deadline, against a status line dripped
    a byte per 0.3 s (its whole answer would take 11 s)."""
    import subprocess
    import sys
    from pathlib import Path

    with Answering(drips) as dripping:
        done = subprocess.run([sys.executable, "-c", TRY_UNDER_GEVENT, SECRET, dripping.url + "/hook"],
                              cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == repr((False, None, "The receiver did not answer in time.")), done.stdout
        assert not dripping.finished.is_set()  # cut mid-drip, not after it
    assert len(dripping.requests) == 1


@both_backends
def test_the_sender_refills_its_slots_while_one_receiver_hangs(app, client, receiver):
    with sending(app) as sender, Receiver(["hang"]) as silent:
        queue.request_cancel(create_job(client, webhook=silent.url + "/hook"))
        sender.start()  # serve(), as the worker runs it
        silent.wait_for(1)  # its try holds one of the 4 slots
        # More than the 3 free slots: the 5 go through them while the silent one is still being tried.
        for _ in range(5):
            queue.request_cancel(create_job(client, webhook=receiver.url + "/hook"))
        receiver.wait_for(5)
        wait_until(lambda: [d.status for d in deliveries()] == ["pending"] + ["delivered"] * 5, 10,
                   "the 5 deliveries to be recorded delivered")
        held = deliveries()[0]
        assert (held.attempts, held.last_error) == (0, None) and held.lease_until is not None  # still in flight
        assert not silent.closing.is_set() and len(silent.got()) == 1
        sender.stop(10)
        assert not sender.thread.is_alive()
    assert len(receiver.got()) == 5 and {t.path for t in receiver.got()} == {"/hook"}


# --- 12. after the review: the webhook checked after the rate limit, ASCII only ---------------------
@both_backends
@pytest.mark.parametrize("path", [API, BATCHES])
def test_the_webhook_is_checked_only_once_the_rate_limit_admits_the_request(app, client, monkeypatch, path):
    from webapp import ratelimits

    looked_up, real = [], socket.getaddrinfo

    def resolver(host, port, *args, **kwargs):
        if host == "private.example.test":
            looked_up.append(host)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(targets.socket, "getaddrinfo", resolver)
    minute = utcnow().replace(second=30, microsecond=0)  # one rate window for the whole test
    monkeypatch.setattr(ratelimits, "utcnow", lambda: minute)
    app.config.update(RATE_LIMIT_PER_MINUTE=1, WEBHOOK_ALLOW_PRIVATE=False)
    request = {"items": [{"prompt": "Say hello"}]} if path == BATCHES else {"prompt": "Say hello"}
    assert client.post(path, json=request).status_code == 202  # the minute's one create
    refused = client.post(path, json={**request, "webhook": "https://private.example.test/hook"})
    assert refused.status_code == 429, refused.get_json()
    assert looked_up == []  # an over-limit caller cannot make us look names up
    app.config["RATE_LIMIT_PER_MINUTE"] = 0
    checked = client.post(path, json={**request, "webhook": "https://private.example.test/hook"})
    assert checked.status_code == 400 and checked.get_json()["field"] == "webhook"
    assert looked_up == ["private.example.test"]  # the check is made, once admitted
    assert count_rows(Batch if path == BATCHES else Job) == 1


@pytest.mark.parametrize("url", ["https://example.com/\ud800", "https://exämple.com/hook",
                                 "https://example.com/päth"])
@pytest.mark.parametrize("path", [API, BATCHES])
def test_a_non_ascii_webhook_url_is_400_naming_it_not_a_500(app, client, url, path):
    request = {"items": [{"prompt": "Say hello"}]} if path == BATCHES else {"prompt": "Say hello"}
    response = client.post(path, json={**request, "webhook": url})
    assert response.status_code == 400, response.get_json()
    answer = response.get_json()
    assert answer["field"] == "webhook" and "ASCII" in answer["error"]
    assert (count_rows(Job), count_rows(Batch), count_rows(WebhookDelivery)) == (0, 0, 0)


@both_backends
def test_an_output_in_flight_when_the_job_ends_gives_way_if_its_try_fails(app):
    """The last output is often being tried as the job ends: if that try fails, it is superseded
    (the end carries all the text), not retried ahead of `completed` for a day."""
    job = enqueue(events=ALL)
    claimed = queue.claim("w1", 30)
    beat(claimed, "", "Hi")
    outbox.settle(outbox.claim(utcnow(), 60)[0], True, 200, None, (300.0,))  # the start
    in_flight, = outbox.claim(utcnow() + timedelta(seconds=1), 60)
    assert in_flight.event == "output"
    assert queue.finish(job.id, "w1", "completed", result="Hi", output_chars=2)
    assert deliveries(job_pk=job.id)[1].status == "pending"  # being tried: left to its sender
    outbox.settle(in_flight, False, 500, "The receiver answered 500.", (300.0,))
    assert [d.status for d in deliveries(job_pk=job.id)] == ["delivered", "superseded", "pending"]
    end, = outbox.claim(utcnow(), 60)
    assert end.event == "completed"


@both_backends
def test_an_output_whose_sender_died_holding_it_gives_way_to_the_end(app):
    job = enqueue(events=ALL)
    claimed = queue.claim("w1", 30)
    beat(claimed, "", "Hi")
    outbox.settle(outbox.claim(utcnow(), 60)[0], True, 200, None, (300.0,))
    held, = outbox.claim(utcnow() + timedelta(seconds=1), 60)
    make_due(held.id, lease_until=True)  # its lease ran out: the sender died
    assert queue.finish(job.id, "w1", "completed", result="Hi", output_chars=2)
    assert [d.status for d in deliveries(job_pk=job.id)] == ["delivered", "superseded", "pending"]
    outbox.settle(held, True, 200, None, (300.0,))  # a late word from the dead sender changes nothing
    assert deliveries(job_pk=job.id)[1].status == "superseded"
