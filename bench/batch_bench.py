"""Batch benchmark: creating a 10,000-item batch, what one watcher's tick reads, and a whole batch
run by real worker processes, on MariaDB/MySQL.

    .venv/bin/python bench/batch_bench.py [--database-url URL] [--create-runs 5] [--singles 500]
                                          [--run-items 10000] [--processes 2] [--concurrency 8]
                                          [--tps 2000] [--tokens 3] [--run-timeout 900] [--skip-run]

The database (default `mysql+pymysql://root@127.0.0.1/livegen_bench_batch`, or
$BATCH_BENCH_DATABASE_URL) is dropped and created again, so its name must contain "bench"; it is
migrated with flask_migrate's upgrade(), as the tests do. The web side is the real app
(`webapp.web.create_app`) driven through Flask's test client, in this process, with one pooled
connection (so the session counters of that connection are the app's own reads).

1. Create. `POST /api/v1/ai/generation/batches` with 10,000 items, `--create-runs` times (median,
   min, max), the request built once; and, in the same run, `--singles` single-job POSTs
   (`POST /api/v1/ai/generation`), their mean cost times 10,000 as the baseline. The rate limit
   and the queued-jobs cap are off (RATE_LIMIT_PER_MINUTE=0, MAX_QUEUED_PER_OWNER=0): both are
   per-request checks that would refuse 10,000 single POSTs anyway. Then the JSONL export of one
   of the 10,000-item batches (all queued), and the cancel of each (its 10,000 items at once), so
   that nothing of it is left for the workers of step 3.
2. Rows per tick. Batches of 100, 1,000 and 10,000 items, each in the same state: 45 items
   completed and 5 failed (ended through the worker's own final write, `queue.finish`, so the
   counters and log numbers are set as in production), 4 running with some text (claimed by a
   direct UPDATE as a claim leaves them, text written by `queue.heartbeat`), the rest queued.
   For each, around one call of `batch_stream.read(app, pk, after)` (the JSON stream's tick),
   `batch_pages._read_card` (the page's stream tick), `store.last_lines` (a page load or a stream
   connect) and `GET .../batches/<id>` (the status route): the connection's Handler_read_* and
   Rows_read deltas (session counters; MariaDB 10.11 has no Innodb_rows_read), less what SHOW
   STATUS itself adds, with the server's pace (`history.pace`, kept 5 s per process) already
   read; that read is measured apart, as it is once per 5 s per process, not per tick. Then
   MariaDB's `ANALYZE <statement>` (the plan, with r_rows: the rows really read) of every SELECT
   each tick sends, at 100 and at 10,000 items.
3. Run. `--processes` `python worker.py` (WORKER_CONCURRENCY=`--concurrency`) and the simulator
   in its own process (`python -m simulator`, `--tps` tokens/s, no jitter, no load delay, fixed
   lengths), a `--run-items` batch created through the API with `options.num_predict=--tokens`.
   While it runs, once a second, a watcher's tick (as 2.) is measured, following the log, and every
   10 s one claim's read (`turns.next_job`, rolled back at once). `--claim-hint` is an experiment:
   the workers get a sitecustomize that makes `turns._head` read through ix_jobs_turns (FORCE
   INDEX), the fix first proposed for the claim's plan (before 997e794 read the queue through
   ix_jobs_queue_head); nothing in the product changes. At the
   end: the batch's counters against COUNT(*) per status (and tokens, time, log numbers), and the
   JSONL export: one row per item, each with a non-empty output. Worker, simulator and database
   CPU over the run from /proc.

A Markdown report goes to stdout and the figures, as JSON, to bench/results/batch-<timestamp>.json.
Child processes die with this one (PR_SET_PDEATHSIG) and are stopped on any exit.
"""
import argparse
import collections
import json
import os
import signal
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from flask_migrate import upgrade  # noqa: E402

from bench.benchlib import (  # noqa: E402
    Db,
    Proc,
    free_port,
    machine_cpu,
    machine_info,
    machine_line,
    pids_named,
    proc_cpu,
)
from webapp import history, output, queue, statuses, turns  # noqa: E402
from webapp.batches import snapshots as views  # noqa: E402
from webapp.batches import store  # noqa: E402
from webapp.extensions import db  # noqa: E402
from webapp.models import Batch, Job, utcnow  # noqa: E402
from webapp.web import batch_pages, batch_stream  # noqa: E402
from webapp.web import create_app as create_web_app  # noqa: E402

