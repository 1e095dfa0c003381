"""The database unreachable for 10 s mid-generation: progress writes are skipped, the stream goes
on, the final write lands once the database is back, and no text is lost."""
import logging
import time

import pytest
from conftest import make_app
from sqlalchemy.engine import make_url

from webapp import queue
from webapp.extensions import db

from helpers import WorkerThread, row
from tcpproxy import TcpProxy

OUTAGE_SECONDS = 10


@pytest.mark.mysql
@pytest.mark.parametrize("backend", ["mysql"], indirect=True)
def test_database_outage_mid_generation_loses_nothing(database_url, sim, caplog):
    url = make_url(database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 3306)
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    app = make_app(proxied, OLLAMA_URL=sim.url, PROGRESS_INTERVAL=0.2)
    sim.tokens_per_second = 30.0
    caplog.set_level(logging.WARNING, logger="webapp.worker.run")
    with app.app_context():
        job = queue.enqueue(prompt="A long answer, please", model="llama3.2", options={"num_predict": 150})
        with WorkerThread(app, concurrency=1):
            _wait(lambda: row(job.job_id).current_tokens > 0, 10, "the first progress write")
            db.session.remove()
            proxy.cut()
            cut_at = time.monotonic()
            sim.wait_for_requests(1)
            _wait(lambda: sim.requests[0].finished, 30, "the stream to end")
            assert time.monotonic() - cut_at < OUTAGE_SECONDS, "the stream ended after the outage"
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - cut_at)))  # the outage itself
            proxy.restore()
            _wait(lambda: row(job.job_id).status == "completed", 30, "the final write")
        done = row(job.job_id)
        db.session.remove()
    proxy.close()
    record = sim.requests[0]
    assert not record.client_closed and record.final is not None  # the stream was not cut
    assert done.result == record.text and done.completion_tokens == 150
    messages = [r.getMessage() for r in caplog.records]
    assert any("progress write skipped" in m for m in messages)
    assert any("final write failed" in m for m in messages)


def _wait(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception:  # the database may still be coming back
            db.session.rollback()
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
