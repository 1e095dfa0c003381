"""Fair turns (`webapp.turns`): which queued job the claim takes, and that the place in line
each queued job is shown is the order in which successive claims take them.

No job ends in these tests: "running" jobs are claimed (or written as `processing`) and stay so.
"""
import random
from datetime import timedelta

import pytest
import sqlalchemy as sa

from webapp import queue, statuses, turns
from webapp.extensions import db
from webapp.models import Job, utcnow

from helpers import both_backends

X, Y, Z = "key:x", "key:y", "key:z"


def add(owner, count=1):
    """`count` queued jobs of `owner`, oldest first."""
    return [queue.enqueue(prompt=f"{owner} job {n}", model="llama3.2", owner=owner) for n in range(count)]


def running(owner, count=1):
    """`count` jobs of `owner` in `processing`, as a worker's claim leaves them (never ending)."""
    db.session.add_all(Job(prompt=f"{owner} running {n}", model="llama3.2", owner=owner,
                           status=statuses.PROCESSING, worker_id="elsewhere", attempts=1, runs=1,
                           started_at=utcnow(), lease_until=utcnow() + timedelta(minutes=5))
                       for n in range(count))
    db.session.commit()


def update(job, **values):
    db.session.execute(sa.update(Job).where(Job.id == job.id).values(**values))
    db.session.commit()


def claim():
    """The pk the next claim takes, or None."""
    job = queue.claim("w-test", 30)
    return job and job.id


def claims():
    """Claim until nothing is left to claim: the pks in the order taken."""
    taken = []
    while (pk := claim()) is not None:
        taken.append(pk)
        assert len(taken) < 1000, "the claim keeps returning jobs"
    return taken


def pks(jobs):
    return [job.id for job in jobs]


# --- the claim's order ----------------------------------------------------------------------------
@both_backends
def test_an_owner_with_a_job_running_yields_to_one_with_none(app):
    add(X)
    assert claim() is not None  # X now has one job running
    xs = add(X, 5)
    (y,) = add(Y)
    assert claim() == y.id  # newest of all, but Y has nothing running
    # Y has one running now too, and X's oldest is older: X's, then turns alternate (Y has none left).
    assert claims() == pks(xs)


@both_backends
def test_owners_with_as_many_running_go_oldest_first(app):
    x1, x2 = add(X, 2)
    (y1,) = add(Y)
    (z1,) = add(Z)
    # All at 0 running: the oldest, X's; then Y and Z (0 running) come before X's second.
    assert claims() == [x1.id, y1.id, z1.id, x2.id]


@both_backends
def test_equal_running_counts_above_zero_go_oldest_first(app):
    running(X)
    running(Y)
    (y1,) = add(Y)
    (x1,) = add(X)
    (z1,) = add(Z)
    running(Z, 2)
    # X and Y at 1 running: Y's is older. Then X (1) before Z (2); then nothing left.
    assert claims() == [y1.id, x1.id, z1.id]


@both_backends
def test_an_owner_with_fewer_running_goes_first_whatever_its_jobs_age(app):
    running(X, 3)
    running(Y, 1)
    xs = add(X, 3)
    ys = add(Y, 3)
    (z1,) = add(Z)
    # Turns (running + place in own line): X 3,4,5; Y 1,2,3; Z 0. Ties broken by age: X's first
    # job (turn 3) is older than Y's third (turn 3).
    assert claims() == [z1.id, ys[0].id, ys[1].id, xs[0].id, ys[2].id, xs[1].id, xs[2].id]


@both_backends
def test_a_head_job_waiting_for_its_run_after_is_skipped_for_the_owners_next_one(app):
    x_later, x_now = add(X, 2)
    (y1,) = add(Y)
    update(x_later, run_after=utcnow() + timedelta(minutes=5))
    # X's head is not runnable: X's next one, older than Y's, goes; then Y's (X has one running).
    assert claim() == x_now.id
    assert claim() == y1.id
    assert claim() is None  # only the job in back-off is left
    update(x_later, run_after=utcnow() - timedelta(seconds=1))
    assert claim() == x_later.id


