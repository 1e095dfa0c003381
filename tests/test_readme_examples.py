"""The README's examples (examples/): the same code as the files, and they work. The client runs
as a subprocess against gunicorn, a worker process and the simulator; the webhook receiver
through its Flask app's test client, with bodies signed by standardwebhooks itself."""
import contextlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
import requests
from standardwebhooks import Webhook

from helpers import wait_until
from servers import ROOT, Gunicorn

API = "/api/v1/ai/generation"
KEY = "lg_readme-example-key"
EXAMPLES = os.path.join(ROOT, "examples")
# Chunks as a model may send them: an emoji split between code points, CRLF, a lone CR, HTML.
ODD = ["Family: 👩", "\u200d👧", " — ½ ", "line one\r\n", "line two\r", "\n<b>not bold</b> & ", "日本語 ", "end"]


def read(path):
    with open(path, encoding="utf-8") as file:
        return file.read()


# --- the README shows the files as they are ----------------------------------------------------------
def python_blocks(markdown):
    return re.findall(r"^```python\n(.*?)^```$", markdown, flags=re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("name", ["client.py", "webhook_receiver.py"])
def test_the_readme_shows_each_example_file_exactly(name):
    blocks = python_blocks(read(os.path.join(ROOT, "README.md")))
    assert read(os.path.join(EXAMPLES, name)) in blocks, f"README.md's copy of examples/{name} differs from the file"


# --- the client, against real processes ---------------------------------------------------------------
@pytest.fixture
def web(database_url, sim, spawn):
    spawn(sim.url).wait_ready()
    with Gunicorn(database_url, API_TOKEN=KEY, SSE_POLL_INTERVAL="0.1") as server:
        yield server


@contextlib.contextmanager
def start_client(web, prompt):
    """`python examples/client.py PROMPT --url ... --key ...`, killed if the test ends before it does."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    client = subprocess.Popen([sys.executable, os.path.join(EXAMPLES, "client.py"), prompt, "--url", web.url,
                               "--key", KEY], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with client:
        try:
            yield client
        finally:
            if client.poll() is None:
                client.kill()


def job_of(web, job_id):
    response = requests.get(f"{web.url}{API}/{job_id}/status?include=output",
                            headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    return response.json()["job"]


def finish(client):
    """(exit code, stdout as bytes, stderr as text) of a client run."""
    out, err = client.communicate(timeout=60)
    return client.returncode, out, err.decode("utf-8")


def test_the_client_prints_progress_and_the_whole_text_and_exits_0(web, sim):
    sim.script, sim.tokens_per_second = ODD * 6, 40.0
    with start_client(web, "Write a haiku") as client:
        code, out, err = finish(client)
    assert code == 0, err
    job_id = re.search(r"^job (\S+)$", err, flags=re.MULTILINE).group(1)
    job = job_of(web, job_id)
    assert job["status"] == "completed" and job["result"] == "".join(ODD * 6)
    assert out.decode("utf-8") == job["result"], "stdout is the text, byte for byte, and nothing else"
    progress = r"^\[processing\] \d+% \| [1-9]\d* tokens \| [\d.]+ tok/s \| (about \d+ s left|no estimate yet)$"
    assert re.search(progress, err, flags=re.MULTILINE), err
    assert f"done: {job['completion_tokens']} tokens in" in err


def test_the_client_exits_2_for_a_job_cancelled_while_it_runs(web, sim):
    sim.script, sim.tokens_per_second = [f"word{n} " for n in range(2000)], 20.0
    auth = {"Authorization": f"Bearer {KEY}"}

    def running_job():
        jobs = requests.get(f"{web.url}{API}?status=processing", headers=auth, timeout=10).json()["jobs"]
        return next((job for job in jobs if job["current_tokens"] > 0), None)

    with start_client(web, "A long story") as client:
        job = wait_until(running_job, 30, "the client's job to be generating")
        assert requests.post(f"{web.url}{API}/{job['job_id']}/cancel", headers=auth, timeout=10).status_code == 202
        code, out, err = finish(client)
    assert code == 2, err
    assert "cancelled:" in err
    ended = job_of(web, job["job_id"])
    assert ended["status"] == "cancelled" and ended["output"]
    assert out.decode("utf-8") == ended["output"], "the text it had when it stopped"


# --- the webhook receiver ----------------------------------------------------------------------------
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # 24 bytes of base64


@pytest.fixture
def receiver(monkeypatch):
    """A fresh copy of examples/webhook_receiver.py (its own set of seen ids) and its test client."""
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    spec = importlib.util.spec_from_file_location("webhook_receiver", os.path.join(EXAMPLES, "webhook_receiver.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app.test_client()


def delivery(event_type="job.completed", message_id="msg_2fKz7cQx", secret=SECRET, sent=None, **data):
    """(body, headers) as livegen sends a webhook, signed with `secret` by standardwebhooks."""
    job = {"job_id": "j0b1d", "status": "completed", "output": "Blue light scatters most.", **data}
    body = json.dumps({"type": event_type, "timestamp": "2026-11-27T13:05:29.391Z", "data": job})
    sent = sent or datetime.now(UTC)
    headers = {"webhook-id": message_id, "webhook-timestamp": str(int(sent.timestamp())),
               "webhook-signature": Webhook(secret).sign(message_id, sent, body),
               "content-type": "application/json"}
    return body, headers


def test_the_receiver_accepts_a_signed_delivery_and_acts_on_it(receiver, capsys):
    body, headers = delivery()
    assert receiver.post("/hooks/livegen", data=body, headers=headers).status_code == 204
    assert capsys.readouterr().out == "job.completed: j0b1d is completed\nBlue light scatters most.\n"

    body, headers = delivery("job.start", message_id="msg_other", status="processing", output=None)
    assert receiver.post("/hooks/livegen", data=body, headers=headers).status_code == 204
    assert capsys.readouterr().out == "job.start: j0b1d is processing\n"


def test_the_receiver_refuses_what_it_cannot_verify(receiver, capsys):
    body, headers = delivery()
    other_secret = "whsec_" + "c2VjcmV0LW9mLXNvbWVvbmUtZWxzZSEhISE="
    refused = {
        "tampered body": (body.replace("scatters", "SCATTERS"), headers),
        "wrong secret": delivery(secret=other_secret),
        "an old delivery replayed": delivery(sent=datetime.now(UTC) - timedelta(minutes=10)),
        "no signature": (body, {k: v for k, v in headers.items() if k != "webhook-signature"}),
        "a malformed signature": (body, {**headers, "webhook-signature": "not-a-signature"}),
    }
    for case, (sent_body, sent_headers) in refused.items():
        response = receiver.post("/hooks/livegen", data=sent_body, headers=sent_headers)
        assert response.status_code == 400, case
    assert capsys.readouterr().out == "", "nothing unverified was acted on"


def test_a_repeated_webhook_id_is_acknowledged_but_handled_once(receiver, capsys):
    body, headers = delivery()
    answers = [receiver.post("/hooks/livegen", data=body, headers=headers).status_code for _ in range(3)]
    assert answers == [204, 204, 204]
    assert capsys.readouterr().out.count("job.completed: j0b1d is completed") == 1