DEFAULT_URL = "mysql+pymysql://root@127.0.0.1/livegen_bench_batch"
RESULTS = ROOT / "bench" / "results"
API = "/api/v1/ai/generation"
MODEL = "llama3.2"
SIZES = (100, 1_000, 10_000)
ENDED_OK, ENDED_FAILED, RUNNING = 45, 5, 4  # the state every size is measured in
BEHIND = 5  # the watcher's `after`: this many log lines behind the batch
STATUS_SQL = "SHOW SESSION STATUS WHERE Variable_name LIKE 'Handler_read%' OR Variable_name = 'Rows_read'"


def prompt(n):
    return f"Item {n}: write one short line about the number {n}."


def batch_body(count, tokens):
    return json.dumps({"items": [{"prompt": prompt(n)} for n in range(count)],
                       "options": {"num_predict": tokens}}).encode()


# --- the database and the app ---------------------------------------------------------------------
def make_app(url, pool=1):
    return create_web_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench", "RATE_LIMIT_PER_MINUTE": 0,
                           "MAX_QUEUED_PER_OWNER": 0, "DB_POOL_SIZE": pool, "DEFAULT_MODEL": MODEL,
                           "OLLAMA_URL": "http://127.0.0.1:9"})


def prepare(url):
    Db(url).recreate()
    app = make_app(url)
    with app.app_context():
        upgrade()
    history.forget()
    return app


class Recorder:
    """The SELECTs (with their parameters) the engine sends while `on`."""

    def __init__(self, app):
        self.on, self.statements = False, []
        with app.app_context():
            sa.event.listen(db.engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, parameters, context, executemany):
        if self.on and statement.lstrip().upper().startswith("SELECT"):
            self.statements.append((statement, parameters))


def counters(app):
    """(connection id, {Handler_read_*, Rows_read}) of the app's one pooled connection."""
    with app.app_context():
        try:
            cid = db.session.execute(sa.text("SELECT CONNECTION_ID()")).scalar_one()
            return cid, {name: int(value) for name, value in db.session.execute(sa.text(STATUS_SQL))}
        finally:
            db.session.remove()


def reads_of(app, call, recorder=None):
    """{handler: rows read by Handler_read_* (sum), rows_read: Rows_read, detail, statements} over
    one call of `call()`, less what reading the counters adds (measured just before)."""
    cid0, empty0 = counters(app)
    _, empty1 = counters(app)
    _, before = counters(app)
    if recorder is not None:
        recorder.on, recorder.statements = True, []
    try:
        result = call()
    finally:
        if recorder is not None:
            recorder.on = False
    cid1, after = counters(app)
    if cid0 != cid1:
        raise RuntimeError("the app's pool gave another connection: the session counters are not comparable")
    delta = {name: after[name] - before[name] - (empty1[name] - empty0[name]) for name in after}
    handler = sum(value for name, value in delta.items() if name.startswith("Handler_read"))
    return {"handler": handler, "rows_read": delta.get("Rows_read"),
            "detail": {name.removeprefix("Handler_read_"): value for name, value in delta.items()
                       if value and name.startswith("Handler_read")},
            "statements": len(recorder.statements) if recorder else None, "result": result}


def analyze(app, statements):
    """[(statement, [ANALYZE rows])] of each distinct SELECT: MariaDB runs it and gives the plan
    with r_rows, the rows really read per table."""
    found, seen = [], set()
    with app.app_context(), db.engine.connect() as conn:
        for statement, parameters in statements:
            if statement in seen:
                continue
            seen.add(statement)
            result = conn.exec_driver_sql("ANALYZE " + statement, parameters or ())
            keys = list(result.keys())
            rows = [dict(zip(keys, row, strict=True)) for row in result]
            found.append((" ".join(statement.split()), [{k: row.get(k) for k in (
                "table", "type", "possible_keys", "key", "key_len", "rows", "r_rows", "Extra")} for row in rows]))
        conn.rollback()
    return found


