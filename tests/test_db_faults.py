"""Database faults through real processes: a reset or a silent database ends in a 503, then recovery;
a write that committed keeps its answer."""
import contextlib
import socket

import pytest
import requests
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from webapp import queue, statuses
from webapp.extensions import db
from webapp.models import Job

from helpers import row, wait_until
from servers import Gunicorn, WorkerProcess
from tcpproxy import TcpProxy

API = "/api/v1/ai/generation"
# Small database timeouts, so a silent database shows in a few seconds ...
TIMEOUTS = {"DB_CONNECT_TIMEOUT": "1", "DB_READ_TIMEOUT": "1", "DB_WRITE_TIMEOUT": "1", "DB_POOL_TIMEOUT": "2"}
# ... and a client that waits far longer: no answer by then means the server hung, not that it was slow.
PATIENCE = 15


class StepProxy(TcpProxy):
    """A TcpProxy that can also reset at a marker sent after others: `reset_when_client_sends_after(
    first, ..., last)` forwards each of `first, ...` as a client sends them, in turn, and resets
    the moment one sends `last` (unforwarded). Same thread, same one-shot Event as the plain one."""

    steps = ()

    def reset_when_client_sends_after(self, *markers):
        *steps, last = markers
        self.marker_seen.clear()
        self._command(setattr, self, "steps", (list(steps), last))
        return self.marker_seen

    def _relay(self, sock):
        step = False
        if self.steps and self.client_of.get(sock) is sock:
            with contextlib.suppress(OSError):  # a look at what waits; the plain proxy reads it next
                step = self.steps[0][0] in sock.recv(65536, socket.MSG_PEEK)
        super()._relay(sock)
        if step:
            steps, last = self.steps
            steps.pop(0)
            if not steps:  # armed only now, so a marker equal to the last step's is not this one
                self.steps, self.marker = (), last


@pytest.fixture
def proxy(database_url):
    url = make_url(database_url)
    proxy = StepProxy(url.host or "127.0.0.1", url.port or 3306)
    yield proxy
    proxy.close()


@pytest.fixture
def proxied_url(database_url, proxy):
    """The test database, reached through `proxy` (the test fixtures still reach it directly)."""
    return make_url(database_url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


@pytest.mark.mysql
@pytest.mark.parametrize("backend", ["mysql"], indirect=True)
def test_a_connection_reset_after_the_last_query_answers_503_not_500(app, proxy, proxied_url):
    job = queue.enqueue(prompt="Hello", model="llama3.2")
    with Gunicorn(proxied_url) as server:
        status_url = f"{server.url}{API}/{job.job_id}/status"
        assert _get(status_url).status_code == 200  # the pool now holds a connection
        # The ROLLBACK that ends the request's transaction is the first one it sends (the pool's
        # pre-ping is a COM_PING): the reset lands after its query has been answered, where the
        # old code's Flask-SQLAlchemy teardown raised past every error handler.
        fired = proxy.reset_when_client_sends(b"ROLLBACK")
        response = _get(status_url)
        assert fired.is_set(), "the request never ended its transaction: the reset did not happen"
        _assert_unavailable(response)
        assert _get(status_url).status_code == 200


# On the wire, a create is: INSERT, COMMIT (the job exists from here), the pool's reset of the
# returned connection, the route's read of the new job for its place in line and estimate (a new
# transaction), then the ROLLBACK of release_session that ends it: the teardown.
AFTER_THE_COMMIT = {
    "teardown": ((b"INSERT INTO ai_generation_jobs", b"COMMIT", b"SELECT ai_generation_jobs.", b"ROLLBACK"),
                 "database error while ending POST /api/v1/ai/generation"),
    "wait-ahead-read": ((b"INSERT INTO ai_generation_jobs", b"COMMIT", b"SELECT ai_generation_jobs."),
                        "created; its wait ahead could not be read"),
}


@pytest.mark.mysql
@pytest.mark.parametrize("backend", ["mysql"], indirect=True)
@pytest.mark.parametrize("where", AFTER_THE_COMMIT)
def test_a_reset_after_a_create_committed_keeps_its_202(app, proxy, proxied_url, where):
    """A 503 would make the client send the job again: it was created, so the answer stays 202
    (with its place in line and estimate null when reading them was cut)."""
    markers, logged = AFTER_THE_COMMIT[where]
    with Gunicorn(proxied_url) as server:
        assert requests.post(server.url + API, json={"prompt": "Warm-up"}, timeout=PATIENCE).status_code == 202
        fired = proxy.reset_when_client_sends_after(*markers)
        try:
            response = requests.post(server.url + API, json={"prompt": "Created once"}, timeout=PATIENCE)
        except requests.Timeout:
            pytest.fail(f"no answer within {PATIENCE} s: the request hung on the database")
        assert fired.is_set(), "the create never sent what the reset waits for: no reset happened"
        assert logged in server.output()
        assert response.status_code == 202, response.text[:300]
        body = response.json()
        assert (body["queue_position"] is None) == (where == "wait-ahead-read"), body
        # The proxy forwards new connections again: the job is there, once, read back through it.
        readback = _get(f"{server.url}{API}/{body['job_id']}/status")
        assert readback.status_code == 200 and readback.json()["job"]["status"] == statuses.QUEUED
    assert row(body["job_id"]).prompt == "Created once"
    assert db.session.scalar(sa.select(sa.func.count()).where(Job.prompt == "Created once")) == 1


@pytest.mark.mysql
@pytest.mark.parametrize("backend", ["mysql"], indirect=True)
def test_a_silent_database_answers_503_within_the_timeouts_and_then_200_again(app, proxy, proxied_url):
    job = queue.enqueue(prompt="Hello", model="llama3.2")
    with Gunicorn(proxied_url, **TIMEOUTS) as server:
        status_url = f"{server.url}{API}/{job.job_id}/status"
        assert _get(status_url).status_code == 200
        proxy.silence()  # the pooled connection included: it never answers again
        _assert_unavailable(_get(status_url))
        proxy.restore()
        assert _get(status_url).status_code == 200


@pytest.mark.mysql
@pytest.mark.parametrize("backend", ["mysql"], indirect=True)
def test_the_worker_recovers_from_a_silent_database(app, proxy, proxied_url, sim):
    with WorkerProcess(proxied_url, sim.url, **TIMEOUTS):
        _wait_until_completed(queue.enqueue(prompt="Before", model="llama3.2", options={"num_predict": 5}))
        proxy.silence()
        assert proxy.swallowed.wait(PATIENCE), "the worker never asked the silent database anything"
        proxy.restore()
        _wait_until_completed(queue.enqueue(prompt="After", model="llama3.2", options={"num_predict": 5}))


def _get(url):
    try:
        return requests.get(url, timeout=PATIENCE)
    except requests.Timeout:
        pytest.fail(f"no answer within {PATIENCE} s: the request hung on the database")


def _assert_unavailable(response):
    """The database's 503 in JSON with Retry-After, never gunicorn's bare HTML 500."""
    assert response.status_code == 503, response.text[:300]
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["success"] is False
    assert int(response.headers["Retry-After"]) > 0


def _wait_until_completed(job):
    wait_until(lambda: row(job.job_id).status == statuses.COMPLETED, PATIENCE,
               f"job {job.job_id} to complete (else the worker is stuck)", interval=0.1,
               detail=lambda: row(job.job_id).status)
