"""Worker benchmark: one `python worker.py` streaming many generations from the simulator.

    .venv/bin/python bench/worker_bench.py [--database-url URL] [--jobs 64] [--concurrency 64]
                                           [--tps 50] [--tokens 500] [--interval 0.5] [--cancels 10]

It starts the simulated Ollama in this process, migrates a fresh database (a SQLite file in a
temporary directory by default; on MySQL/MariaDB it drops and recreates the livegen tables of the
database in the URL, whose name must contain "bench"), starts ONE worker subprocess configured by
environment only, enqueues the jobs, and samples the rows every few milliseconds while they run.

It reports
  * the worker's CPU time (user + sys from /proc/<pid>/stat) per 1,000 tokens, where tokens is
    the sum of eval_count of the simulator's final chunks;
  * progress writes per job per second during generation, and the smallest gap between two
    consecutive progress writes of one job (write times are the rows' `last_update_at`);
  * the delay from a token leaving the simulator (`sent_at`, after the flush) to its count being
    in the row (the `last_update_at` of the first write whose `current_tokens` covers it), p50/p95;
  * the simulator's achieved token rate per stream, so a reader can tell whether the load
    generator (which shares this process and the machine) kept up;
  * cancel latency, after the jobs above have ended: --cancels jobs one at a time, each cancelled
    as the API's cancel route does it (queue.request_cancel) at a random moment 0..--interval
    after its first tokens were written; the seconds from that call to the row reading
    "cancelled" (as a reader polling every --sample-ms sees it), and to the last token the
    simulator sent before it found the stream closed by the worker (that is, when generating
    stopped; the close itself came at most a token or two, 1/--tps each, earlier).

A table goes to stdout and the same figures, as JSON, to bench/results/worker-<timestamp>.json.
The run is bounded (--timeout) and the worker is killed on any exit.
"""
import argparse
import bisect
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from flask_migrate import upgrade  # noqa: E402

from bench.benchlib import machine_cpu, pct, pids_named, proc_cpu, stop_process  # noqa: E402
from simulator import Simulator  # noqa: E402
from webapp import create_app, queue  # noqa: E402
from webapp.extensions import db  # noqa: E402
from webapp.models import Job  # noqa: E402
from webapp.progress import estimate_tokens  # noqa: E402

RESULTS = ROOT / "bench" / "results"
MODEL = "llama3.2"
ENDED = ("completed", "failed", "cancelled")
CLOCK_SLACK = 0.002  # last_update_at is truncated to ms: a difference of two stamps is off by < 1 ms


# --- small helpers -------------------------------------------------------------------------------
def epoch(stamp):
    """A naive-UTC datetime from the database as time.time() seconds."""
    return stamp.replace(tzinfo=UTC).timestamp()


def database_server_pid(url):
    """The local mariadbd/mysqld process for a MySQL URL on this machine, else None."""
    if sa.engine.make_url(url).drivername.startswith("sqlite"):
        return None
    return (pids_named("mariadbd", "mysqld") or [None])[0]


def dist(values, digits=4):
    """{n, min, p50, p95, max, mean} of a list (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    return {"n": len(values), "min": round(min(values), digits), "p50": round(pct(ordered, 50), digits),
            "p95": round(pct(ordered, 95), digits), "max": round(max(values), digits),
            "mean": round(sum(values) / len(values), digits)}


def git_describe():
    """HEAD and whether the tree differs from it (read-only git), so a result names its code."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + (" (with uncommitted changes)" if dirty else "") if head else None


def redact(url):
    return sa.engine.make_url(url).render_as_string(hide_password=True)


# --- the pieces of a run -------------------------------------------------------------------------
def prepare_database(url, force):
    """Fresh tables: drop livegen's tables (MySQL/MariaDB) and run the real migrations."""
    parsed = sa.engine.make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        if "bench" not in (parsed.database or "") and not force:
            sys.exit(f"refusing to drop tables in database {parsed.database!r}: its name does not "
                     "contain 'bench' (pass --force to do it anyway)")
        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("DROP TABLE IF EXISTS ai_rate_windows, ai_generation_output, "
                                     "ai_generation_jobs, alembic_version"))
        finally:
            engine.dispose()
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench"})
    with app.app_context():
        upgrade()
    return app