# --- 1. create ---------------------------------------------------------------------------------------
def bench_create(app, args):
    client = app.test_client()
    body = batch_body(10_000, args.tokens)
    took, ids = [], []
    for _ in range(args.create_runs):
        start = time.perf_counter()
        response = client.post(f"{API}/batches", data=body, content_type="application/json")
        took.append(time.perf_counter() - start)
        if response.status_code != 202:
            raise RuntimeError(f"batch create: {response.status_code} {response.get_data(as_text=True)[:500]}")
        ids.append(response.get_json()["batch_id"])
    single_took = []
    for n in range(args.singles):
        one = json.dumps({"prompt": prompt(n), "options": {"num_predict": args.tokens}}).encode()
        start = time.perf_counter()
        response = client.post(API, data=one, content_type="application/json")
        single_took.append(time.perf_counter() - start)
        if response.status_code != 202:
            raise RuntimeError(f"single create: {response.status_code} {response.get_data(as_text=True)[:500]}")
    with app.app_context():
        db.session.commit()
        made = db.session.scalar(sa.select(sa.func.count()).select_from(Job).where(
            Job.batch_pk.in_(sa.select(Batch.id).where(Batch.batch_id.in_(ids)))))
    export = export_jsonl(app, ids[-1])
    cancels = []
    with app.app_context():
        for batch_id in ids:
            start = time.perf_counter()
            store.cancel(store.get(batch_id))
            cancels.append(time.perf_counter() - start)
        db.session.execute(sa.update(Job).where(Job.batch_pk.is_(None), Job.status == statuses.QUEUED)
                           .values(status=statuses.CANCELLED, completed_at=utcnow()))
        db.session.commit()
    single_mean = statistics.fmean(single_took)
    return {"body_bytes": len(body), "runs": [round(t, 3) for t in took], "median_s": round(statistics.median(took), 3),
            "min_s": round(min(took), 3), "max_s": round(max(took), 3), "items_made": made,
            "singles": args.singles, "single_total_s": round(sum(single_took), 3),
            "single_mean_ms": round(single_mean * 1000, 2),
            "single_median_ms": round(statistics.median(single_took) * 1000, 2),
            "singles_10000_extrapolated_s": round(single_mean * 10_000, 1),
            "export_10000_queued": export, "cancel_10000_median_s": round(statistics.median(cancels), 3)}


def export_jsonl(app, batch_id, need_output=False):
    client = app.test_client()
    start = time.perf_counter()
    response = client.get(f"{API}/batches/{batch_id}/results.jsonl")
    data = response.get_data()
    took = time.perf_counter() - start
    rows = [json.loads(line) for line in data.decode().splitlines() if line]
    indexes = [row["index"] for row in rows]
    return {"status": response.status_code, "seconds": round(took, 3), "bytes": len(data), "rows": len(rows),
            "indexes_in_order": indexes == list(range(len(rows))),
            "rows_with_output": sum(1 for row in rows if row.get("output")),
            "rows_completed": sum(1 for row in rows if row.get("status") == statuses.COMPLETED),
            "ok": response.status_code == 200 and indexes == list(range(len(rows)))
            and (not need_output or all(row.get("output") for row in rows))}


# --- 2. rows per tick -----------------------------------------------------------------------------
def stage(app, size):
    """A batch of `size` items: ENDED_OK completed, ENDED_FAILED failed, RUNNING running with some
    text, the rest queued. Returns its pk."""
    owner = f"key:bench-{size}"
    items = [{"prompt": prompt(n), "model": MODEL, "options": {"num_predict": 3}} for n in range(size)]
    with app.app_context():
        batch = store.create(owner, items, MODEL)
        pk, worker = batch.id, f"bench-{size}"
        pks = db.session.scalars(sa.select(Job.id).where(Job.batch_pk == pk).order_by(Job.batch_index)
                                 .limit(ENDED_OK + ENDED_FAILED + RUNNING)).all()
        now = utcnow()
        db.session.execute(sa.update(Job).where(Job.id.in_(pks)).values(
            status=statuses.PROCESSING, phase="generating", worker_id=worker, attempts=1, runs=1,
            started_at=now, lease_until=now + timedelta(hours=1), version=Job.version + 1))
        db.session.commit()
        for n, job_pk in enumerate(pks):
            text = f"Line one of item {n}.\nThe second line of item {n}, a little longer."
            if n < ENDED_OK:
                queue.finish(job_pk, worker, statuses.COMPLETED, result=text, current_tokens=20, completion_tokens=20,
                             output_chars=len(text), elapsed_time=1500 + n, tokens_per_second=13.3)
            elif n < ENDED_OK + ENDED_FAILED:
                queue.finish(job_pk, worker, statuses.FAILED, error_message="The model failed.", current_tokens=3,
                             elapsed_time=400)
            else:
                queue.heartbeat(job_pk, worker, 3600, pieces=output.pieces(job_pk, 1, {"text": (0, text)}),
                                output_chars=len(text), output_latest=output.latest({"text": (0, text)}),
                                current_tokens=12, tokens_per_second=12.0, elapsed_time=1000)
        db.session.remove()
    return pk


