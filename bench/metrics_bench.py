"""Metrics benchmark: what one scrape of /metrics costs the database with 100,000 ended jobs (and
100,000 webhook deliveries) on MariaDB/MySQL, against what the same figures cost read from the jobs
themselves, and what the totals add to a job's end.

    .venv/bin/python bench/metrics_bench.py [--database-url URL] [--ended 100000] [--queued 1000]
                                            [--running 8] [--deliveries 100000] [--repeat 50]
                                            [--no-compare]

The database (default `mysql+pymysql://root@127.0.0.1/livegen_bench_metrics`, or
$METRICS_BENCH_DATABASE_URL) is dropped and created again, so its name must contain "bench"; it is
migrated as the tests do. The jobs table gets `--ended` ended jobs over 4 models (90 % completed, 6 %
failed, 4 % cancelled; prompts of 200 characters, answers of 200 to 4,000), then `--running`
running and `--queued` queued jobs; the outbox `--deliveries` delivered deliveries and 20 pending.
The totals are made from the ended rows with the code a job's end runs (`totals.end_rows`), as if
each job had counted its own end. Then ANALYZE TABLE.

Measured, each `--repeat` times after 3 warm-ups, through the app's own session (READ COMMITTED):

  * the database's part of a scrape (`DatabaseFigures.collect`), and each of its reads;
  * a whole `GET /metrics` through the web app (the above, this process's figures, the encoding);
  * with --compare (the default), 3 times each: the same counters and histograms aggregated from
    the jobs table at scrape time (the design the totals replace);
  * what the totals add to a job's end: `totals.job_ended(pk)` (its read and its upsert) inside a
    transaction that is rolled back, for completed jobs of the table.

A Markdown table goes to stdout, the figures as JSON to bench/results/metrics-<timestamp>.json,
with the EXPLAIN of each read.
"""
import argparse
import json
import os
import random
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from flask_migrate import upgrade  # noqa: E402

from bench.benchlib import Db, machine_info, machine_line, pct  # noqa: E402
from webapp.extensions import db  # noqa: E402
from webapp.models import Job, WebhookDelivery, utcnow  # noqa: E402
from webapp.telemetry import figures, totals  # noqa: E402
from webapp.web import create_app  # noqa: E402

DEFAULT_URL = "mysql+pymysql://root@127.0.0.1/livegen_bench_metrics"
RESULTS = ROOT / "bench" / "results"
BATCH = 5000
MODELS = ("llama3.2", "qwen2.5:7b", "mistral", "phi3")
ERRORS = ("Ollama is not reachable at http://127.0.0.1:11434/api/generate (connection refused). Tried 3 times.",
          "Ollama answered 404 for model 'x': model 'x' not found.", "The worker was lost 3 times; giving up.")
# The design the totals replace: the same figures aggregated from the jobs at each scrape.
FROM_JOBS = {
    "counters": "SELECT model, COUNT(*), SUM(completion_tokens) FROM ai_generation_jobs "
                "WHERE status='completed' GROUP BY model",
    "histograms": "SELECT model, " + ", ".join(
        f"SUM(CASE WHEN elapsed_time <= {int(bound * 1000)} THEN 1 ELSE 0 END)"
        for bound in totals.HISTOGRAMS["generation_seconds"]) + ", " + ", ".join(
        f"SUM(CASE WHEN TIMESTAMPDIFF(MICROSECOND, created_at, started_at) <= {int(bound * 1e6)} THEN 1 ELSE 0 END)"
        for bound in totals.HISTOGRAMS["wait_seconds"]) + ", SUM(elapsed_time), SUM(load_ms) "
        "FROM ai_generation_jobs WHERE status='completed' GROUP BY model",
    "by status": "SELECT status, COUNT(*) FROM ai_generation_jobs GROUP BY status",
}


# --- filling the tables --------------------------------------------------------------------------
def insert(table, rows):
    with db.engine.begin() as conn:
        for start in range(0, len(rows), BATCH):
            conn.execute(sa.insert(table), rows[start:start + BATCH])