class WorkerProcess:
    """One `python worker.py`, configured by environment only, output to a log file."""

    def __init__(self, log_path, env):
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=env,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)  # Ctrl-C in a terminal reaches us only

    @property
    def pid(self):
        return self.proc.pid

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "jobs at once" in self.log():  # "worker <id>: up to N jobs at once"
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.02)
        raise RuntimeError(f"worker not ready in {timeout} s:\n{self.log()}")

    def stop(self, grace=10.0):
        """SIGTERM, then SIGKILL after `grace` seconds."""
        stop_process(self.proc, grace)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def worker_env(args, url, ollama_url):
    env = {key: value for key, value in os.environ.items()
           if key not in ("OLLAMA_HOST", "LIVEGEN_SIMULATOR", "DATABASE_URL")}
    env.update({"DATABASE_URL": url, "OLLAMA_URL": ollama_url,
                "WORKER_CONCURRENCY": str(args.concurrency), "PROGRESS_INTERVAL": str(args.interval),
                "SECRET_KEY": "bench", "LEASE_SECONDS": "30", "SHUTDOWN_GRACE": "5", "MAX_ATTEMPTS": "3",
                "OLLAMA_READ_TIMEOUT": "60", "PYTHONUNBUFFERED": "1"})
    return env


def enqueue(app, args):
    """All jobs in one transaction; returns {prompt: job pk}."""
    with app.app_context():
        rows = [Job(prompt=f"Benchmark job {i}: why is the sky blue? Answer at length.", model=MODEL,
                    options={"num_predict": args.tokens}, status="queued") for i in range(args.jobs)]
        db.session.add_all(rows)
        db.session.commit()
        by_prompt = {row.prompt: row.id for row in rows}
        db.session.remove()
    return by_prompt


def sample(app, worker, pks, args, deadline):
    """Poll the processing rows until every job has ended; returns observations and CPU samples.

    observations[pk][version] = (current_tokens, last_update_at as epoch, seen_at, phase), the
    first time that version was seen."""
    table = Job.__table__
    live = sa.select(table.c.id, table.c.version, table.c.current_tokens, table.c.last_update_at,
                     table.c.phase).where(table.c.status == "processing")
    left = sa.select(sa.func.count()).select_from(table).where(
        table.c.id.in_(pks), table.c.status.not_in(ENDED))
    observations = defaultdict(dict)
    cpu_samples, poll_times = [], []
    period = args.sample_ms / 1000
    timed_out = False
    with app.app_context(), db.engine.connect() as conn:
        n = 0
        while True:
            started = time.time()
            rows = conn.execute(live).all()
            seen = time.time()
            for pk, version, tokens, stamp, phase in rows:
                observations[pk].setdefault(version, (tokens, epoch(stamp), seen, phase))
            poll_times.append((started, seen))
            if n % 10 == 0:
                cpu_samples.append((time.time(), proc_cpu(worker.pid)))
                remaining = conn.execute(left).scalar_one()
                if remaining == 0:
                    conn.rollback()
                    break
            conn.rollback()  # end the read: the next poll sees the latest commits (SQLite snapshot)
            n += 1
            if worker.proc.poll() is not None:
                raise RuntimeError(f"worker exited early with {worker.proc.returncode}:\n{worker.log()}")
            if time.monotonic() > deadline:
                timed_out = True
                break
            time.sleep(max(0.0, period - (time.time() - started)))
    cpu_samples.append((time.time(), proc_cpu(worker.pid)))
    return observations, cpu_samples, poll_times, timed_out