def tick_calls(app, pk):
    """The reads measured: {name: call}, each as one tick (or request) makes it."""
    with app.app_context():
        batch = db.session.get(Batch, pk)
        seq, batch_id = batch.log_seq, batch.batch_id
        old = collections.deque((views.log_line(job) for job in store.log_of(pk, 0, seq - BEHIND)),
                                maxlen=store.LOG_LINES)
        db.session.remove()
    client = app.test_client()

    def last_lines():
        with app.app_context():
            try:
                return len(store.last_lines(db.session.get(Batch, pk)))
            finally:
                db.session.remove()

    return {
        f"stream tick: batch_stream.read(after = log_seq - {BEHIND})":
            lambda: len(batch_stream.read(app, pk, seq - BEHIND)[1]),
        "stream tick, caught up: batch_stream.read(after = log_seq)": lambda: len(batch_stream.read(app, pk, seq)[1]),
        f"page stream tick: batch_pages._read_card (seq = log_seq - {BEHIND})":
            lambda: len(batch_pages._read_card(app, pk, seq - BEHIND, collections.deque(old, maxlen=store.LOG_LINES))
                        ["running_items"]),
        "page load / stream connect: store.last_lines": last_lines,
        "GET /batches/<id> (status route)": lambda: client.get(f"{API}/batches/{batch_id}").status_code,
    }


def bench_ticks(app, recorder):
    pks = {size: stage(app, size) for size in SIZES}
    with app.app_context():  # the server's pace: kept 5 s per process; measured cold, apart
        history.forget()
    pace = reads_of(app, lambda: _pace(app), recorder)
    pace_plan = analyze(app, recorder.statements)
    table, plans = {}, {}
    for size, pk in pks.items():
        for name, call in tick_calls(app, pk).items():
            _pace(app)  # warm: what a tick sees 4 ticks out of 5 s
            reads_of(app, call)  # warm-up (the ORM's statement cache, the buffer pool)
            figures = reads_of(app, call, recorder)
            table.setdefault(name, {})[size] = {k: figures[k] for k in ("handler", "rows_read", "detail",
                                                                        "statements")}
            if size in (SIZES[0], SIZES[-1]) and name.startswith(("stream tick:", "page stream")):
                plans.setdefault(name, {})[size] = analyze(app, recorder.statements)
    return pks, table, plans, {"reads": {k: pace[k] for k in ("handler", "rows_read", "statements")},
                               "plan": pace_plan}


def _pace(app):
    with app.app_context():
        try:
            return history.pace()
        finally:
            db.session.remove()


def settle(app, pks):
    """End the staged batches (their running items, then a cancel), so no worker claims them."""
    with app.app_context():
        for size, pk in pks.items():
            running = db.session.scalars(sa.select(Job.id).where(Job.batch_pk == pk,
                                                                 Job.status == statuses.PROCESSING)).all()
            for job_pk in running:
                queue.finish(job_pk, f"bench-{size}", statuses.COMPLETED, result="done", current_tokens=1)
            store.cancel(db.session.get(Batch, pk))
        db.session.remove()


# --- 3. a whole batch by real workers -------------------------------------------------------------------
def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def start_simulator(args, log_dir):
    port = free_port()
    sim = Proc("simulator", [sys.executable, "-m", "simulator", "--port", str(port), "--tps", str(args.tps),
                             "--jitter", "0", "--load-delay", "0", "--lengths", "fixed", "--speed-spread", "0",
                             "--quiet"], {}, log_dir)
    url = f"http://127.0.0.1:{port}"

    def up():
        try:
            return requests.get(url + "/api/tags", timeout=1).ok
        except requests.RequestException:
            return not sim.alive() and sys.exit("the simulator exited:\n" + sim.log_tail())
    wait_for(up, 20, "the simulator")
    return sim, url


CLAIM_HINT = '''"""Written by bench/batch_bench.py --claim-hint: the workers' claim reads each head through
ix_jobs_turns (FORCE INDEX), an experiment (docs/benchmarks.md, Batches); the product code is unchanged."""
import sys

sys.path.insert(0, {root!r})
import sqlalchemy as sa  # noqa: E402

from webapp import statuses, turns  # noqa: E402
from webapp.extensions import db  # noqa: E402
from webapp.models import Job  # noqa: E402


def _head(now, where, lock=True):  # `lock`: the signature of later versions of turns._head
    query = (sa.select(Job.id).with_hint(Job, "FORCE INDEX (ix_jobs_turns)", "mysql")
             .where(Job.status == statuses.QUEUED, where, Job.run_after <= now, Job.cancel_requested.is_(False))
             .order_by(Job.id).limit(1))
    return db.session.execute(query.with_for_update(skip_locked=True) if lock else query).scalar_one_or_none()


turns._head = _head
'''


