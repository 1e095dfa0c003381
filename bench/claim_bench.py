"""Claim benchmark: the fair-turns claim and place in line with 100,000 queued rows, against the
old FIFO queries, on MariaDB/MySQL.

    .venv/bin/python bench/claim_bench.py [--database-url URL] [--queued 100000] [--completed 100000]
                                          [--owners 10000] [--running 4] [--repeat 200] [--budget 10]
                                          [--scenarios a,b,c] [--sizes 1,10]
                                          [--try-index NAME:COL,COL ...]

The database (default `mysql+pymysql://root@127.0.0.1/livegen_bench_claim`, or
$CLAIM_BENCH_DATABASE_URL) is dropped and created again, so its name must contain "bench"; it is
migrated with flask_migrate's upgrade(), as the tests do. For each scenario the jobs table is
emptied and filled with Core INSERTs in batches: `--completed` ended rows first (the history a
real table carries), then the running rows, then `--queued` queued rows, then ANALYZE TABLE.

  a  one owner holds every queued job and has `--running` jobs running; a second owner has 1
     queued job, the newest of all;
  b  the queued jobs spread over `--owners` owners (interleaved at random, seeded); `--running`
     of those owners have one job running each;
  c  the queued jobs of 2 owners, interleaved; nothing running.

Measured per scenario, each call `--repeat` times (fewer if `--budget` seconds run out, at least
20), after 3 warm-up calls, through the app's own session (READ COMMITTED, as in production):

  * claim, new: `turns.next_job(now)` (the running counts and the head reads, FOR UPDATE SKIP
    LOCKED), then a rollback outside the timer, so nothing changes;
  * claim, old: the FIFO claim read of before fair turns (`... ORDER BY id LIMIT 1 FOR UPDATE
    SKIP LOCKED`), rolled back likewise;
  * places, new: `queue.queue_positions(jobs)` for 1 job (the newest queued) and for 10 (spread
    evenly over the queue);
  * places, old: the old correlated COUNT of queued jobs with a smaller id, for the same jobs.

For each: median and p95 in ms; rows read (the sum of the session's Handler_read_* counters over
one call, less what SHOW STATUS itself adds); for the claims, the rows the read left locked
(information_schema.INNODB_TRX.trx_rows_locked before the rollback) and what a second claimer,
reading while the first one's transaction is open, gets; and the EXPLAIN of every statement.
A Markdown table goes to stdout and the figures, as JSON, to bench/results/claim-<timestamp>.json,
with the 1-minute load average around each scenario's measurements (the machine may be shared).
`--try-index` is a what-if: it adds an index the product's migrations do not have, after migrating.
"""
import argparse
import json
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from flask_migrate import upgrade  # noqa: E402

from bench.benchlib import Db, machine_info, machine_line, pct  # noqa: E402
from webapp import create_app, queue, turns  # noqa: E402
from webapp.extensions import db  # noqa: E402
from webapp.models import Job, utcnow  # noqa: E402

DEFAULT_URL = "mysql+pymysql://root@127.0.0.1/livegen_bench_claim"
RESULTS = ROOT / "bench" / "results"
BATCH = 5000
TABLE = Job.__table__

OLD_CLAIM = ("SELECT id FROM ai_generation_jobs WHERE status='queued' AND run_after<=NOW() "
             "AND cancel_requested=0 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED")
# The old queue_positions: for each job asked, the queued jobs with a smaller id.
OLD_PLACES = ("SELECT j.id, 1 + (SELECT COUNT(*) FROM ai_generation_jobs a WHERE a.status='queued' AND a.id < j.id) "
              "FROM ai_generation_jobs j WHERE j.id IN ({pks})")


# --- filling the table ---------------------------------------------------------------------------
def reset(app):
    with app.app_context(), db.engine.begin() as conn:
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=0")
        conn.exec_driver_sql("TRUNCATE TABLE ai_generation_output")
        conn.exec_driver_sql("TRUNCATE TABLE ai_generation_jobs")
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=1")