def measure_cancels(app, sim, args):
    """Cancel --cancels running jobs, one after another (see the module's docstring); returns
    (seconds to the row reading cancelled, seconds to the last token sent, problems)."""
    table = Job.__table__
    period = args.sample_ms / 1000
    to_row, asked_at, problems = [], {}, []
    with app.app_context(), db.engine.connect() as conn:
        def poll(pk, predicate, timeout):
            """The row's (status, current_tokens) once `predicate` holds, read every --sample-ms."""
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                state = conn.execute(sa.select(table.c.status, table.c.current_tokens).where(table.c.id == pk)).one()
                conn.rollback()  # the next read sees the latest commit
                if predicate(state):
                    return state
                time.sleep(period)
            return None

        for n in range(args.cancels):
            prompt = f"Cancel benchmark {n}: tell a long story."
            job = queue.enqueue(prompt=prompt, model=MODEL, options={"num_predict": 1_000_000})
            if poll(job.id, lambda state: state.status == "processing" and state.current_tokens > 0, 30) is None:
                problems.append(f"cancel {n}: the job never streamed")
                continue
            time.sleep(random.uniform(0, args.interval))  # anywhere in the worker's progress cycle
            asked, asked_at[prompt] = time.monotonic(), time.time()
            answer = queue.request_cancel(job)
            ended = poll(job.id, lambda state: state.status != "processing", 30)
            if answer != "requested" or ended is None or ended.status != "cancelled":
                problems.append(f"cancel {n}: request_cancel said {answer!r}, the row then read "
                                f"{ended and ended.status!r}")
                continue
            to_row.append(time.monotonic() - asked)
        db.session.remove()
    if not asked_at:
        return to_row, [], problems
    # Afterwards, so copying the simulator's records costs nothing inside a measurement.
    try:
        records = sim.wait_for(lambda rs: sum(r.client_closed for r in rs if (r.body or {}).get("prompt") in asked_at)
                               == len(asked_at), 10)
    except TimeoutError:
        problems.append("the worker did not close every cancelled job's stream")
        records = sim.requests
    to_last = [r.sent_at[-1] - asked_at[r.body["prompt"]] for r in records
               if (r.body or {}).get("prompt") in asked_at and r.client_closed and r.sent_at]
    return to_row, to_last, problems


def final_rows(app, pks):
    table = Job.__table__
    with app.app_context():
        rows = db.session.execute(sa.select(
            table.c.id, table.c.prompt, table.c.status, table.c.attempts, table.c.version,
            table.c.current_tokens, table.c.completion_tokens, table.c.last_update_at,
            table.c.started_at, table.c.completed_at, table.c.error_message).where(table.c.id.in_(pks))).all()
        db.session.remove()
    return {row.id: row for row in rows}