def start_workers(args, url, sim_url, log_dir):
    env = {"DATABASE_URL": url, "OLLAMA_URL": sim_url, "WORKER_CONCURRENCY": str(args.concurrency),
           "PROGRESS_INTERVAL": "0.5", "LEASE_SECONDS": "30", "SHUTDOWN_GRACE": "5", "SECRET_KEY": "bench"}
    if args.claim_hint:
        site = log_dir / "claim_hint"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(CLAIM_HINT.format(root=str(ROOT)))
        env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    workers = [Proc(f"worker-{n}", [sys.executable, "worker.py"], env, log_dir) for n in range(args.processes)]
    for worker in workers:
        wait_for(lambda w=worker: "jobs at once" in w.log_tail(100_000) or not w.alive(), 30, f"{worker.name}")
        if not worker.alive():
            sys.exit(f"{worker.name} exited:\n{worker.log_tail()}")
    return workers


def bench_run(app, args, url, log_dir, recorder):
    sim, sim_url = start_simulator(args, log_dir)
    workers = []
    try:
        workers = start_workers(args, url, sim_url, log_dir)
        db_pid = (pids_named("mariadbd", "mysqld") or [None])[0]
        pids = {"workers": [w.pid for w in workers], "simulator": [sim.pid], "database": [db_pid] if db_pid else []}
        cpu0 = {name: sum(proc_cpu(pid) for pid in group) for name, group in pids.items()}
        machine0, own0 = machine_cpu(), proc_cpu(os.getpid())
        client = app.test_client()
        start = time.perf_counter()
        response = client.post(f"{API}/batches", data=batch_body(args.run_items, args.tokens),
                               content_type="application/json")
        created_in = time.perf_counter() - start
        if response.status_code != 202:
            raise RuntimeError(f"batch create: {response.status_code} {response.get_data(as_text=True)[:500]}")
        batch_id = response.get_json()["batch_id"]
        with app.app_context():
            pk = store.get(batch_id).id
            db.session.remove()
        ticks, card_ticks, progress, claims, outliers = [], [], [], [], []
        seq, card_seq, lines = 0, 0, collections.deque(maxlen=store.LOG_LINES)
        deadline = time.monotonic() + args.run_timeout
        status, timed_out = statuses.PROCESSING, False
        while status not in statuses.ENDED:
            if time.monotonic() > deadline:
                timed_out = True
                break
            time.sleep(1.0)
            measured = reads_of(app, lambda: batch_stream.read(app, pk, seq), recorder)  # noqa: B023 - called at once
            snap, new = measured["result"]
            ticks.append({"handler": measured["handler"], "rows_read": measured["rows_read"], "lines": len(new),
                          "running": snap["running"]})
            if measured["handler"] - len(new) - 2 * snap["running"] > 100 and len(outliers) < 3:
                # what made this tick read more: its statements' plans, right after it (ANALYZE runs them again)
                outliers.append({"at_s": round(time.perf_counter() - start, 1), "rows": measured["handler"],
                                 "plans": analyze(app, recorder.statements)})
            seq = new[-1]["seq"] if new else seq
            measured = reads_of(app, lambda: batch_pages._read_card(app, pk, card_seq, lines))  # noqa: B023
            card = measured["result"]
            if len(progress) % 10 == 0:  # a claim's read costs the database as much as a worker's: not too often
                claims.append(reads_of(app, lambda: _claim_probe(app))["handler"])
            card_ticks.append({"handler": measured["handler"], "rows_read": measured["rows_read"],
                               "running": card["running"]})
            card_seq = card["log_seq"]
            status = snap["status"]
            progress.append((round(time.perf_counter() - start, 2), snap["ended"]))
        wall = time.perf_counter() - start
        cpu1 = {name: sum(proc_cpu(pid) for pid in group) for name, group in pids.items()}
        machine1, own1 = machine_cpu(), proc_cpu(os.getpid())
        for worker in workers:
            worker.stop()
        logs = "\n".join(worker.log_tail(10_000_000) for worker in workers)
    finally:
        for worker in workers:
            worker.stop()
        sim.stop()
    checks = check_batch(app, pk)
    export = export_jsonl(app, batch_id, need_output=True)
    ended = progress[-1][1] if progress else 0
    busy, total = machine1[0] - machine0[0], machine1[1] - machine0[1]
    cpu = {name: round(cpu1[name] - cpu0[name], 2) for name in cpu0}
    cpu["bench process (web reads, watcher)"] = round(own1 - own0, 2)
    return {"items": args.run_items, "processes": args.processes, "concurrency": args.concurrency,
            "tps": args.tps, "tokens": args.tokens, "created_in_s": round(created_in, 3),
            "wall_s": round(wall, 1), "timed_out": timed_out, "ended": ended,
            "items_per_s": round(ended / wall, 1) if wall else None,
            "cpu_s": cpu,
            "cpu_ms_per_item": {name: round(value / max(ended, 1) * 1000, 2) for name, value in cpu.items()},
            "machine_busy_cores": round(busy / total * (os.cpu_count() or 1), 2) if total else None,
            "ticks": ticks, "card_ticks": card_ticks, "progress": progress, "checks": checks, "export": export,
            "claim_probe_rows": claims, "tick_outliers": outliers, "claim_hint": args.claim_hint,
            "rate_by_minute": by_minute(progress),
            "log_problems": [line for line in logs.splitlines() if "Traceback" in line or " ERROR " in line
                             or " WARNING " in line][:20]}