def ended_row(n, rng, now):
    created = now - timedelta(seconds=n * 3 + 600)
    started = created + timedelta(seconds=rng.random() * 20)
    status = rng.choices(("completed", "failed", "cancelled"), (90, 6, 4))[0]
    done = status == "completed"
    return {"job_id": f"bench-{n:09d}-{rng.getrandbits(64):016x}", "owner": f"key:{n % 50}", "status": status,
            "prompt": "p" * 200, "model": rng.choice(MODELS), "options": {}, "result": "r" * rng.randint(200, 4000),
            "completion_tokens": rng.randint(10, 1000) if done else None, "elapsed_time": rng.randint(100, 60_000),
            "tokens_per_second": rng.uniform(5, 120), "load_ms": rng.choice((0, 0, 0, rng.randint(500, 8000))),
            "error_message": None if done else ("Cancelled while generating." if status == "cancelled"
                                                else rng.choice(ERRORS)),
            "created_at": created, "started_at": started, "completed_at": started + timedelta(seconds=30),
            "run_after": created, "last_update_at": started, "attempts": 1, "runs": 1}


def live_row(n, rng, now, status):
    extra = ({"worker_id": f"host:{n % 2}:bench", "started_at": now, "lease_until": now + timedelta(hours=1),
              "tokens_per_second": 40.0} if status == "processing" else {})
    return {"job_id": f"bench-{n:09d}-{rng.getrandbits(64):016x}", "owner": f"key:{n % 50}", "status": status,
            "prompt": "p" * 200, "model": rng.choice(MODELS), "options": {},
            "created_at": now - timedelta(seconds=n % 600), "run_after": now, "last_update_at": now, **extra}


def fill(app, args):
    """The rows, and the totals their ends would have counted."""
    rng, now = random.Random("metrics-bench"), utcnow()
    with app.app_context():
        rows = [ended_row(n, rng, now) for n in range(args.ended)]
        insert(Job.__table__, rows)
        counted = Counter()
        for row in rows:
            for name, model, label, amount in totals.end_rows(_Row(row)):
                counted[name, model, label] += amount
        n = args.ended
        insert(Job.__table__, [live_row(n + i, rng, now, "processing") for i in range(args.running)])
        insert(Job.__table__, [live_row(n + args.running + i, rng, now, "queued") for i in range(args.queued)])
        first = db.session.scalar(sa.select(sa.func.min(Job.id)))
        insert(WebhookDelivery.__table__, [delivery_row(i, first, now, "delivered") for i in range(args.deliveries)]
               + [delivery_row(args.deliveries + i, first, now, "pending") for i in range(20)])
        totals.add([(*key, amount) for key, amount in counted.items()])
        db.session.commit()
        with db.engine.begin() as conn:
            for table in ("ai_generation_jobs", "ai_webhook_deliveries", "ai_metric_totals"):
                conn.exec_driver_sql(f"ANALYZE TABLE {table}").all()
    return len(counted)


class _Row:
    """A dict's keys as attributes: what `totals.end_rows` reads of a job."""

    def __init__(self, values):
        self.__dict__.update({column.name: values.get(column.name) for column in totals.ENDED_COLUMNS})


def delivery_row(i, job_pk, now, status):
    return {"delivery_id": f"msg_bench_{i:09d}", "job_pk": job_pk + i % 1000, "event": "completed",
            "url": "https://hooks.example.test/x", "body": "{}", "status": status, "attempts": 1,
            "next_attempt_at": now - timedelta(seconds=i % 60), "created_at": now}


# --- measuring -----------------------------------------------------------------------------------
def timed(call, repeat, after=lambda: None):
    """ms per call over `repeat` calls, after 3 warm-ups: p50, p95, max."""
    for _ in range(3):
        call()
        after()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
        after()
    ordered = sorted(samples)
    return {"n": len(ordered), "p50": round(pct(ordered, 50), 2), "p95": round(pct(ordered, 95), 2),
            "max": round(ordered[-1], 2)}