def insert(rows):
    """Core INSERTs of `rows` (dicts with the same keys), BATCH rows a statement."""
    with db.engine.begin() as conn:
        for start in range(0, len(rows), BATCH):
            conn.execute(sa.insert(TABLE), rows[start:start + BATCH])


def row(n, owner, status, now, **extra):
    return {"job_id": f"bench-{n:09d}-{random.getrandbits(64):016x}", "owner": owner, "status": status,
            "prompt": f"Benchmark job {n}: why is the sky blue?", "model": "llama3.2", "options": {},
            "run_after": now, "created_at": now, "last_update_at": now, **extra}


def fill(app, scenario, args):
    """The scenario's rows; returns what it made, for the report."""
    rng = random.Random(f"claim-bench-{scenario}")
    random.seed(f"ids-{scenario}")
    past = utcnow() - timedelta(days=1)
    now = utcnow() - timedelta(seconds=5)
    n = 0
    if scenario == "a":
        running = ["key:a"] * args.running
        queued = ["key:a"] * args.queued + ["key:b"]
    elif scenario == "b":
        owners = [f"key:{i}" for i in range(args.owners)]
        queued = [owners[i % len(owners)] for i in range(args.queued)]
        rng.shuffle(queued)
        running = rng.sample(owners, args.running)
    else:
        queued = [rng.choice(["key:a", "key:b"]) for _ in range(args.queued)]
        running = []
    with app.app_context():
        history_owners = sorted(set(queued))
        rows = []
        for _ in range(args.completed):
            n += 1
            rows.append(row(n, rng.choice(history_owners), "completed", past, attempts=1, runs=1,
                            started_at=past, completed_at=past, result="A short answer. " * 8,
                            current_tokens=40, progress_percentage=100.0))
        insert(rows)
        rows = []
        for owner in running:
            n += 1
            rows.append(row(n, owner, "processing", now, attempts=1, runs=1, worker_id="bench-worker",
                            phase="generating", started_at=now, lease_until=now + timedelta(hours=1)))
        insert(rows)  # each INSERT's rows have the same columns
        rows = []
        for owner in queued:
            n += 1
            rows.append(row(n, owner, "queued", now))
        insert(rows)
        with db.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE TABLE ai_generation_jobs").all()
    return {"queued": len(queued), "queued_owners": len(set(queued)), "running": len(running),
            "running_owners": len(set(running)), "completed": args.completed}


# --- measuring -----------------------------------------------------------------------------------
class Recorder:
    """The SQL statements (with their parameters) the engine sends while `on`."""

    def __init__(self, engine):
        self.on = False
        self.statements = []
        sa.event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, parameters, context, executemany):
        if self.on and statement.lstrip().upper().startswith("SELECT"):
            self.statements.append((statement, parameters))

    def capture(self, call):
        self.statements, self.on = [], True
        try:
            call()
        finally:
            self.on = False
        return self.statements


def handler_reads():
    rows = db.session.execute(sa.text("SHOW SESSION STATUS LIKE 'Handler_read%'")).all()
    return sum(int(value) for _name, value in rows)


def rows_read(call, after):
    """Handler_read_* over one call (less SHOW STATUS's own reads); `after` runs outside it."""
    empty0 = handler_reads()
    empty1 = handler_reads()
    overhead = empty1 - empty0
    before = handler_reads()
    call()
    total = handler_reads() - before - overhead
    after()
    return total


def rows_locked():
    return db.session.execute(sa.text(
        "SELECT trx_rows_locked FROM information_schema.INNODB_TRX "
        "WHERE trx_mysql_thread_id = CONNECTION_ID()")).scalar_one_or_none() or 0


def timed(call, after, repeat, budget):
    """ms per call: `repeat` calls (at least 20, fewer if `budget` s run out), after 3 warm-ups."""
    for _ in range(3):
        call()
        after()
    samples = []
    deadline = time.monotonic() + budget
    while len(samples) < repeat and (len(samples) < 20 or time.monotonic() < deadline):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
        after()
    ordered = sorted(samples)
    return {"n": len(samples), "p50": round(pct(ordered, 50), 3), "p95": round(pct(ordered, 95), 3),
            "max": round(ordered[-1], 3)}