def _claim_probe(app):
    """One claim's read (`turns.next_job`, FOR UPDATE SKIP LOCKED), rolled back at once."""
    with app.app_context():
        try:
            return turns.next_job(utcnow())
        finally:
            db.session.rollback()
            db.session.remove()


def by_minute(progress):
    """Items ended per second in each minute of the run, from the watcher's (seconds, ended) samples."""
    rates, last = [], (0.0, 0)
    for at, ended in progress:
        if at - last[0] >= 60 or (at, ended) == progress[-1]:
            rates.append(round((ended - last[1]) / (at - last[0]), 1) if at > last[0] else None)
            last = (at, ended)
    return rates


def check_batch(app, pk):
    with app.app_context():
        db.session.commit()
        batch = db.session.get(Batch, pk, populate_existing=True)
        rows = db.session.execute(
            sa.select(Job.status, sa.func.count(), sa.func.coalesce(sa.func.sum(Job.current_tokens), 0),
                      sa.func.coalesce(sa.func.sum(Job.elapsed_time), 0))
            .where(Job.batch_pk == pk).group_by(Job.status)).all()
        seqs = db.session.execute(sa.select(sa.func.count(sa.distinct(Job.batch_seq)), sa.func.min(Job.batch_seq),
                                            sa.func.max(Job.batch_seq)).where(Job.batch_pk == pk)).one()
        empty = db.session.scalar(sa.select(sa.func.count()).select_from(Job).where(
            Job.batch_pk == pk, sa.or_(Job.result.is_(None), Job.result == "")))
        counted = {status: count for status, count, _tokens, _ms in rows}
        got = {"completed": batch.completed, "failed": batch.failed, "cancelled": batch.cancelled}
        want = {name: counted.get(name, 0) for name in got}
        facts = {"batch_status": batch.status, "counters": got, "count_per_status": counted,
                 "tokens": [batch.tokens, int(sum(r[2] for r in rows if r[0] in statuses.ENDED))],
                 "item_ms": [batch.item_ms, int(sum(r[3] for r in rows if r[0] in statuses.ENDED))],
                 "log_seq": batch.log_seq, "distinct_batch_seq_min_max": list(seqs), "items_without_result": empty}
        db.session.remove()
    total = sum(counted.values())
    facts["ok"] = (got == want and facts["tokens"][0] == facts["tokens"][1]
                   and facts["item_ms"][0] == facts["item_ms"][1]
                   and list(seqs) == [total, 1, total] and facts["log_seq"] == total
                   and batch.status == statuses.COMPLETED and empty == 0)
    return facts


# --- the report ------------------------------------------------------------------------------------
def spread(values):
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[0]} / {statistics.median(ordered):g} / {ordered[-1]}"