# --- analysis ------------------------------------------------------------------------------------
def analyse_job(row, record, observed, interval):
    """Figures of one job from its final row, its simulator record and the sampled writes."""
    counts = [estimate_tokens(chunk.get("response") or "") + estimate_tokens(chunk.get("thinking") or "")
              for chunk in record.chunks]
    cum, total = [], 0
    for count in counts:
        total += count
        cum.append(total)
    sent = record.sent_at
    carrying = [j for j, count in enumerate(counts) if count]
    if not carrying:
        return None  # no text at all: nothing to time
    first_sent, done_sent = sent[carrying[0]], sent[-1]
    chunk_of = lambda token: bisect.bisect_left(cum, token)  # noqa: E731  chunk carrying token #n

    # Versions: 1 = insert, 2 = claim (first attempt), 3 .. final-1 = progress, final = finish.
    final_version = row.version
    progress = sorted((v, *observed[v]) for v in observed if 3 <= v < final_version)
    expected_progress = final_version - 3
    token_writes = [w for w in progress if w[1] > 0]

    # Writes per second while generating: progress writes stamped between the first token and
    # the done chunk; version numbers count writes the sampler did not see as well.
    inside = [w for w in progress if first_sent <= w[2] <= done_sent]
    gen_seconds = done_sent - first_sent
    gen_writes = inside[-1][0] - inside[0][0] + 1 if inside else 0

    gaps, gaps_after_first_token, first_token_gap = [], [], None
    first_token_version = token_writes[0][0] if token_writes else None
    for (v1, _, s1, _, _), (v2, _, s2, _, _) in zip(progress, progress[1:], strict=False):
        if v2 != v1 + 1:
            continue  # a write in between was not seen: the gap is not known exactly
        gaps.append(s2 - s1)
        if v2 == first_token_version:
            first_token_gap = s2 - s1
        else:
            gaps_after_first_token.append(s2 - s1)
    final_stamp = epoch(row.last_update_at)
    final_gap = final_stamp - progress[-1][2] if progress and progress[-1][0] == final_version - 1 else None
    # The claim (version 2) is a write to the row too; its stamp is the one the sampler saw, else
    # started_at (set by the same UPDATE).
    claim_stamp = observed[2][1] if 2 in observed else epoch(row.started_at)
    claim_gap = progress[0][2] - claim_stamp if progress and progress[0][0] == 3 else None

    # Token -> row delay. Each write k with count n_k at W_k lands tokens (n_{k-1}, n_k]; the
    # finish write (not sampled: the row is no longer processing) lands whatever is left.
    delays, seen_delays, freshness = [], [], []
    landed = 0
    for _, tokens, stamp, seen, _ in token_writes + [(final_version, total, final_stamp, None, None)]:
        tokens = min(tokens, total)
        if tokens <= landed:
            continue
        for token in range(landed + 1, tokens + 1):
            delays.append(stamp - sent[chunk_of(token)])
            if seen is not None:
                seen_delays.append(seen - sent[chunk_of(token)])
        if seen is not None:
            freshness.append(stamp - sent[chunk_of(tokens)])  # age of the newest token counted
        landed = tokens
    first_token_lag = token_writes[0][2] - first_sent if token_writes else None

    streamed = [sent[j] for j in carrying]
    max_live = max((w[1] for w in progress), default=0)
    return {
        "id": row.id, "status": row.status, "attempts": row.attempts,
        "eval_count": (record.final or {}).get("eval_count", 0), "estimated_tokens": total,
        "gen_seconds": gen_seconds, "gen_writes": gen_writes,
        "writes_per_second": gen_writes / gen_seconds if gen_seconds > 0 else None,
        "progress_writes": expected_progress, "progress_writes_seen": len(progress),
        "gaps": gaps, "gaps_after_first_token": gaps_after_first_token,
        "first_token_gap": first_token_gap, "final_gap": final_gap, "claim_gap": claim_gap,
        "delays": delays, "seen_delays": seen_delays, "freshness": freshness,
        "first_token_lag": first_token_lag,
        "stamp_to_seen": [seen - stamp for _, _, stamp, seen, _ in progress],
        "sim_rate": (len(streamed) - 1) / (streamed[-1] - streamed[0]) if len(streamed) > 1 else None,
        "sim_eval_rate": ((record.final or {}).get("eval_count", 0)
                          / ((record.final or {}).get("eval_duration") or 1) * 1e9),
        "started_at": epoch(row.started_at), "first_token_sent": first_sent, "done_sent": done_sent,
        "writes": [(v, tokens, stamp, seen) for v, tokens, stamp, seen, _ in progress],
        "final_write": (final_version, row.current_tokens, final_stamp),
        "live_count_above_final": max_live - row.current_tokens,
        "short_gaps": sum(1 for g in gaps_after_first_token if g < interval - CLOCK_SLACK),
    }