@both_backends
def test_a_waiting_head_does_not_hide_other_owners_at_the_same_level(app):
    running(X)
    running(Y)
    (x1,) = add(X)
    (y1,) = add(Y)
    update(x1, run_after=utcnow() + timedelta(minutes=5))
    assert claims() == [y1.id]


@both_backends
def test_cancel_requested_queued_jobs_are_skipped(app):
    x1, x2 = add(X, 2)
    (y1,) = add(Y)
    update(x1, cancel_requested=True)
    update(y1, cancel_requested=True)
    assert claims() == [x2.id]
    assert db.session.get(Job, x1.id, populate_existing=True).status == statuses.QUEUED


@both_backends
def test_nothing_queued_nothing_claimed(app):
    running(X, 2)
    assert claim() is None
    assert queue.queue_positions([]) == {}


# --- the place in line is the claim's order -------------------------------------------------------
@both_backends
def test_places_follow_turns_not_age(app):
    running(X)
    xs = add(X, 3)
    (y1,) = add(Y)
    places = queue.queue_positions(xs + [y1])
    # Turns: X 1,2,3; Y 0.
    assert places == {y1.id: 1, xs[0].id: 2, xs[1].id: 3, xs[2].id: 4}


def random_queue(rng):
    """Owners with random running counts and a random interleaving of their queued jobs."""
    owners = [f"key:{n}" for n in range(rng.randint(1, 6))]
    if rng.random() < 0.5:
        owners.append("anonymous")
    for owner in owners:
        if count := rng.choice([0, 0, 1, 2, 3]):
            running(owner, count)
    arrivals = [owner for owner in owners for _ in range(rng.randint(1, 7))]
    rng.shuffle(arrivals)
    queued = []
    for owner in arrivals:
        queued += add(owner)
        if rng.random() < 0.15:  # a job that starts later than it arrived changes no turn
            running(rng.choice(owners))
    return queued


@both_backends
@pytest.mark.parametrize("seed", range(8))
def test_queue_positions_equal_the_order_successive_claims_take_the_jobs(app, seed):
    queued = random_queue(random.Random(seed))
    rng = random.Random(seed + 1000)
    asked = rng.sample(queued, k=rng.randint(1, len(queued)))  # any subset, in any order
    places = queue.queue_positions(asked)
    all_places = queue.queue_positions(queued)

    taken = claims()  # no job ends meanwhile

    assert sorted(taken) == sorted(pks(queued))
    order = {pk: n for n, pk in enumerate(taken, start=1)}
    assert all_places == order
    assert places == {job.id: order[job.id] for job in asked}


# --- what the places count, and how long a slow count is kept --------------------------------------
@both_backends
def test_places_leave_out_jobs_the_claim_would_skip(app):
    """A job waiting out a retry's back-off, or asked to cancel, is not ahead of anyone."""
    x1, x2 = add(X, 2)
    update(x1, run_after=utcnow() + timedelta(minutes=5))
    (y1,) = add(Y)
    (z1,) = add(Z)
    update(z1, cancel_requested=True)
    places = queue.queue_positions([x2, y1])
    assert places == {x2.id: 1, y1.id: 2}
    assert claims() == [x2.id, y1.id]


def test_a_slow_count_of_places_is_kept_ten_times_as_long_and_a_quick_one_not_at_all(app, monkeypatch):
    (x1,) = add(X)
    (y1,) = add(Y)
    now = [100.0]

    def clock():
        now[0] += 0.05  # every reading of the clock: the count between two readings took 50 ms
        return now[0]

    assert turns.places([y1], clock) == {y1.id: 2}
    update(x1, status=statuses.CANCELLED)
    assert turns.places([y1], clock) == {y1.id: 2}, "kept: the count took 50 ms, so it is kept 500 ms"
    now[0] += 1.0
    assert turns.places([y1], clock) == {y1.id: 1}, "read again once that has passed"
    monkeypatch.setattr(turns, "SLOW_PLACES", 10.0)
    turns._kept.clear()
    (y2,) = add(Y)
    assert turns.places([y2], clock) == {y2.id: 2}
    queue.enqueue(prompt="older?", model="llama3.2", owner=Z)
    assert turns.places([y2], clock) == {y2.id: 3}, "a quick count is not kept"