def report(meta, create, ticks, pace, plans, run, header=True):
    out = [f"Machine: {machine_line(meta['machine'])}; load average before: {meta['loadavg']}", ""] if header else []
    if create:
        c = create
        out += ["### Create", "",
                "| what | figure |", "|---|---:|",
                f"| one 10,000-item batch, `POST .../batches` ({c['body_bytes']:,} B), median of {len(c['runs'])} "
                f"(min–max) | **{c['median_s']:.2f} s** ({c['min_s']:.2f}–{c['max_s']:.2f}) |",
                f"| {c['singles']} single POSTs, mean (median) per job | {c['single_mean_ms']:.2f} ms "
                f"({c['single_median_ms']:.2f} ms) |",
                f"| 10,000 single POSTs, extrapolated | **{c['singles_10000_extrapolated_s']:.1f} s** |",
                f"| batch vs single POSTs | {c['singles_10000_extrapolated_s'] / c['median_s']:.1f}× faster |",
                f"| JSONL export of a 10,000-item batch (queued items), {c['export_10000_queued']['bytes']:,} B | "
                f"{c['export_10000_queued']['seconds']:.2f} s, {c['export_10000_queued']['rows']:,} rows |",
                f"| cancel of a 10,000-item queued batch (median) | {c['cancel_10000_median_s']:.2f} s |", ""]
    if ticks:
        out += ["### Rows read per tick (Handler_read_* sum; Rows_read in brackets)", "",
                f"State of each batch: {ENDED_OK} completed, {ENDED_FAILED} failed, {RUNNING} running, the rest "
                "queued; statements per call in the last column.", "",
                "| read | " + " | ".join(f"{size:,} items" for size in SIZES) + " | statements |",
                "|---|" + "---:|" * (len(SIZES) + 1)]
        for name, by_size in ticks.items():
            cells = [f"{by_size[s]['handler']} ({by_size[s]['rows_read']})" for s in SIZES]
            out.append(f"| {name} | " + " | ".join(cells) + f" | {by_size[SIZES[-1]]['statements']} |")
        out += ["", f"The server's pace (`history.pace`, once per 5 s per process, not per tick): "
                f"{pace['reads']['handler']} ({pace['reads']['rows_read']}) rows, {pace['reads']['statements']} "
                "statements.", ""]
        out += ["### Plans (MariaDB ANALYZE: rows = estimate, r_rows = rows read)", ""]
        for name, by_size in plans.items():
            for size, statements in by_size.items():
                out.append(f"{name}, {size:,} items:")
                out += plan_lines(statements)
        out.append("history.pace (cold):")
        out += plan_lines(pace["plan"])
        out.append("")
    if run:
        r, k = run, run["checks"]
        ticks_h = [t["handler"] - t["lines"] for t in r["ticks"]]
        ticks_hr = [t["handler"] - t["lines"] - t["running"] for t in r["ticks"]]
        cold = [t["handler"] for t in r["ticks"] if t["handler"] - t["lines"] - 2 * t["running"] > 100]
        out += ["### A whole batch by real workers", "",
                "| what | figure |", "|---|---:|",
                f"| items, worker processes × slots, simulator tok/s, tokens per item | {r['items']:,}, "
                f"{r['processes']} × {r['concurrency']}, {r['tps']:g}, {r['tokens']} |",
                f"| the workers' claim | {HINTED if r['claim_hint'] else 'as committed'} |",
                f"| create (API) | {r['created_in_s']:.2f} s |",
                f"| create → batch completed | **{r['wall_s']:.1f} s** "
                f"({'TIMED OUT' if r['timed_out'] else 'ended'}) |",
                f"| items per second | **{r['items_per_s']}** |",
                "| CPU ms per item: " + ", ".join(r["cpu_ms_per_item"]) + " | "
                + ", ".join(f"{v:g}" for v in r["cpu_ms_per_item"].values()) + " |",
                f"| machine busy (cores of {os.cpu_count()}) | {r['machine_busy_cores']} |",
                f"| counters = COUNT(*) per status; tokens, item_ms, log numbers 1..N | "
                f"{'yes' if k['ok'] else 'NO'}: {k['counters']} vs {k['count_per_status']} |",
                f"| JSONL export: rows, with output, in order, time | {r['export']['rows']:,}, "
                f"{r['export']['rows_with_output']:,}, {r['export']['indexes_in_order']}, "
                f"{r['export']['seconds']:.2f} s |",
                f"| watcher ticks during the run (1/s): n; rows read min/median/max | {len(r['ticks'])}; "
                f"{spread([t['handler'] for t in r['ticks']])} |",
                f"| the same less the log lines it returned | {spread(ticks_h)} |",
                f"| the same less the lines and the running items | {spread(ticks_hr)} |",
                f"| ticks that re-read the server's pace (over 100 rows beyond lines + 2 × running) | "
                f"{len(cold)}: {spread(cold)} |",
                f"| page stream ticks: rows read min/median/max | {spread([t['handler'] for t in r['card_ticks']])} |",
                f"| one claim's read (`turns.next_job`), every 10 s: rows read first / median / last | "
                f"{_first_mid_last(r['claim_probe_rows'])} |",
                f"| items ended per second, minute by minute | {r['rate_by_minute']} |",
                ""]
        for outlier in r["tick_outliers"]:
            out.append(f"A tick that read {outlier['rows']:,} rows, {outlier['at_s']} s into the run; its statements "
                       "analyzed right after it:")
            out += plan_lines(outlier["plans"])
        for line in r["log_problems"]:
            out.append(f"worker log: {line}")
    return "\n".join(out)


