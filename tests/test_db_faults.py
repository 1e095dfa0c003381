"""Database faults through real processes: a reset or a silent database ends in a 503, then recovery."""
import time

import pytest
import requests
from sqlalchemy.engine import make_url

from webapp import queue, statuses

from helpers import row
from servers import Gunicorn, WorkerProcess
from tcpproxy import TcpProxy

API = "/api/v1/ai/generation"
# Small database timeouts, so a silent database shows in a few seconds ...
TIMEOUTS = {"DB_CONNECT_TIMEOUT": "1", "DB_READ_TIMEOUT": "1", "DB_WRITE_TIMEOUT": "1", "DB_POOL_TIMEOUT": "2"}
# ... and a client that waits far longer: no answer by then means the server hung, not that it was slow.
PATIENCE = 15


@pytest.fixture
def proxy(database_url):
    url = make_url(database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 3306)
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
    deadline = time.monotonic() + PATIENCE
    while (status := row(job.job_id).status) != statuses.COMPLETED:
        if time.monotonic() > deadline:
            pytest.fail(f"job {job.job_id} still {status} after {PATIENCE} s: the worker is stuck")
        time.sleep(0.1)
