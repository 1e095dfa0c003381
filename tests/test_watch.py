"""The per-process watcher: one read per tick for every watcher, fresh commits, survives errors."""
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from webapp import queue
from webapp.snapshots import snapshot_of
from webapp.web.watch import Watcher

from helpers import both_backends


def start_job(worker="w1"):
    job = queue.enqueue(prompt="hi", model="llama3.2")
    queue.claim(worker, 30)
    return queue.get(job.job_id)


@pytest.fixture
def watcher(app):
    watcher = Watcher(app, interval=0.01)
    watcher._ensure_running = lambda: None  # no background thread: the tests tick by hand
    return watcher


def test_one_read_per_tick_however_many_watch(app, watcher):
    running = [start_job() for _ in range(3)]
    subs = [watcher.subscribe([snapshot_of(running[n % 3])]) for n in range(300)]
    for job in running:
        queue.heartbeat(job.id, "w1", 30, current_tokens=5)
    watcher.tick()
    assert watcher.reads == 1
    assert all(sub.take(0)[0]["current_tokens"] == 5 for sub in subs)
    watcher.tick()  # nothing changed: nothing delivered
    assert watcher.reads == 2 and all(sub.take(0) == [] for sub in subs)


def test_queued_jobs_learn_their_new_place_in_line(app, watcher):
    first, second = (queue.enqueue(prompt=p, model="llama3.2") for p in ("a", "b"))
    sub = watcher.subscribe([snapshot_of(queue.get(second.job_id))])
    queue.claim("w1", 30)  # takes `first`; `second` moves up without its own row changing
    watcher.tick()
    [snap] = sub.take(0)
    assert snap["job_id"] == second.job_id and snap["queue_position"] == 1
    assert first.job_id not in watcher.subscribers


def test_unsubscribed_jobs_are_no_longer_read(app, watcher):
    job = start_job()
    sub = watcher.subscribe([snapshot_of(job)])
    watcher.unsubscribe(sub)
    assert watcher.subscribers == {} and watcher.seen == {}


def test_a_database_error_keeps_the_clients(app):
    job = start_job()
    watcher = Watcher(app, interval=0.01)
    real_changed, calls = watcher.changed, []

    def flaky(job_ids):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("SELECT", {}, Exception("server has gone away"))
        return real_changed(job_ids)

    watcher.changed = flaky
    sub = watcher.subscribe([snapshot_of(job)])  # starts the watcher's thread
    queue.heartbeat(job.id, "w1", 30, current_tokens=9)
    snaps = []
    for _ in range(200):  # the watcher backs off once, then delivers
        snaps = sub.take(0.05)
        if snaps:
            break
    watcher.shutdown()
    assert len(calls) >= 2 and snaps and snaps[0]["current_tokens"] == 9


@both_backends
def test_each_tick_sees_the_latest_commit(app, watcher, database_url):
    """REPEATABLE READ would freeze a reader that kept its transaction: each tick is its own."""
    job = start_job()
    sub = watcher.subscribe([snapshot_of(job)])
    other = sa.create_engine(database_url)
    for tokens in (1, 2, 3):
        with other.begin() as conn:
            conn.execute(sa.text("UPDATE ai_generation_jobs SET current_tokens = :n, version = version + 1 "
                                 "WHERE id = :id"), {"n": tokens, "id": job.id})
        watcher.tick()
        assert [s["current_tokens"] for s in sub.take(0)] == [tokens]
    other.dispose()


def test_a_change_is_rendered_once_for_all_its_watchers(app, watcher, monkeypatch):
    from webapp.web import streams

    job = start_job()
    subs = [watcher.subscribe([snapshot_of(job)]) for _ in range(100)]
    renders = []
    real = streams.job_event
    monkeypatch.setattr(streams, "job_event", lambda snap: renders.append(1) or real(snap))
    queue.heartbeat(job.id, "w1", 30, current_tokens=4)
    watcher.tick()
    frames = {streams.json_event(sub.take(0)[0]) for sub in subs}
    assert len(frames) == 1 and len(renders) == 1


def test_a_subscription_after_shutdown_is_closed_at_once(app):
    job = start_job()
    watcher = Watcher(app, interval=0.01)
    watcher.shutdown()
    sub = watcher.subscribe([snapshot_of(job)])
    assert sub.closed and watcher.subscribers == {}


def test_simultaneous_first_subscribers_start_one_loop(app):
    import threading

    job = start_job()
    watcher = Watcher(app, interval=0.05)
    loops = []
    watcher._loop = lambda: loops.append(threading.current_thread())  # count, don't run
    snap = snapshot_of(job)
    gate = threading.Barrier(20)
    threads = [threading.Thread(target=lambda: (gate.wait(), watcher.subscribe([snap]))) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    watcher.thread.join(5)
    assert len(loops) == 1


def test_a_late_subscriber_still_gets_the_final_state(app, watcher):
    job = start_job()
    early = watcher.subscribe([snapshot_of(job)])
    late_snapshot = snapshot_of(queue.get(job.job_id))  # read before the job ends...
    queue.finish(job.id, "w1", "completed", result="done")
    watcher.tick()                                      # ...fanned out to the early one...
    assert early.take(0)[0]["status"] == "completed"
    late = watcher.subscribe([late_snapshot])           # ...then the late one subscribes
    watcher.tick()
    assert [s["status"] for s in late.take(0)] == ["completed"] and early.take(0) == []