def analyse(args, by_prompt, rows, records, observations, cpu_samples, poll_times, cpu_window, t0, wall):
    pk_prompt = {pk: prompt for prompt, pk in by_prompt.items()}
    latest = {}
    for record in records:
        prompt = (record.body or {}).get("prompt")
        if prompt in by_prompt and record.final is not None:
            latest[by_prompt[prompt]] = record  # a retried job: its last (finished) request counts
    problems = []
    per_job = []
    for pk in sorted(pk_prompt):
        row = rows.get(pk)
        if row is None or row.status != "completed" or row.attempts != 1 or pk not in latest:
            problems.append(f"job {pk}: status {row and row.status}, attempts {row and row.attempts}, "
                            f"finished request {'yes' if pk in latest else 'no'}"
                            + (f", error: {row.error_message}" if row is not None and row.error_message else ""))
            continue
        figures = analyse_job(row, latest[pk], observations.get(pk, {}), args.interval)
        if figures is None:
            problems.append(f"job {pk}: the simulator sent no text")
        else:
            per_job.append(figures)

    tokens = sum((record.final or {}).get("eval_count", 0) for record in latest.values())
    cpu = cpu_window[1] - cpu_window[0]
    peak, j = 0.0, 0  # busiest ~1 s window (CPU ticks are 10 ms, so shorter ones are noise)
    for at0, c0 in cpu_samples:
        while j < len(cpu_samples) and cpu_samples[j][0] - at0 < 1.0:
            j += 1
        if j < len(cpu_samples):
            at1, c1 = cpu_samples[j]
            peak = max(peak, (c1 - c0) / (at1 - at0))
    polls = [b - a for (a, _), (b, _) in zip(poll_times, poll_times[1:], strict=False)]
    flat = lambda key: [x for job in per_job for x in job[key]]  # noqa: E731
    one = lambda key: [job[key] for job in per_job if job[key] is not None]  # noqa: E731
    rates = one("writes_per_second")
    gaps_all, gaps_steady = flat("gaps"), flat("gaps_after_first_token")
    total_writes = sum(row.version - 1 for row in rows.values())

    def timeline(job):
        """One job's writes as seconds since the enqueue, for reading a run afterwards."""
        at = lambda x: None if x is None else round(x - t0, 4)  # noqa: E731
        return {"id": job["id"], "claimed": at(job["started_at"]), "first_token_sent": at(job["first_token_sent"]),
                "done_sent": at(job["done_sent"]),
                "writes_version_tokens_stamp_seen": [[v, n, at(stamp), at(seen)]
                                                     for v, n, stamp, seen in job["writes"]],
                "finish_version_tokens_stamp": [job["final_write"][0], job["final_write"][1],
                                                at(job["final_write"][2])]}

    return {
        "per_job": [timeline(job) for job in per_job],
        "jobs_completed": len(per_job), "problems": problems,
        "total_tokens": tokens,
        "wall_seconds": round(wall, 3),
        "worker_cpu_seconds": round(cpu, 3),
        "worker_cpu_per_1000_tokens": round(cpu / tokens * 1000, 4) if tokens else None,
        "worker_cpu_utilisation_mean": round(cpu / wall, 3) if wall else None,
        "worker_cpu_utilisation_peak_1s": round(peak, 3),
        "writes_per_job_per_second": dist(rates, 3),
        "worker_writes_total": total_writes,
        "worker_writes_per_second": round(total_writes / wall, 1) if wall else None,
        "progress_writes_per_job": dist([job["progress_writes"] for job in per_job], 1),
        "progress_writes_missed_by_sampler": sum(j["progress_writes"] - j["progress_writes_seen"]
                                                 for j in per_job),
        "min_gap_all_progress_writes": round(min(gaps_all), 4) if gaps_all else None,
        "min_gap_excluding_first_token_write": round(min(gaps_steady), 4) if gaps_steady else None,
        "gaps_below_interval_excluding_first_token_write": sum(j["short_gaps"] for j in per_job),
        "gap_claim_to_first_progress_write": dist(one("claim_gap"), 4),
        "gap_tick_to_first_token_write": dist(one("first_token_gap"), 4),
        "gap_last_progress_to_finish_write": dist(one("final_gap"), 4),
        "gap_between_progress_writes": dist(gaps_steady, 4),
        "token_to_row_delay": dist(flat("delays"), 4),
        "token_to_visible_delay": dist(flat("seen_delays"), 4),
        "newest_token_age_at_write": dist(flat("freshness"), 4),
        "first_token_write_lag": dist(one("first_token_lag"), 4),
        "write_stamp_to_seen_by_reader": dist(flat("stamp_to_seen"), 4),
        "simulator_tokens_per_second_per_stream": dist(one("sim_rate"), 2),
        "simulator_eval_rate_per_stream": dist(one("sim_eval_rate"), 2),
        "generation_seconds_per_job": dist(one("gen_seconds"), 3),
        "enqueue_to_last_claim": round(max(one("started_at")) - t0, 3) if per_job else None,
        "enqueue_to_first_token": dist([x - t0 for x in one("first_token_sent")], 3),
        "jobs_whose_live_count_exceeded_the_final_count": sum(1 for j in per_job
                                                              if j["live_count_above_final"] > 0),
        "max_live_count_above_final": max(one("live_count_above_final"), default=None),
        "sampler_poll_period": dist(polls, 4),
    }