def explain(statements):
    """[(statement, [EXPLAIN rows as dicts])] for each distinct statement."""
    seen, found = set(), []
    with db.engine.connect() as conn:
        for statement, parameters in statements:
            if statement in seen:
                continue
            seen.add(statement)
            result = conn.exec_driver_sql("EXPLAIN " + statement, parameters or ())
            keys = list(result.keys())
            found.append((" ".join(statement.split()), [dict(zip(keys, r, strict=True)) for r in result]))
        conn.rollback()
    return found


def second_claimer(app, first_read, second_read):
    """What a second claimer's read gets while the first one's transaction holds its locks."""
    first_pk = first_read()
    with app.app_context():  # a session (and connection) of its own
        second_pk = second_read()
        db.session.rollback()
        db.session.remove()
    db.session.rollback()
    return first_pk, second_pk


def measure(app, scenario, args, recorder):
    out = {}
    with app.app_context():
        db.session.commit()
        queued_ids = db.session.scalars(sa.select(Job.id).where(Job.status == "queued").order_by(Job.id)).all()
        one = [queued_ids[-1]]  # the newest
        asked = {size: [queued_ids[i * len(queued_ids) // size] for i in range(size)]  # spread evenly
                 for size in args.sizes if size > 1}
        asked[1] = one
        every = {pk for pks in asked.values() for pk in pks}
        # As the status route has them: rows already loaded (places() reads .id and .owner only;
        # an ORM object would be expired by each rollback and reloaded inside the timer).
        owners = dict(db.session.execute(sa.select(Job.id, Job.owner).where(Job.id.in_(every))).all())
        jobs = {pk: SimpleNamespace(id=pk, owner=owner) for pk, owner in owners.items()}
        db.session.rollback()

        def new_claim():
            return turns.next_job(utcnow())

        def old_claim():
            return db.session.execute(sa.text(OLD_CLAIM)).scalar_one_or_none()

        def new_places(pks):
            def call():
                turns._kept.clear()  # the read itself, not the process's kept answer (see turns.places)
                return queue.queue_positions([jobs[pk] for pk in pks])
            return call

        def old_places(pks):
            sql = sa.text(OLD_PLACES.format(pks=", ".join(str(int(pk)) for pk in pks)))
            return lambda: dict(db.session.execute(sql).all())

        rollback = db.session.rollback
        calls = {"claim new (turns.next_job)": new_claim, "claim old (FIFO)": old_claim}
        for size in args.sizes:
            jobs_word = "job" if size == 1 else "jobs"
            calls[f"places new, {size} {jobs_word}"] = new_places(asked[size])
            calls[f"places old, {size} {jobs_word}"] = old_places(asked[size])
        for name, call in calls.items():
            figures = timed(call, rollback, args.repeat, args.budget)
            figures["rows_read"] = rows_read(call, rollback)
            if name.startswith("claim"):
                figures["result"] = call()
                figures["rows_locked"] = rows_locked()
                rollback()
                figures["first_and_second_claimer"] = second_claimer(app, call, call)
            else:
                figures["result"] = {str(k): v for k, v in sorted(call().items())}
                rollback()
            figures["explain"] = explain(recorder.capture(call))
            rollback()
            out[name] = figures
            print(f"  {scenario} {name}: p50 {figures['p50']} ms, p95 {figures['p95']} ms, "
                  f"rows read {figures['rows_read']}", file=sys.stderr, flush=True)
    return out


# --- the report ----------------------------------------------------------------------------------
SCENARIOS = {"a": "1 owner: all queued + running; 2nd owner: 1 queued (newest)",
             "b": "queued over many owners, some running", "c": "queued over 2 owners, none running"}


def label(statement):
    lower = statement.lower()
    if "sum(" in lower:
        return "queued per owner"
    if "group by" in lower:
        return "running counts"
    if "for update" in lower:
        return "head"
    return "count" if "count(" in lower else "read"


def index_summary(explained):
    """'what: key (type, rows≈N, Extra)' per statement and table EXPLAIN lists."""
    parts = []
    for statement, rows in explained:
        for r in rows:
            extra = r.get("Extra") or ""
            parts.append(f"{label(statement)}: {r.get('key') or 'none'} ({r.get('type')}, rows≈{r.get('rows')}"
                         f"{', ' + extra if extra else ''})")
    return "; ".join(parts)


def table(results):
    lines = ["| scenario | query | median ms | p95 ms | rows read | rows locked | index (EXPLAIN) |",
             "|---|---|---:|---:|---:|---:|---|"]
    for scenario, data in results.items():
        for name, f in data["figures"].items():
            locked = f.get("rows_locked", "–")
            lines.append(f"| {scenario} | {name} | {f['p50']:.2f} | {f['p95']:.2f} | {f['rows_read']:,} | "
                         f"{locked if isinstance(locked, str) else format(locked, ',')} | "
                         f"{index_summary(f['explain'])} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("CLAIM_BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--queued", type=int, default=100_000)
    parser.add_argument("--completed", type=int, default=100_000)
    parser.add_argument("--owners", type=int, default=10_000, help="owners of scenario b")
    parser.add_argument("--running", type=int, default=4, help="jobs running in scenarios a and b")
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--budget", type=float, default=10.0, help="seconds per measured call at most")
    parser.add_argument("--scenarios", default="a,b,c")
    parser.add_argument("--sizes", default="1,10", type=lambda text: [int(n) for n in text.split(",")],
                        help="how many queued jobs each places call asks about")
    parser.add_argument("--try-index", action="append", default=[], metavar="NAME:COL,COL",
                        help="a what-if: add this index after migrating (not the product's schema)")
    args = parser.parse_args(argv)

    url = args.database_url
    if not url.startswith("mysql"):
        sys.exit("this benchmark needs MariaDB/MySQL (FOR UPDATE SKIP LOCKED, EXPLAIN, INNODB_TRX)")
    server = Db(url)
    server.recreate()  # refuses a database whose name lacks "bench"
    version = server.version()
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench"})
    with app.app_context():
        upgrade()
        recorder = Recorder(db.engine)
        with db.engine.begin() as conn:
            for spec in args.try_index:
                name, columns = spec.split(":")
                conn.exec_driver_sql(f"CREATE INDEX {name} ON ai_generation_jobs ({columns})")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    machine = machine_info(f"MariaDB/MySQL {version}", None)
    print(f"claim-{stamp}: {machine_line(machine)}", file=sys.stderr, flush=True)

    results = {}
    for scenario in args.scenarios.split(","):
        began = time.monotonic()
        reset(app)
        made = fill(app, scenario, args)
        print(f"scenario {scenario}: {made} filled in {time.monotonic() - began:.1f} s", file=sys.stderr,
              flush=True)
        load_before = os.getloadavg()[0]
        figures = measure(app, scenario, args, recorder)
        results[scenario] = {"description": SCENARIOS[scenario], "rows": made, "figures": figures,
                             "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"claim-{stamp}.json"
    path.write_text(json.dumps({"run": f"claim-{stamp}", "args": vars(args), "machine": machine,
                                "results": results}, indent=2, default=str))
    print(f"\nRun claim-{stamp}: {machine_line(machine)}")
    if args.try_index:
        print(f"What-if indexes added (not in the product's migrations): {', '.join(args.try_index)}")
    print()
    for scenario, data in results.items():
        print(f"* {scenario}: {data['description']}: {data['rows']}; 1-min load average before/after "
              f"the measurements: {data['load_average_1min']}")
    print()
    print(table(results))
    print()
    for scenario, data in results.items():
        for name, f in data["figures"].items():
            extra = f" first/second claimer: {f['first_and_second_claimer']}" if "claim" in name else ""
            print(f"{scenario} | {name} | result {json.dumps(f['result'])[:200]}{extra}")
    print(f"\nJSON: {path}")
    with app.app_context():
        db.engine.dispose()


if __name__ == "__main__":
    main()