HINTED = "EXPERIMENT: heads read through ix_jobs_turns (--claim-hint)"


def _first_mid_last(values):
    return f"{values[0]:,} / {statistics.median(values):,g} / {values[-1]:,}" if values else "-"


def plan_lines(statements):
    lines = []
    for statement, rows in statements:
        lines.append(f"    {statement[:150]}{'…' if len(statement) > 150 else ''}")
        for row in rows:
            lines.append("      " + ", ".join(f"{k}={row[k]}" for k in ("table", "type", "key", "rows", "r_rows",
                                                                        "Extra")))
    return lines


# --- main ---------------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("BATCH_BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--create-runs", type=int, default=5, help="10,000-item batch creations timed")
    parser.add_argument("--singles", type=int, default=500, help="single-job POSTs timed (the baseline)")
    parser.add_argument("--run-items", type=int, default=10_000, help="items of the batch the workers run")
    parser.add_argument("--processes", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=8, help="WORKER_CONCURRENCY of each")
    parser.add_argument("--tps", type=float, default=2000.0, help="simulator tokens per second per stream")
    parser.add_argument("--tokens", type=int, default=3, help="options.num_predict of every item")
    parser.add_argument("--run-timeout", type=float, default=900.0, help="seconds the run may take")
    parser.add_argument("--claim-hint", action="store_true",
                        help="experiment: the workers read each owner's head through ix_jobs_turns (FORCE INDEX)")
    parser.add_argument("--skip-create", action="store_true")
    parser.add_argument("--skip-ticks", action="store_true")
    parser.add_argument("--skip-run", action="store_true")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/*.json")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the finally blocks stop the children
    url = args.database_url
    started = datetime.now(UTC)
    log_dir = RESULTS / f"batch-{started.strftime('%Y%m%dT%H%M%SZ')}-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        app = prepare(url)
        meta = {"started_at": started.isoformat(), "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
                "args": vars(args)}
        with app.app_context():
            server = db.session.scalar(sa.text("SELECT VERSION()"))
            db.session.remove()
        meta["machine"] = machine_info(f"MariaDB/MySQL {server}", None)
        recorder = Recorder(app)
        print(report(meta, None, None, None, None, None), flush=True)
        create = None if args.skip_create else bench_create(app, args)
        print(report(meta, create, None, None, None, None, header=False), flush=True)
        pks, ticks, plans, pace = (None, None, None, None) if args.skip_ticks else bench_ticks(app, recorder)
        if pks:
            settle(app, pks)
        print(report(meta, None, ticks, pace, plans, None, header=False), flush=True)
        run = None if args.skip_run else bench_run(app, args, url, log_dir, recorder)
        if run and not run["timed_out"]:  # the ended 10,000: one more row of the ticks table
            pk = None
            with app.app_context():
                pk = db.session.scalar(sa.select(Batch.id).order_by(Batch.id.desc()).limit(1))
                db.session.remove()
            if ticks is not None and run["items"] == SIZES[-1]:
                name = "stream tick: batch_stream.read(after = log_seq - 5), the run's batch, all ended"
                for call_name, call in tick_calls(app, pk).items():
                    if call_name.startswith("stream tick:"):
                        figures = reads_of(app, call, recorder)
                        ticks[name] = {size: {k: (figures[k] if size == SIZES[-1] else "-")
                                              for k in ("handler", "rows_read", "statements")} for size in SIZES}
        print("\n## All together\n")
        print(report(meta, create, ticks, pace, plans, run))
        if not args.no_save:
            path = RESULTS / f"batch-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
            path.write_text(json.dumps({**meta, "create": create, "ticks": ticks, "plans": plans, "pace": pace,
                                        "run": run}, indent=1, default=str) + "\n")
            print(f"\nresults: {path.relative_to(ROOT)}")
        bad = (run and (not run["checks"]["ok"] or not run["export"]["ok"] or run["timed_out"]))
        return 1 if bad else 0
    finally:
        Proc.stop_all()


if __name__ == "__main__":
    sys.exit(main())