def _with_n(fmt, d):
    return f"{fmt(d, 1000, ' ms', 0)} ({d['n']})" if d else "n/a"


def print_table(meta, s):
    def fmt(d, scale=1.0, unit="", digits=3):
        if not d:
            return "n/a"
        return " / ".join(f"{d[k] * scale:.{digits}f}" for k in ("p50", "p95", "max")) + unit

    wps = s["writes_per_job_per_second"] or {}
    lines = [
        ("database", meta["database"]),
        ("jobs x tokens, concurrency, tps, interval",
         f"{meta['jobs']} x {meta['tokens_per_job']}, {meta['concurrency']}, {meta['tps']}, {meta['interval']} s"),
        ("jobs completed", f"{s['jobs_completed']} / {meta['jobs']}"),
        ("tokens (sum of eval_count)", s["total_tokens"]),
        ("wall time (enqueue -> all ended)", f"{s['wall_seconds']:.2f} s"),
        ("enqueue -> last claim; -> first token p50/p95/max",
         f"{s['enqueue_to_last_claim']} s; {fmt(s['enqueue_to_first_token'], 1, ' s', 2)}"),
        ("worker CPU", f"{s['worker_cpu_seconds']:.2f} s (mean {s['worker_cpu_utilisation_mean']:.0%}, "
                       f"peak {s['worker_cpu_utilisation_peak_1s']:.0%} of one core)"),
        ("bench process (simulator + sampler) CPU",
         f"{s['bench_process_cpu_seconds']:.2f} s ({s['bench_process_cpu_utilisation']:.0%} of one core)"),
        ("whole machine busy", f"{s['machine_cpu_busy']:.0%} of {meta['nproc']} cores"),
        ("  of which database server / others (cores)",
         f"{s['database_server_cpu_utilisation']} / {s['other_processes_cpu_utilisation']} "
         f"(before the run, others: {s['background_cpu_before_start']})"),
        ("worker CPU per 1,000 tokens", f"{s['worker_cpu_per_1000_tokens']:.3f} s"),
        ("progress writes / job / s (mean, max)",
         f"{wps.get('mean', float('nan')):.2f}, {wps.get('max', float('nan')):.2f}"),
        ("all writes of the worker / s", s["worker_writes_per_second"]),
        ("min gap between progress writes (all)", f"{s['min_gap_all_progress_writes']} s"),
        ("min gap, excluding the first-token write", f"{s['min_gap_excluding_first_token_write']} s"),
        ("gaps < interval - 2 ms (excl. first-token write)",
         s["gaps_below_interval_excluding_first_token_write"]),
        ("claim -> first progress write p50/p95/max", fmt(s["gap_claim_to_first_progress_write"], 1000, " ms", 0)),
        ("tick -> first-token write (n) min",
         "none" if not s["gap_tick_to_first_token_write"] else
         f"({s['gap_tick_to_first_token_write']['n']}) {s['gap_tick_to_first_token_write']['min'] * 1000:.0f} ms"),
        ("last progress -> finish write min/p50",
         "n/a" if not s["gap_last_progress_to_finish_write"] else
         f"{s['gap_last_progress_to_finish_write']['min'] * 1000:.0f} / "
         f"{s['gap_last_progress_to_finish_write']['p50'] * 1000:.0f} ms"),
        ("progress writes missed by the sampler", s["progress_writes_missed_by_sampler"]),
        ("token -> row delay p50/p95/max", fmt(s["token_to_row_delay"], 1000, " ms", 0)),
        ("token -> seen by a reader p50/p95/max", fmt(s["token_to_visible_delay"], 1000, " ms", 0)),
        ("newest token's age at a write p50/p95/max", fmt(s["newest_token_age_at_write"], 1000, " ms", 0)),
        ("write stamp -> seen by a reader p50/p95/max",
         fmt(s["write_stamp_to_seen_by_reader"], 1000, " ms", 0)),
        ("first token -> its write p50/p95/max", fmt(s["first_token_write_lag"], 1000, " ms", 0)),
        ("simulator tok/s per stream p50/min",
         "n/a" if not s["simulator_tokens_per_second_per_stream"] else
         f"{s['simulator_tokens_per_second_per_stream']['p50']:.1f} / "
         f"{s['simulator_tokens_per_second_per_stream']['min']:.1f} (target {meta['tps']})"),
        ("sampler poll period p50/p95/max", fmt(s["sampler_poll_period"], 1000, " ms", 0)),
        ("jobs whose live count > final eval_count",
         f"{s['jobs_whose_live_count_exceeded_the_final_count']} (by up to {s['max_live_count_above_final']})"),
        ("cancel -> row cancelled p50/p95/max (n)", _with_n(fmt, s.get("cancel_to_row_cancelled"))),
        ("cancel -> last token sent p50/p95/max (n)", _with_n(fmt, s.get("cancel_to_last_token_sent"))),
    ]
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        print(f"  {name:<{width}}  {value}")
    for problem in s["problems"]:
        print("  PROBLEM:", problem)