def reads(now):
    """Each read of a scrape, by name (what DatabaseFigures.collect runs, one at a time)."""
    return {"totals": totals.read, "live jobs": lambda: figures.read_live(now),
            "webhooks": lambda: figures.read_webhooks(now)}


def measure(app, args):
    results = {}
    with app.app_context():
        collector = figures.DatabaseFigures(app)
        results["scrape, database part"] = timed(lambda: list(collector.collect()), args.repeat)
        client = app.test_client()
        results["GET /metrics, whole"] = timed(lambda: client.get("/metrics").close(), args.repeat)
        for name, call in reads(utcnow()).items():
            results[f"  read: {name}"] = timed(call, args.repeat, db.session.commit)
        done = db.session.scalars(sa.select(Job.id).where(Job.status == "completed").limit(args.repeat + 3)).all()
        ends = iter(done)
        results["totals.job_ended (a job's end adds)"] = timed(lambda: totals.job_ended(next(ends)), args.repeat,
                                                               db.session.rollback)
        # For scale: one single-row UPDATE, on the same machine at the same moment.
        bump = sa.update(Job).where(Job.id == done[0]).values(version=Job.version + 1)
        results["  for scale: one UPDATE of a job's row"] = timed(lambda: db.session.execute(bump), args.repeat,
                                                                  db.session.rollback)
        if args.compare:
            for name, statement in FROM_JOBS.items():
                results[f"from the jobs instead: {name}"] = timed(
                    lambda statement=statement: db.session.execute(sa.text(statement)).all(), 3, db.session.commit)
    return results


def explains(app):
    """The EXPLAIN of every statement a scrape's reads send, with the parameters they sent."""
    sent = []

    def record(_conn, _cursor, statement, parameters, _context, _many):
        sent.append((statement, parameters))

    with app.app_context():
        sa.event.listen(db.engine, "before_cursor_execute", record)
        try:
            for call in reads(utcnow()).values():
                call()
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", record)
            db.session.commit()
        with db.engine.connect() as conn:
            return [{"statement": statement, "explain": [list(row) for row in conn.exec_driver_sql(
                        "EXPLAIN " + statement, parameters).all()]} for statement, parameters in sent]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("METRICS_BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--ended", type=int, default=100_000)
    parser.add_argument("--queued", type=int, default=1000)
    parser.add_argument("--running", type=int, default=8)
    parser.add_argument("--deliveries", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--no-compare", dest="compare", action="store_false")
    args = parser.parse_args()
    server = Db(args.database_url)
    server.recreate()
    # A long read timeout: the comparison's aggregates over the jobs take seconds (that is the point).
    app = create_app({"SQLALCHEMY_DATABASE_URI": args.database_url, "SECRET_KEY": "bench", "DB_READ_TIMEOUT": 600})
    with app.app_context():
        upgrade()
    started = time.monotonic()
    total_rows = fill(app, args)
    print(f"filled in {time.monotonic() - started:.0f} s: {args.ended} ended, {args.running} running, "
          f"{args.queued} queued jobs; {args.deliveries} deliveries; {total_rows} totals", file=sys.stderr)
    load_before = os.getloadavg()[0]
    results = measure(app, args)
    load = f"{load_before:.1f} / {os.getloadavg()[0]:.1f}"
    machine = machine_info(f"{server.version()}", None, **vars(args) | {"database_url": None, "totals": total_rows,
                                                                         "load_average_before_after": load})
    print(f"\n{machine_line(machine)}; 1-minute load average {load} (before / after)\n\n"
          "| what | n | p50 ms | p95 ms | max ms |\n|---|---|---|---|---|")
    for name, figures_ in results.items():
        print(f"| {name} | {figures_['n']} | {figures_['p50']} | {figures_['p95']} | {figures_['max']} |")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"metrics-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"machine": machine, "results": results, "explain": explains(app)}, indent=1,
                              default=str))
    print(f"\nfigures: {out}")


if __name__ == "__main__":
    main()
