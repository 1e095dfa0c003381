"""Fair turns with a batch, with real `python worker.py` processes: one API key's 500-item batch
keeps every slot busy, and another key's single job, sent meanwhile, starts at the next free slot
instead of after the batch.

MariaDB/MySQL only (SKIP LOCKED between two processes claiming at once). Waits poll a condition
with a deadline; nothing sleeps a fixed time.
"""
import time

import pytest
import sqlalchemy as sa

from simulator import Simulator
from webapp import owners
from webapp.extensions import db
from webapp.models import Batch, Job
from webapp.owners import keys

from helpers import wait_until

MYSQL_ONLY = pytest.mark.parametrize("backend", [pytest.param("mysql", marks=pytest.mark.mysql)],
                                     indirect=True)
API = "/api/v1/ai/generation"
ITEMS = 500
PROCESSES, SLOTS_EACH = 2, 2
SLOTS = PROCESSES * SLOTS_EACH
TOKENS, TPS = 30, 20.0  # an item streams for about TOKENS / TPS = 1.5 s: 500 of them take minutes on 4 slots
SPREAD = 0.3  # each item's speed is TPS × (1 ± up to 0.3): the slots come free one at a time, not in waves


def count(*where):
    db.session.commit()  # each poll is its own transaction: see what the workers committed
    return db.session.execute(sa.select(sa.func.count()).select_from(Job).where(*where)).scalar_one()


def fresh(pk):
    db.session.commit()
    return db.session.get(Job, pk, populate_existing=True)


def owner_of(name):
    """A new API key: (its Authorization header, the owner its jobs get)."""
    secret = keys.create(name)
    return {"Authorization": f"Bearer {secret}"}, owners.key(keys.find(secret).secret_hash)


@MYSQL_ONLY
def test_a_single_job_sent_during_a_500_item_batch_starts_at_the_next_free_slot(app, client, spawn):
    a_headers, a = owner_of("a")
    b_headers, b = owner_of("b")
    with Simulator(tokens_per_second=TPS, jitter=0.1, load_delay=0.0, speed_spread=SPREAD) as sim:
        made = client.post(f"{API}/batches", headers=a_headers, json={
            "items": [{"prompt": f"A's item {n}: a short story"} for n in range(ITEMS)],
            "options": {"num_predict": TOKENS}})
        assert made.status_code == 202, made.get_json()
        batch = db.session.scalar(sa.select(Batch).where(Batch.batch_id == made.get_json()["batch_id"]))
        assert (batch.owner, batch.total) == (a, ITEMS)
        items = (Job.batch_pk == batch.id,)

        workers = [spawn(sim.url, WORKER_CONCURRENCY=SLOTS_EACH) for _ in range(PROCESSES)]
        assert len({worker.wait_ready() for worker in workers}) == PROCESSES

        # The workers have gone through a round of A's items, and every slot streams one now.
        wait_until(lambda: count(*items, Job.status == "completed") >= SLOTS
                   and count(*items, Job.status == "processing", Job.current_tokens > 0) == SLOTS, 15,
                   f"a round of A's items to end, and all {SLOTS} slots to stream the next ones")
        sent = client.post(API, headers=b_headers, json={"prompt": "B's only job", "options": {"num_predict": 5}})
        asked = time.monotonic()
        assert sent.status_code == 202, sent.get_json()
        b_pk = db.session.scalar(sa.select(Job.id).where(Job.job_id == sent.get_json()["job_id"]))

        b_job = wait_until(lambda: (job := fresh(b_pk)).started_at and job, 15, "B's job to start")
        waited = time.monotonic() - asked
        queued_b, started_b = b_job.created_at, b_job.started_at
        # A's items whose claim began once B's job was in the table and not after B's own claim.
        overtook = count(*items, Job.started_at >= queued_b, Job.started_at <= started_b)
        a_started = count(*items, Job.started_at.is_not(None))
        done = wait_until(lambda: (job := fresh(b_pk)).status in ("completed", "failed") and job, 10,
                          "B's job to end")
        logs = "\n".join(worker.output() for worker in workers)
        for worker in workers:  # before the simulator stops: no stream is cut under a live worker
            worker.kill()

    assert (b_job.owner, b_job.batch_pk) == (b, None)
    # FIFO would have run A's 500 items first (500 × 1.5 s / 4 slots: over three minutes). With fair
    # turns B's job takes the first slot that comes free; only a claim already under way in a worker
    # process when B's job arrived (one at a time per process) may still take one of A's items.
    assert overtook <= PROCESSES, (
        f"{overtook} of A's items started after B's job was queued and before it started")
    assert 2 * SLOTS <= a_started < ITEMS - 100, f"{a_started} of A's items had started"
    # A slot comes free within an item's length (the slowest: TOKENS / (TPS × (1 - SPREAD))),
    # plus a claim and a start.
    assert waited < TOKENS / (TPS * (1 - SPREAD)) + 1.0, f"B's job waited {waited:.1f} s for a slot"
    assert done.status == "completed" and done.result, (done.status, done.error_message)
    assert "Traceback" not in logs, logs