# --- main ----------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temporary directory")
    parser.add_argument("--jobs", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--tps", type=float, default=50.0, help="simulator tokens per second per stream")
    parser.add_argument("--tokens", type=int, default=500, help="options.num_predict of every job")
    parser.add_argument("--interval", type=float, default=0.5, help="the worker's PROGRESS_INTERVAL")
    parser.add_argument("--sample-ms", type=float, default=20.0, help="row polling period")
    parser.add_argument("--load-delay", type=float, default=0.05, help="simulator cold-load seconds")
    parser.add_argument("--timeout", type=float, help="give up after this many seconds "
                        "(default: 60 + 3x the ideal generation time)")
    parser.add_argument("--force", action="store_true",
                        help="allow dropping the tables of a database whose name lacks 'bench'")
    parser.add_argument("--cancels", type=int, default=10,
                        help="then cancel this many running jobs, one at a time, for the cancel latency (0: none)")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/*.json")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    waves = math.ceil(args.jobs / args.concurrency)
    timeout = args.timeout or 60 + 3 * waves * args.tokens / args.tps
    commit = git_describe()  # now: other people may commit while this runs
    tmpdir = tempfile.mkdtemp(prefix="livegen-bench-")
    url = args.database_url or f"sqlite:///{tmpdir}/bench.sqlite3"
    if url.startswith("mysql://"):
        url = "mysql+pymysql://" + url[len("mysql://"):]
    # SIGTERM ends us through the finally blocks too (the worker must not outlive the bench).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    worker = sim = None
    try:
        app = prepare_database(url, args.force)
        sim = Simulator(tokens_per_second=args.tps, load_delay=args.load_delay).start()
        worker = WorkerProcess(Path(tmpdir) / "worker.log", worker_env(args, url, sim.url))
        worker.wait_ready(30)
        # One quiet second (past the worker's first, empty claim): how busy is the machine
        # without us? Other processes on the same cores skew every figure below.
        before = machine_cpu()
        time.sleep(1.0)
        after = machine_cpu()
        background = (after[0] - before[0]) / max(1, after[1] - before[1]) * (os.cpu_count() or 1)
        db_pid = database_server_pid(url)
        db0 = proc_cpu(db_pid)
        deadline = time.monotonic() + timeout
        machine0, own0 = machine_cpu(), proc_cpu(os.getpid())
        cpu0, t0 = proc_cpu(worker.pid), time.time()
        clock0 = t0 - time.monotonic()
        by_prompt = enqueue(app, args)
        observations, cpu_samples, polls, timed_out = sample(app, worker, list(by_prompt.values()),
                                                             args, deadline)
        cpu1, t1 = proc_cpu(worker.pid), time.time()
        machine1, own1, db1 = machine_cpu(), proc_cpu(os.getpid()), proc_cpu(db_pid)
        to_row, to_last, cancel_problems = measure_cancels(app, sim, args)
        worker.stop()
        log = worker.log()
        rows = final_rows(app, list(by_prompt.values()))
        records = sim.requests
        summary = analyse(args, by_prompt, rows, records, observations, cpu_samples, polls,
                          (cpu0, cpu1), t0, t1 - t0)
        busy, total = machine1[0] - machine0[0], machine1[1] - machine0[1]
        summary["machine_cpu_busy"] = round(busy / total, 3) if total else None  # share of all cores
        summary["bench_process_cpu_seconds"] = round(own1 - own0, 3)  # simulator + sampler
        summary["bench_process_cpu_utilisation"] = round((own1 - own0) / (t1 - t0), 3)
        summary["database_server_cpu_utilisation"] = round((db1 - db0) / (t1 - t0), 3) if db_pid else None
        cores = os.cpu_count() or 1
        summary["other_processes_cpu_utilisation"] = round(
            busy / total * cores - (cpu1 - cpu0 + own1 - own0 + db1 - db0) / (t1 - t0), 3) if total else None
        summary["background_cpu_before_start"] = round(background, 3)
        summary["cancel_to_row_cancelled"] = dist(to_row, 4)
        summary["cancel_to_last_token_sent"] = dist(to_last, 4)
        summary["problems"].extend(cancel_problems)
        if background > 0.2:
            summary["problems"].append(f"the machine was busy before the run ({background:.0%} of a "
                                       "core): other processes skew these figures")
        step = (time.time() - time.monotonic()) - clock0
        summary["wall_clock_step_seconds"] = round(step, 4)
        if abs(step) > 0.005:  # sent_at and last_update_at are wall-clock times
            summary["problems"].insert(0, f"the wall clock stepped by {step:.3f} s during the run")
        if timed_out:
            summary["problems"].insert(0, f"timed out after {timeout:.0f} s")
        summary["worker_log_warnings"] = [line for line in log.splitlines()
                                          if " WARNING " in line or " ERROR " in line][:20]
        meta = {"benchmark": "worker", "started_at": datetime.fromtimestamp(t0, UTC).isoformat(),
                "database": redact(url).split("?")[0] if not url.startswith("sqlite") else "sqlite (temp file)",
                "jobs": args.jobs, "concurrency": args.concurrency, "tps": args.tps, "tokens_per_job": args.tokens,
                "interval": args.interval, "sample_ms": args.sample_ms, "load_delay": args.load_delay,
                "cancels": args.cancels,
                "jitter": sim.jitter, "nproc": os.cpu_count(), "python": sys.version.split()[0],
                "commit": commit}
        print_table(meta, summary)
        for line in summary["worker_log_warnings"][:5]:
            print("  worker log:", line)
        if not args.no_save:
            RESULTS.mkdir(parents=True, exist_ok=True)
            path = RESULTS / f"worker-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
            figures = {key: value for key, value in summary.items() if key != "per_job"}
            path.write_text(json.dumps({**meta, **figures, "per_job": summary["per_job"]}, indent=1) + "\n")
            print(f"  results: {path.relative_to(ROOT)}")
        return 1 if summary["problems"] else 0
    finally:
        if worker is not None:
            worker.kill()
        if sim is not None:
            sim.stop()
        shutil.rmtree(tmpdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
