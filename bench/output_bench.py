"""Live output benchmark: what streaming the generated text (`?include=output`) costs the database,
the web process and the reader, with 1,000 SSE clients on 50 jobs.

    .venv/bin/python bench/output_bench.py              # about 3 minutes (hard limit --timeout 480 s)
    .venv/bin/python bench/output_bench.py --quick      # about 1 minute: 10 jobs, 200 watchers, 1,300 tokens
    .venv/bin/python bench/output_bench.py --wait-quiet 300   # first wait (up to 5 min) for idle cores

It needs the MariaDB server of --database-url (default mysql+pymysql://root@127.0.0.1:3306/
livegen_outputbench; the URL's user must be able to create users and set globals; the database
name must contain "outputbench": it is dropped and created again, then migrated with
`flask --app wsgi db upgrade`). It creates the MariaDB users lg_web, lg_web1 and lg_worker
@127.0.0.1 (all privileges on that database only), turns `userstat` on, and on exit drops the
users and sets `userstat` back as it was.

What it starts, all on 127.0.0.1, each configured by environment only:
  * the simulated Ollama, `simulator.Simulator` at --tps 40 (jitter 0.25, load delay 0, lengths
    "fixed", no speed spread: every job runs exactly its num_predict at one pace), in its own
    process through bench/output_counters.py, which logs when each chunk's write returned and how
    long the text sent so far is (code points), and holds each job's generation until all 50 have
    asked (as behind one model load), so the jobs start together however long the claims take;
  * a `python worker.py` that runs 3 short jobs to the end first (--warm-up: the model then has a
    history, as on any server that has run a job; without one the web process reads it again
    every half second for its estimates), then one `python worker.py` (WORKER_CONCURRENCY=50,
    PROGRESS_INTERVAL=0.5) as MariaDB user lg_worker, started once the 50 jobs
    (options.num_predict=4200) are queued and the streams are open;
  * two web processes, each the product's gunicorn.conf.py (gevent, WEB_CONCURRENCY=1,
    SSE_POLL_INTERVAL=0.2) serving `bench.output_counters:web_app()` (`wsgi:app` plus counters of
    its SELECTs and its watcher's ticks at `/sse-bench/stats`; `--app wsgi:app` runs the product
    untouched, ticks are then taken as seconds / interval): "N" (user lg_web) with 1,000 streams,
    client k on job k mod 50, and "1" (user lg_web1) with one stream, on job 0. Both run through
    the same tokens at the same time, so the 1-watcher and 1,000-watcher figures are side by side,
    and no stream is closed and opened again (1,000 streams reconnecting mid-text at once would
    be a different test, and would own the delay figures).

This process (gevent, one greenlet per client, a raw-socket HTTP/1.1 client parsing chunked
text/event-stream) opens GET /api/v1/ai/generation/<id>/progress?include=output streams and runs
one timeline, T being the first token (token n at about T + n / 40 s):
  window "early": T+0.5 to T+4.5 s, around the 100th token;
  window "main1": T+5 to T+51 s; then 50 more streams join the N process mid-text (their first
  output event brings the text so far: "output (catch-up)"); window "main2": T+54 to T+97 s;
  window "late": T+98 to T+102 s, around the 4,000th token. The jobs end (4,200 tokens); every
  stream gets `complete`; `/status` gives each job's result. Each window's token range (the
  median job's) is read afterwards from the send log.

Measured per window, for each web process:
  (a) database reads/s: SELECT_COMMANDS of MariaDB's information_schema.USER_STATISTICS for its
      user (exact, per process: the worker's and this process's own queries, as root, are
      apart), read at the start and the end of the window; also ROWS_READ, and the process's own
      SELECT count by statement shape (bench/output_counters.py). Target: N (1,000 watchers)
      within 1.5x of 1 in main1 and main2;
  (b) bytes per tick: BYTES_SENT by the server to the web user (= bytes that process read)
      divided by its watcher's ticks in the window, and BYTES_RECEIVED from lg_worker (= bytes
      the worker wrote) divided by its progress writes (the jobs' `version` sum moves by one per
      write), in "early" and "late" with the 1,000 streams. Target: late within 1.2x of early;
  (c) delay from a token leaving the simulator to a client: for every token (its text's end
      offset, and when the simulator's write of it returned, time.time()) and every client that
      was streaming by then, the receive time (time.time()) of the first `output` event whose
      offset + len(text) reaches that end offset, minus the send time; p50/p99/max over all tokens
      at all watchers (1 ms histogram, every token counted), per window (by send time), and split
      at the worker's write of the piece holding the token (ai_generation_output.created_at, read
      before the jobs end). Target p99 <= 1 s;
  (d) CPU per delivered output event: the N process's gunicorn worker's user+system CPU
      (/proc/<pid>/stat) over the window divided by the output events its clients received in
      it; and the CPU of the other web process, the livegen worker, the simulator, mariadbd, this
      process and the rest of the machine (from /proc/stat), in % of one core, to tell when the
      2 cores ran out.
Also: the mean size of a `progress` and an `output` event (id + event + data lines + the blank
line), and correctness: each stream's text assembled from its output events (offsets applied, a
`reset` starts over) must equal its job's final `result`; mismatches must be 0.

A table goes to stdout; the figures, as JSON, to bench/results/output-<timestamp>.json, the
processes' logs and the send log to bench/results/output-<timestamp>-logs/. Every phase is
bounded in time, the whole run by --timeout (a watchdog stops everything); every process started
here is stopped on any exit, and dies with this one (PR_SET_PDEATHSIG).
"""
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import calendar  # noqa: E402
import contextlib  # noqa: E402
import heapq  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from bisect import bisect_left, bisect_right  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import urlunsplit  # noqa: E402

import gevent  # noqa: E402
import gevent.lock  # noqa: E402
import pymysql  # noqa: E402
import requests  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import benchlib, sse_client  # noqa: E402 - after monkey.patch_all(): sse_client is gevent's side
from bench.benchlib import NCPU, cpu_pct, fmt, machine_cpu, proc_cpu  # noqa: E402
from bench.output_counters import read_send_log  # noqa: E402 - pure helpers, no web or simulator imports
from bench.sse_client import CONNECTING, ENDED, STREAMING, start_watchdog  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DEFAULT_DB = "mysql+pymysql://root@127.0.0.1:3306/livegen_outputbench"
DEFAULT_APP = "bench.output_counters:web_app()"
USERS = {"web": "lg_web", "web1": "lg_web1", "worker": "lg_worker"}
WEB_ROLES = ("web", "web1")  # the web process with the watchers, and the one with a single stream
STAT_COLUMNS = ("SELECT_COMMANDS", "UPDATE_COMMANDS", "OTHER_COMMANDS", "ROWS_READ", "ROWS_SENT", "ROWS_INSERTED",
                "ROWS_UPDATED", "BYTES_SENT", "BYTES_RECEIVED", "COMMIT_TRANSACTIONS", "ROLLBACK_TRANSACTIONS",
                "TOTAL_CONNECTIONS", "BUSY_TIME", "CPU_TIME")
PATH = "/api/v1/ai/generation/{}/progress?include=output"


# --- small helpers -------------------------------------------------------------------------------
def hist_add(hist, seconds):
    ms = int(seconds * 1000)
    hist[ms] = hist.get(ms, 0) + 1


def hist_dist(hist):
    """p50/p99/max (ms, 1 ms buckets: a value v counts in the bucket floor(v))."""
    n = sum(hist.values())
    if not n:
        return None
    keys = sorted(hist)
    marks = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p999": 0.999}
    out, seen, want = {"n": n}, 0, sorted(marks.items(), key=lambda item: item[1])
    for key in keys:
        seen += hist[key]
        while want and seen >= want[0][1] * n:
            out[want.pop(0)[0]] = key
    out["max"] = keys[-1]
    out["min"] = keys[0]
    out["mean"] = round(sum(k * v for k, v in hist.items()) / n + 0.5, 1)
    return out


# --- processes -----------------------------------------------------------------------------------
class Proc(benchlib.Proc):
    """benchlib.Proc without OLLAMA_URL, with the checkout on PYTHONPATH (its simulator is bench.output_counters)."""

    drop_env = (*benchlib.Proc.drop_env, "OLLAMA_URL")

    def __init__(self, name, args, env, log_dir, parent_death=signal.SIGKILL):
        super().__init__(name, args, {"PYTHONPATH": benchlib.pythonpath(), **env}, log_dir, parent_death)


class Web(sse_client.Web):
    """One gunicorn master (WEB_CONCURRENCY=1) serving `app`; `worker_pid` is its one worker."""

    proc_class = Proc
    up_path = "/static/does-not-exist"

    def __init__(self, args, database_url, log_dir, name):
        super().__init__(name, args.app, {"DATABASE_URL": database_url, "SECRET_KEY": "output-bench",
                                          "SSE_POLL_INTERVAL": str(args.poll_interval)}, log_dir)

    def stats(self):
        """The process's own counters (bench/output_counters.py), or None (plain wsgi:app)."""
        if self.app != DEFAULT_APP:
            return None
        return self.fetch_stats(timeout=10)


# --- the database (as the URL's user: root) ------------------------------------------------------
class Db(benchlib.Db):
    marker = "outputbench"

    def __init__(self, url):
        super().__init__(url)
        self.userstat_before = None

    def url_as(self, user):
        """The bench database's URL for `user` (no password), same host and port."""
        netloc = f"{user}@{self.kw['host']}:{self.kw['port']}"
        return urlunsplit((self.parts.scheme, netloc, self.parts.path, self.parts.query, ""))

    def create_users(self):
        for user in USERS.values():
            self.execute(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")
            self.execute(f"CREATE USER '{user}'@'127.0.0.1'")
            self.execute(f"GRANT ALL PRIVILEGES ON `{self.name}`.* TO '{user}'@'127.0.0.1'")

    def drop_users(self):
        """On its own connection: the watchdog may stop the run while the main one is mid-query."""
        with contextlib.closing(pymysql.connect(**self.kw)) as conn, conn.cursor() as cursor:
            for user in USERS.values():
                cursor.execute(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")

    def userstat_on(self):
        self.userstat_before = self.execute("SELECT @@GLOBAL.userstat")[0][0]
        self.execute("SET GLOBAL userstat = 1")

    def userstat_restore(self):
        if self.userstat_before is not None:
            with contextlib.closing(pymysql.connect(**self.kw)) as conn, conn.cursor() as cursor:
                cursor.execute(f"SET GLOBAL userstat = {int(self.userstat_before)}")

    def user_stats(self):
        """{'web': {column: value}, 'worker': {...}} from information_schema.USER_STATISTICS."""
        rows = self.execute(f"SELECT USER, {', '.join(STAT_COLUMNS)} FROM information_schema.USER_STATISTICS "
                            f"WHERE USER IN ({', '.join(repr(u) for u in USERS.values())})")
        by_user = {row[0]: dict(zip(STAT_COLUMNS, row[1:], strict=True)) for row in rows}
        return {role: by_user.get(user, dict.fromkeys(STAT_COLUMNS, 0)) for role, user in USERS.items()}

    def job_counts(self):
        """(sum of the jobs' versions: +1 per write, highest output row id, running jobs with a token)."""
        version, started = self.execute(
            f"SELECT COALESCE(SUM(version), 0), COALESCE(SUM(status = 'processing' AND current_tokens > 0), 0) "
            f"FROM `{self.name}`.ai_generation_jobs")[0]
        try:
            pieces = self.execute(f"SELECT COALESCE(MAX(id), 0) FROM `{self.name}`.ai_generation_output")[0][0]
        except pymysql.MySQLError:
            pieces = None
        return int(version), pieces, int(started)


# --- the SSE clients -----------------------------------------------------------------------------
class Client(sse_client.Client):
    __slots__ = ("index", "parts", "length", "thinking", "thinking_length", "attempt", "recs", "first_at",
                 "closed_at", "ended_with", "late", "outputs", "gaps", "overlaps", "resets", "id_mismatch")

    def __init__(self, index, job, late=False):
        super().__init__(job)
        self.index = index
        self.parts, self.length = [], 0
        self.thinking, self.thinking_length = [], 0
        self.attempt = None
        self.recs = []          # (end offset of an output event, receive time)
        self.first_at = None    # receive time of the first event
        self.closed_at = None   # set when the bench closes the stream early
        self.ended_with = None  # "complete", "error", "timeout"
        self.late = late        # opened mid-text (step 5)
        self.outputs = 0
        self.gaps = self.overlaps = self.resets = self.id_mismatch = 0

    def text(self):
        return "".join(self.parts)


def apply_piece(parts, length, offset, text):
    """(parts, length, gap, overlap) after placing `text` at `offset` of the text in `parts`."""
    if offset == length:
        parts.append(text)
        return parts, length + len(text), False, False
    if offset < length:  # overlap: what the client had from `offset` on is replaced
        whole = "".join(parts)[:offset] + text
        return [whole], len(whole), False, True
    parts.append(text)  # a gap: text is missing in between (counted; the comparison fails later)
    return parts, length + len(text), True, False


class Load(sse_client.Load):
    """Every client, the event counters, and the client side of the stream protocol."""

    def __init__(self, port, job_ids, connect_timeout=60.0):
        super().__init__(port, [PATH.format(job_id) for job_id in job_ids], connect_timeout)
        self.job_ids = job_ids
        self.opened = 0          # clients ever opened (their index)
        self.closed = []         # clients the bench closed early
        self.counts = {}         # event name -> [events, bytes]
        self.samples = {}        # event name -> one raw event
        self.bad_events = 0
        self.output_chars = 0

    def on_event(self, c, block, now):
        if block.startswith(b"retry:"):
            return
        event_id = name = data = None
        for line in block.split(b"\n"):
            if line.startswith(b"data: "):
                data = line[6:] if data is None else data + b"\n" + line[6:]
            elif line.startswith(b"event: "):
                name = line[7:].decode()
            elif line.startswith(b"id: "):
                event_id = line[4:].decode()
        name = name or "message"
        if c.state == CONNECTING:
            c.state = STREAMING
            c.first_at = now
        if name == "output" and c.late and c.outputs == 0:
            name = "output (catch-up)"  # a stream that joined mid-text: its first piece is the text so far
        count = self.counts.get(name)
        if count is None:
            count = self.counts[name] = [0, 0]
            self.samples[name] = (block + b"\n\n").decode(errors="replace")
        count[0] += 1
        count[1] += len(block) + 2  # + the blank line: the last line's own \n is in `block`
        if name.startswith("output") or name == "thinking":
            try:
                piece = json.loads(data)
                offset, text = piece["offset"], piece["text"]
            except (TypeError, ValueError, KeyError):
                self.bad_events += 1
                return
            if piece.get("reset") or (c.attempt is not None and piece.get("attempt") != c.attempt):
                c.resets += 1
                c.parts, c.length, c.thinking, c.thinking_length, c.recs = [], 0, [], 0, []
            c.attempt = piece.get("attempt")
            if name == "thinking":
                c.thinking, c.thinking_length, gap, overlap = apply_piece(c.thinking, c.thinking_length, offset, text)
                chars = None
            else:
                c.outputs += 1
                c.parts, c.length, gap, overlap = apply_piece(c.parts, c.length, offset, text)
                c.recs.append((offset + len(text), now))
                self.output_chars += len(text)
                chars = offset + len(text)
            c.gaps += gap
            c.overlaps += overlap
            if chars is not None and event_id and event_id.count("-") == 3 and int(event_id.split("-")[2]) != chars:
                c.id_mismatch += 1
        elif name in ("complete", "error", "timeout"):
            c.ended_with = name
            c.done = True

    # many clients ------------------------------------------------------------------------------
    def ramp(self, target, batch, batch_timeout, late=False):
        """Open clients up to `target` (client k on job k mod jobs), in batches, each waited for."""
        started = time.monotonic()
        trouble = []
        while len(self.clients) < target:
            opened = len(self.clients)
            new = [Client(self.opened + k, (opened + k) % len(self.job_ids), late=late)
                   for k in range(min(batch, target - opened))]
            self.opened += len(new)
            failed, waiting, reasons = self.open_batch(new, batch_timeout)
            if failed or waiting:
                trouble.append(f"batch of {len(new)} up to {len(self.clients)}: {failed} failed, {waiting} "
                               f"without a first event after {batch_timeout:.0f} s ({'; '.join(reasons)})")
        return {"target": target, "streaming": self.streaming(), "seconds": round(time.monotonic() - started, 2),
                "trouble": trouble}

    def kill_all(self):
        gevent.killall([c.greenlet for c in self.clients if c.greenlet is not None], block=True, timeout=20)

    def totals(self):
        return {name: tuple(value) for name, value in self.counts.items()}


# --- windows ---------------------------------------------------------------------------------------
class Sampler:
    """Everything counted at one moment: per-user database statistics, writes, CPU, client events."""

    def __init__(self, db, webs, loads, pids):
        self.db, self.webs, self.loads, self.pids = db, webs, loads, pids

    def take(self):
        before = time.time()
        users = self.db.user_stats()
        versions, pieces, _ = self.db.job_counts()
        at = (before + time.time()) / 2
        return {"t": at, "users": users, "versions": versions, "pieces": pieces,
                "cpu": {name: proc_cpu(pid() if callable(pid) else pid) for name, pid in self.pids.items()},
                "machine": machine_cpu(),
                "loads": {role: {"events": load.totals(), "output_chars": load.output_chars,
                                 "streaming": load.streaming()} for role, load in self.loads.items()},
                "stats": {role: web.stats() for role, web in self.webs.items()}}


def per(value, n, digits=1):
    return round(value / n, digits) if n else None


def web_figures(role, s0, s1, wall, args, writes):
    """One web process over a window: its database reads (USER_STATISTICS), ticks, events, CPU."""
    web = {k: s1["users"][role][k] - s0["users"][role][k] for k in STAT_COLUMNS}
    stats0, stats1 = s0["stats"][role], s1["stats"][role]
    ticks = tick_ms = own_selects = watcher_reads = by_table = by_shape = None
    if stats0 and stats1 and stats0.get("pid") == stats1.get("pid") and "ticks" in stats1:
        ticks = stats1["ticks"] - stats0["ticks"]
        tick_ms = round((stats1["tick_seconds"] - stats0["tick_seconds"]) / ticks * 1000, 2) if ticks else None
        own_selects = round((stats1["selects"] - stats0["selects"]) / wall, 2)
        watcher_reads = round((stats1["watcher_reads"] - stats0["watcher_reads"]) / wall, 2)
        t0, t1 = stats0.get("selects_by_table", {}), stats1.get("selects_by_table", {})
        by_table = {table: round((n - t0.get(table, 0)) / wall, 2) for table, n in t1.items() if n > t0.get(table, 0)}
        h0, h1 = stats0.get("selects_by_shape", {}), stats1.get("selects_by_shape", {})
        by_shape = {shape: round((n - h0.get(shape, 0)) / wall, 2) for shape, n in h1.items() if n > h0.get(shape, 0)}
    ticks_counted = ticks is not None
    if ticks is None:
        ticks = wall / args.poll_interval
    l0, l1 = s0["loads"][role], s1["loads"][role]
    events = {}
    for ev_name, (n1, b1) in l1["events"].items():
        n0, b0 = l0["events"].get(ev_name, (0, 0))
        events[ev_name] = {"events": n1 - n0, "bytes": b1 - b0}
    output_events = sum(v["events"] for k, v in events.items() if k.startswith("output"))
    all_events = sum(v["events"] for v in events.values())
    cpu_s = s1["cpu"][role] - s0["cpu"][role]
    return {"streams": [l0["streaming"], l1["streaming"]],
            "selects_per_s": round(web["SELECT_COMMANDS"] / wall, 2),
            "rows_read_per_s": round(web["ROWS_READ"] / wall, 1),
            "rows_sent_per_s": round(web["ROWS_SENT"] / wall, 1),
            "bytes_read_per_s": round(web["BYTES_SENT"] / wall),
            "bytes_sent_to_db_per_s": round(web["BYTES_RECEIVED"] / wall),
            "other_commands_per_s": round(web["OTHER_COMMANDS"] / wall, 2),
            "connections_opened": web["TOTAL_CONNECTIONS"],
            "ticks": round(ticks, 1), "ticks_counted": ticks_counted, "tick_ms_mean": tick_ms,
            "selects_per_tick": per(web["SELECT_COMMANDS"], ticks, 2),
            "rows_read_per_tick": per(web["ROWS_READ"], ticks, 1),
            "bytes_read_per_tick": per(web["BYTES_SENT"], ticks, 1),
            # per progress write of any job: what reading one changed row and its new text costs
            "bytes_read_per_worker_write": per(web["BYTES_SENT"], writes, 1),
            "own_count_selects_per_s": own_selects, "watcher_reads_per_s": watcher_reads,
            "own_count_selects_per_s_by_table": by_table, "own_count_selects_per_s_by_shape": by_shape,
            "db_busy_s": round(web["BUSY_TIME"], 3), "db_cpu_s": round(web["CPU_TIME"], 3),
            "events": events, "output_events": output_events, "output_events_per_s": round(output_events / wall),
            "events_per_s": round(all_events / wall),
            "output_chars_per_s": round((l1["output_chars"] - l0["output_chars"]) / wall),
            "cpu_us_per_output_event": per(cpu_s * 1e6, output_events, 1),
            "cpu_us_per_event": per(cpu_s * 1e6, all_events, 1)}


def window_figures(name, s0, s1, args):
    wall = s1["t"] - s0["t"]
    wrk = {k: s1["users"]["worker"][k] - s0["users"]["worker"][k] for k in STAT_COLUMNS}
    writes = s1["versions"] - s0["versions"]
    pieces = s1["pieces"] - s0["pieces"] if s0["pieces"] is not None and s1["pieces"] is not None else None
    cpu, machine = cpu_pct(s0, s1, wall)
    return {
        "window": name, "t0": s0["t"], "t1": s1["t"], "seconds": round(wall, 2),
        **{role: web_figures(role, s0, s1, wall, args, writes) for role in WEB_ROLES},
        "worker": {"writes": writes, "writes_per_s": round(writes / wall, 1), "output_rows": pieces,
                   "writes_per_s_its_cadence_asks": round(args.jobs / args.progress_interval, 1),
                   "bytes_written_per_s": round(wrk["BYTES_RECEIVED"] / wall),
                   "bytes_written_per_write": per(wrk["BYTES_RECEIVED"], writes, 1),
                   "bytes_read_per_write": per(wrk["BYTES_SENT"], writes, 1),
                   "statements_per_write": per(wrk["SELECT_COMMANDS"] + wrk["UPDATE_COMMANDS"]
                                               + wrk["OTHER_COMMANDS"], writes, 2),
                   "selects_per_s": round(wrk["SELECT_COMMANDS"] / wall, 1),
                   "updates_per_s": round(wrk["UPDATE_COMMANDS"] / wall, 1),
                   "rows_inserted": wrk["ROWS_INSERTED"], "rows_updated": wrk["ROWS_UPDATED"],
                   "db_busy_s": round(wrk["BUSY_TIME"], 3)},
        "cpu_pct_of_one_core": cpu,
        "machine_busy_pct_of_one_core": round(machine, 1) if machine is not None else None,
        "other_processes_pct_of_one_core": round(machine - sum(cpu.values()), 1) if machine is not None else None,
    }


# --- after the run: tokens, delays, correctness ----------------------------------------------------
def token_ranges(sent, windows, job_count):
    """For each window, the tokens (chunks) each job had sent at its start and end: median, min, max."""
    out = {}
    for w in windows:
        starts, ends = [], []
        for job in range(job_count):
            times = [t for (_r, _c, _th, t) in sent.get(job, ())]
            starts.append(bisect_right(times, w["t0"]))
            ends.append(bisect_right(times, w["t1"]))
        if starts:
            out[w["window"]] = {"median": [int(statistics.median(starts)), int(statistics.median(ends))],
                                "min": [min(starts), min(ends)], "max": [max(starts), max(ends)]}
    return out


def write_intervals(pieces):
    """The time between a job's consecutive text pieces (its progress writes with new text), ms."""
    hist = {}
    for _ends, written in pieces.values():
        for a, b in itertools.pairwise(written):
            hist_add(hist, b - a)
    return hist_dist(hist)


def job_tokens(sent, pieces, windows, t_ref):
    """Per job: its tokens (end offset, sent at), when the worker wrote the piece holding each
    (None when unknown), and the window each token belongs to."""
    by_job = {}
    for job, rows in sent.items():
        last = rows[-1][0]
        tokens = [(chars, t) for (req, chars, _th, t) in rows if req == last and chars > 0]
        ends, written = pieces.get(job, ([], []))
        wrote, names = [], []
        for chars, t in tokens:
            k = bisect_left(ends, chars)
            wrote.append(written[k] if k < len(ends) else None)
            names.append(next((w["window"] for w in windows if w["t0"] <= t <= w["t1"]), None))
        by_job[job] = (tokens, [t for _c, t in tokens], wrote, names, [int(t - t_ref) for _c, t in tokens])
    return by_job


def delays(clients, by_job, windows):
    """Histograms (1 ms) of token -> client delays over every token at every client streaming by
    its send time: all, per window (by the token's send time), per second after the first token
    (p99 and max), the worst few, and split at the worker's write of the piece holding it."""
    hist_all, sim_to_write, write_to_client = {}, {}, {}
    per_window, per_second, write_per_second = {w["window"]: {} for w in windows}, {}, {}
    undelivered = negative = 0
    worst = []  # a heap of (delay, client, job, chars, second after the first token)
    for tokens, _times, wrote, _names, seconds in by_job.values():
        for (_chars, t), w, second in zip(tokens, wrote, seconds, strict=True):
            if w is not None:
                hist_add(sim_to_write, max(0.0, w - t))
                hist_add(write_per_second.setdefault(second, {}), max(0.0, w - t))
    for c in clients:
        if c.first_at is None or not c.recs or c.job not in by_job:
            continue
        tokens, times, wrote, names, seconds = by_job[c.job]
        recs = c.recs
        last_end = recs[-1][0]
        j = 0
        for k in range(bisect_left(times, c.first_at), len(tokens)):  # tokens sent once the stream was open
            chars, t = tokens[k]
            if chars > last_end:
                if c.ended_with == "complete":
                    undelivered += len(tokens) - k
                break
            while recs[j][0] < chars:
                j += 1
            received = recs[j][1]
            delay = received - t
            if delay < 0:
                negative += 1
                delay = 0.0
            hist_add(hist_all, delay)
            hist_add(per_second.setdefault(seconds[k], {}), delay)
            if names[k] is not None:
                hist_add(per_window[names[k]], delay)
            if wrote[k] is not None:
                hist_add(write_to_client, max(0.0, received - wrote[k]))
            if delay > 1.0 and (len(worst) < 10 or delay > worst[0][0]):
                item = (round(delay, 3), c.index, c.job, chars, seconds[k])
                (heapq.heappush if len(worst) < 10 else heapq.heapreplace)(worst, item)
    rows = []
    for second in sorted(per_second):
        dist, write = hist_dist(per_second[second]), hist_dist(write_per_second.get(second, {})) or {}
        rows.append([second, dist["n"], dist["p99"], dist["max"], write.get("p99"), write.get("max")])
    return {"all": hist_dist(hist_all), "per_window": {k: hist_dist(v) for k, v in per_window.items()},
            "simulator_to_worker_write": hist_dist(sim_to_write),
            "worker_write_to_client": hist_dist(write_to_client),
            "per_second_after_first_token": {
                "columns": ["second", "n", "p99", "max", "simulator_to_worker_write_p99",
                            "simulator_to_worker_write_max"],
                "rows": rows},
            "worst": [dict(zip(("delay_s", "client", "job", "chars", "second_after_first_token"), w, strict=True))
                      for w in sorted(worst, reverse=True)],
            "tokens_never_delivered_to_complete_streams": undelivered, "negative_delays_clamped": negative}


def correctness(clients, results):
    """Each client's assembled text against its job's final result."""
    out = {"clients_checked": 0, "complete_equal": 0, "closed_early_prefix": 0, "mismatches": 0,
           "not_complete": 0, "gaps": 0, "overlaps": 0, "resets": 0, "id_chars_mismatch": 0, "examples": []}
    for c in clients:
        out["clients_checked"] += 1
        out["gaps"] += c.gaps
        out["overlaps"] += c.overlaps
        out["resets"] += c.resets
        out["id_chars_mismatch"] += c.id_mismatch
        result = results.get(c.job)
        text = c.text()
        if c.closed_at is not None:
            ok = result is not None and result.startswith(text)
            out["closed_early_prefix"] += ok
        else:
            if c.ended_with != "complete":
                out["not_complete"] += 1
            ok = result is not None and text == result
            out["complete_equal"] += ok and c.ended_with == "complete"
        if not ok:
            out["mismatches"] += 1
            if len(out["examples"]) < 5:
                first_diff = next((i for i, (a, b) in enumerate(zip(text, result or "", strict=False)) if a != b),
                                  min(len(text), len(result or "")))
                out["examples"].append({"client": c.index, "job": c.job, "closed_early": c.closed_at is not None,
                                        "ended_with": c.ended_with, "error": c.error, "chars": len(text),
                                        "result_chars": None if result is None else len(result),
                                        "first_difference_at": first_diff,
                                        "got": text[first_diff:first_diff + 40],
                                        "want": (result or "")[first_diff:first_diff + 40]})
    return out


# --- the run -------------------------------------------------------------------------------------
def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="10 jobs, 200 watchers, 1,300 tokens, late window at 1,100 (about a minute)")
    parser.add_argument("--database-url", default=os.environ.get("OUTPUT_BENCH_DATABASE_URL", DEFAULT_DB))
    parser.add_argument("--app", default=DEFAULT_APP,
                        help="what gunicorn serves: the default adds only counters to wsgi:app; 'wsgi:app' runs "
                             "the product untouched (ticks are then taken as seconds / SSE_POLL_INTERVAL)")
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--watchers", type=int)
    parser.add_argument("--late-joiners", type=int, help="streams opened mid-text, between main1 and main2")
    parser.add_argument("--num-predict", type=int)
    parser.add_argument("--early-token", type=int, default=100)
    parser.add_argument("--late-token", type=int)
    parser.add_argument("--tps", type=float, default=40.0)
    parser.add_argument("--worker-concurrency", type=int)
    parser.add_argument("--progress-interval", type=float, default=0.5)
    parser.add_argument("--poll-interval", type=float, default=0.2, help="SSE_POLL_INTERVAL")
    parser.add_argument("--warm-up", type=int, default=3,
                        help="short jobs run to the end before the measured ones (0: none, the model has no history)")
    parser.add_argument("--batch", type=int, default=250, help="clients opened at once")
    parser.add_argument("--batch-timeout", type=float, default=30.0)
    parser.add_argument("--timeout", type=float, default=480.0, help="hard limit of the whole run, seconds")
    parser.add_argument("--wait-quiet", type=float, default=0.0,
                        help="seconds to wait, before starting, for other processes to leave the cores alone")
    parser.add_argument("--quiet-below", type=float, default=25.0,
                        help="machine busy %% of one core that counts as quiet")
    args = parser.parse_args(argv)
    preset = ({"jobs": 10, "watchers": 200, "late_joiners": 20, "num_predict": 1300, "late_token": 1100}
              if args.quick else
              {"jobs": 50, "watchers": 1000, "late_joiners": 50, "num_predict": 4200, "late_token": 4000})
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.worker_concurrency is None:
        args.worker_concurrency = args.jobs
    if not args.early_token / args.tps + 12 < args.late_token / args.tps < args.num_predict / args.tps - 2:
        parser.error("the late token must come well after the early one and before num_predict")
    return args


def schedule(args):
    """Seconds after the first token: the windows, and when the late joiners connect."""
    early, late = args.early_token / args.tps, args.late_token / args.tps
    plan = {"early": (max(0.5, early - 2.0), early + 2.0), "late": (late - 2.0, late + 2.0)}
    start, stop = plan["early"][1] + 0.5, plan["late"][0] - 1.0
    middle = round((start + stop) / 2, 2)
    plan["main1"] = (start, middle)
    plan["late_joiners_at"] = middle
    plan["main2"] = (middle + 3.0, stop)
    return plan


def start_jobs(web, args):
    job_ids = []
    for i in range(args.jobs):
        response = requests.post(web.url + "/api/v1/ai/generation", timeout=20, json={
            "prompt": f"Output benchmark job {i}: tell a long story.", "options": {"num_predict": args.num_predict}})
        response.raise_for_status()
        job_ids.append(response.json()["job_id"])
    return job_ids


def warm_up(web, db, args, worker, deadline_s=60.0):
    """A few short jobs run to the end first, by a worker of their own, so the model has a
    history as on any server that has run a job (a model without one is read again every half
    second by the web process's estimates)."""
    started = time.monotonic()
    for i in range(args.warm_up):
        requests.post(web.url + "/api/v1/ai/generation", timeout=20, json={
            "prompt": f"Output benchmark warm-up run {i}: tell a long story.",
            "options": {"num_predict": 40}}).raise_for_status()
    done = 0
    while time.monotonic() - started < deadline_s:
        done = db.execute(f"SELECT COUNT(*) FROM `{db.name}`.ai_generation_jobs WHERE status = 'completed'")[0][0]
        if done >= args.warm_up:
            break
        gevent.sleep(0.2)
    worker.stop(grace=15)
    if done < args.warm_up:
        raise RuntimeError(f"warm-up: {done} of {args.warm_up} jobs completed in {deadline_s:.0f} s:\n"
                           + worker.log_tail())
    return {"jobs_completed": done, "seconds": round(time.monotonic() - started, 1)}


def wait_quiet(seconds, below):
    """Wait up to `seconds` for the machine to be quiet (busy under `below` % of one core over 3 s,
    before anything of ours runs); returns the last figure."""
    deadline = time.monotonic() + seconds
    while True:
        m0 = machine_cpu()
        time.sleep(3.0)
        m1 = machine_cpu()
        busy = round((m1[0] - m0[0]) / max(1, m1[1] - m0[1]) * 100 * NCPU, 1)
        if busy < below or time.monotonic() > deadline:
            return busy
        print(f"output_bench: the machine is busy ({busy} % of one core); waiting", flush=True)
        time.sleep(10.0)


def wait_first_token(db, deadline):
    while time.monotonic() < deadline:
        if db.job_counts()[2]:
            return time.time()
        gevent.sleep(0.02)
    raise RuntimeError("no job got a token in time")


def read_pieces(db, job_ids):
    """{job index: ([char_to, ...], [written at, ...])} of the current attempt's text pieces, read
    while the jobs still run (an ended job's pieces are pruned a minute later)."""
    index = {job_id: i for i, job_id in enumerate(job_ids)}
    rows = db.execute(f"SELECT j.job_id, o.char_to, o.created_at FROM `{db.name}`.ai_generation_output o "
                      f"JOIN `{db.name}`.ai_generation_jobs j ON j.id = o.job_pk "
                      f"WHERE o.kind = 'text' AND o.attempt = j.attempts ORDER BY o.job_pk, o.char_to")
    pieces = {}
    for job_id, char_to, created in rows:
        if job_id not in index:
            continue  # a warm-up job's
        ends, written = pieces.setdefault(index[job_id], ([], []))
        ends.append(char_to)
        written.append(calendar.timegm(created.utctimetuple()) + created.microsecond / 1e6)
    return pieces


def main(argv=None):
    args = parse_args(argv)
    started_at = datetime.now(UTC)
    run_started = time.monotonic()
    stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    log_dir = RESULTS / f"output-{stamp}-logs"
    log_dir.mkdir()
    out = RESULTS / f"output-{stamp}.json"
    nofile = benchlib.raise_nofile()
    report = {}
    db = Db(args.database_url)
    busy_before = wait_quiet(args.wait_quiet, args.quiet_below)
    bench_started = time.monotonic()
    loads = {}

    cleaning = gevent.lock.Semaphore()
    cleaned = []

    def cleanup():
        """Once, whoever comes first (the run's end, the watchdog, a signal); the others wait for it."""
        with cleaning:
            if not cleaned:
                cleaned.append(True)
                stop_everything()

    def stop_everything():
        for load in loads.values():
            with contextlib.suppress(Exception):
                load.kill_all()
        Proc.stop_all()
        with contextlib.suppress(Exception):
            db.drop_users()
        with contextlib.suppress(Exception):
            db.userstat_restore()

    start_watchdog("output_bench", args.timeout, cleanup, report, out)

    machine = benchlib.machine_info(db.version(), nofile, busy_pct_of_one_core_before=busy_before)
    plan = schedule(args)
    report.update({"started_at": started_at.isoformat(timespec="seconds"), "machine": machine,
                   "config": {k: v for k, v in vars(args).items() if k != "database_url"},
                   "schedule_s_after_first_token": plan, "windows": []})
    windows = report["windows"]
    send_log = log_dir / "simulator-sends.log"
    try:
        print(f"output_bench: {benchlib.machine_line(machine)}; logs in {log_dir.relative_to(ROOT)}", flush=True)
        db.recreate()
        benchlib.migrate(args.database_url)
        db.create_users()
        db.userstat_on()
        sim_port = benchlib.free_port()
        sim = Proc("simulator", [sys.executable, "-m", "bench.output_counters", "--port", str(sim_port),
                                 "--log", str(send_log), "--tps", str(args.tps), "--gate", str(args.jobs)],
                   {}, log_dir)
        webs = {role: Web(args, db.url_as(USERS[role]), log_dir, role) for role in WEB_ROLES}
        for web in webs.values():
            web.wait_up()
        mariadb = (benchlib.pids_named("mariadbd", "mysqld") or [None])[0]

        def worker_env():
            return {"DATABASE_URL": db.url_as(USERS["worker"]), "OLLAMA_URL": f"http://127.0.0.1:{sim_port}",
                    "WORKER_CONCURRENCY": str(args.worker_concurrency),
                    "PROGRESS_INTERVAL": str(args.progress_interval), "SECRET_KEY": "output-bench",
                    "SHUTDOWN_GRACE": "2"}

        if args.warm_up:
            report["warm_up"] = warm_up(webs["web"], db, args, Proc("worker-warm-up", [sys.executable, "worker.py"],
                                                                        worker_env(), log_dir))
            print(f"output_bench: warm-up: {report['warm_up']}", flush=True)
        job_ids = start_jobs(webs["web"], args)
        loads.update({role: Load(web.port, job_ids) for role, web in webs.items()})
        report["ramp_before_start"] = {"web": loads["web"].ramp(args.watchers, args.batch, args.batch_timeout),
                                       "web1": loads["web1"].ramp(1, 1, args.batch_timeout)}
        ramp = report["ramp_before_start"]["web"]
        print(f"output_bench: {args.jobs} jobs queued (num_predict {args.num_predict}); {ramp['streaming']} streams "
              f"open on one web process in {ramp['seconds']} s, {loads['web1'].streaming()} on the other"
              + (f"; trouble: {ramp['trouble'][-1]}" if ramp["trouble"] else ""), flush=True)
        worker = Proc("worker", [sys.executable, "worker.py"], worker_env(), log_dir)
        first_token = wait_first_token(db, time.monotonic() + 120)
        report["first_token_at"] = first_token
        print(f"output_bench: first token; {args.tps:g} tok/s, progress every {args.progress_interval:g} s, "
              f"SSE_POLL_INTERVAL {args.poll_interval:g} s", flush=True)
        sampler = Sampler(db, webs, loads, {"web": webs["web"].current_worker, "web1": webs["web1"].current_worker,
                                            "worker": worker.pid, "simulator": sim.pid, "mariadbd": mariadb,
                                            "bench": os.getpid()})

        def until(offset):
            gevent.sleep(max(0.0, first_token + offset - time.time()))

        def window(name, t0, t1):
            until(t0)
            late_by = round(time.time() - first_token - t0, 2)
            s0 = sampler.take()
            until(t1)
            s1 = sampler.take()
            figures = window_figures(name, s0, s1, args)
            figures["started_late_by_s"] = late_by
            windows.append(figures)
            w, w1, k = figures["web"], figures["web1"], figures["worker"]
            cpu = figures["cpu_pct_of_one_core"]
            print(f"[{name:>5}] {figures['seconds']:>5.1f} s: {w['streams'][1]} streams: SELECT/s "
                  f"{w['selects_per_s']}, read {w['bytes_read_per_tick']} B/tick over {w['ticks']} ticks, "
                  f"{w['output_events_per_s']} output events/s, CPU {cpu['web']} % "
                  f"({w['cpu_us_per_output_event']} us/output event); 1 stream: SELECT/s {w1['selects_per_s']}; "
                  f"worker {k['writes_per_s']} writes/s, {k['bytes_written_per_write']} B/write; machine "
                  f"{figures['machine_busy_pct_of_one_core']} % of one core", flush=True)
            if not worker.alive() or not all(web.proc.alive() for web in webs.values()):
                raise RuntimeError("a process died: " + ", ".join(
                    f"{p.name} {'up' if p.alive() else 'exited'}" for p in Proc.started))

        timeline = report["timeline_s_after_first_token"] = {}

        def mark(what):
            timeline[what] = round(time.time() - first_token, 2)

        window("early", *plan["early"])
        window("main1", *plan["main1"])
        until(plan["late_joiners_at"])
        mark("late_joiners_connecting")
        report["ramp_late_joiners"] = loads["web"].ramp(args.watchers + args.late_joiners, args.batch,
                                                        args.batch_timeout, late=True)
        mark("late_joiners_streaming")
        print(f"output_bench: {args.late_joiners} streams joined mid-text in "
              f"{report['ramp_late_joiners']['seconds']} s", flush=True)
        window("main2", *plan["main2"])
        window("late", *plan["late"])
        pieces = read_pieces(db, job_ids)

        end_deadline = time.monotonic() + (args.num_predict - args.late_token) / args.tps + 40
        every = [c for load in loads.values() for c in load.clients]
        while any(not c.done and c.state != ENDED for c in every) and time.monotonic() < end_deadline:
            gevent.sleep(0.25)
        mark("streams_done")
        results, statuses, attempts = {}, {}, set()
        for i, job_id in enumerate(job_ids):
            job = requests.get(f"{webs['web1'].url}/api/v1/ai/generation/{job_id}/status", timeout=20).json()["job"]
            statuses[job["status"]] = statuses.get(job["status"], 0) + 1
            attempts.add(job.get("attempts"))
            if job.get("result") is not None:
                results[i] = job["result"]
        report["job_statuses"] = statuses
        report["job_attempts"] = sorted(attempts)
        for load in loads.values():
            load.kill_all()
        for proc in Proc.started:
            proc.stop(grace=25)
        marks = ("Error", "ERROR", "WORKER TIMEOUT", "Traceback")
        report["log_errors"] = {p.name: [line for line in p.log_tail(500000).splitlines()
                                         if any(m in line for m in (*marks, "WARNING"))][-10:] for p in Proc.started}

        sent, gate = read_send_log(send_log)
        sent = {job: rows for job, rows in sent.items() if 0 <= job < args.jobs}
        measured = [w for w in windows if "t0" in w]
        report["tokens_in_windows"] = token_ranges(sent, measured, args.jobs)
        if gate:
            arrived, released = zip(*gate.values(), strict=True)
            report["generations_gate"] = {"requests": len(gate),
                                          "arrival_spread_s": round(max(arrived) - min(arrived), 3),
                                          "release_spread_s": round(max(released) - min(released), 3)}
        report["job_start_spread_s"] = round(max(r[0][3] for r in sent.values()) - min(r[0][3] for r in sent.values()),
                                             3) if sent else None
        report["simulator_requests_per_job"] = sorted({len({r[0] for r in rows}) for rows in sent.values()})
        report["simulator_text_length_equals_result"] = sum(1 for job, rows in sent.items()
                                                            if job in results and rows[-1][1] == len(results[job]))
        report["worker_write_interval_ms"] = write_intervals(pieces)
        by_job = job_tokens(sent, pieces, measured, first_token)
        report["delay_ms"] = {role: delays(load.clients, by_job, measured) for role, load in loads.items()}
        report["correctness"] = correctness([c for load in loads.values() for c in load.clients], results)
        counts = {}
        for load in loads.values():
            for name, (n, b) in load.counts.items():
                counts[name] = [counts.get(name, [0, 0])[0] + n, counts.get(name, [0, 0])[1] + b]
        report["events"] = {name: {"events": n, "bytes": b, "mean_bytes": round(b / n, 1) if n else None}
                            for name, (n, b) in counts.items()}
        report["event_samples"] = {name: sample[:400] for name, sample in loads["web"].samples.items()}
        report["client_errors"] = {role: load.errors for role, load in loads.items()}
        report["bad_events"] = sum(load.bad_events for load in loads.values())
        report["summary"] = summarize(report)
        report["run_seconds"] = round(time.monotonic() - run_started, 1)
        report["run_seconds_after_quiet_wait"] = round(time.monotonic() - bench_started, 1)
        report["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    finally:
        cleanup()
        out.write_text(json.dumps(report, indent=2, default=str))
    print_table(report)
    print(f"\nJSON: {out.relative_to(ROOT)}")
    return 0


# --- the report ----------------------------------------------------------------------------------
def by_name(report, name):
    return next((w for w in report["windows"] if w["window"] == name and "t0" in w), None)


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def summarize(report):
    out = {}
    main = [w for w in report["windows"] if w["window"] in ("main1", "main2")]
    out["reads_ratio_1000_to_1"] = {w["window"]: ratio(w["web"]["selects_per_s"], w["web1"]["selects_per_s"])
                                    for w in main}
    ratios = [r for r in out["reads_ratio_1000_to_1"].values() if r is not None]
    out["reads_target_met"] = bool(ratios) and max(ratios) <= 1.5
    early, late = by_name(report, "early"), by_name(report, "late")
    if early and late:
        out["web_bytes_read_per_tick_late_to_early"] = ratio(late["web"]["bytes_read_per_tick"],
                                                             early["web"]["bytes_read_per_tick"])
        out["worker_bytes_written_per_write_late_to_early"] = ratio(late["worker"]["bytes_written_per_write"],
                                                                    early["worker"]["bytes_written_per_write"])
        out["web_bytes_read_per_worker_write_late_to_early"] = ratio(late["web"]["bytes_read_per_worker_write"],
                                                                     early["web"]["bytes_read_per_worker_write"])
        flat = [out["web_bytes_read_per_tick_late_to_early"], out["worker_bytes_written_per_write_late_to_early"]]
        out["bytes_flat_target_met"] = all(r is not None and r <= 1.2 for r in flat)
    delay = ((report.get("delay_ms") or {}).get("web") or {}).get("all") or {}
    out["delay_p99_ms"] = delay.get("p99")
    out["delay_target_met"] = delay.get("p99") is not None and delay["p99"] <= 1000
    out["web_cpu_us_per_output_event"] = {w["window"]: w["web"]["cpu_us_per_output_event"] for w in main}
    events = report.get("events", {})
    out["mean_bytes"] = {name: events[name]["mean_bytes"] for name in ("progress", "output") if name in events}
    out["mismatches"] = report.get("correctness", {}).get("mismatches")
    out["correct"] = out["mismatches"] == 0 and report.get("correctness", {}).get("not_complete") == 0
    return out


def print_table(report):
    print("\nLive output benchmark, ?include=output. Two web processes at once: 'N' with the watchers, '1' with one "
          "stream. SEL/s, rows/s, B read/tick: MariaDB USER_STATISTICS of that process's user (bytes = what it "
          "read); writes: the jobs' version sum; B/write: USER_STATISTICS bytes the worker's user sent")
    ranges = report.get("tokens_in_windows", {})
    head = (f"{'window':<7}{'tokens':>11}{'s':>6} | {'N':>5}{'SEL/s':>7}{'rows/s':>8}{'B read/tick':>12}{'ticks':>6}"
            f"{'B/write':>8}{'out ev/s':>9}{'us/out ev':>10} | {'1':>2}{'SEL/s':>7}{'B read/tick':>12} |{'writes/s':>9}"
            f"{'B/write':>9}")
    print(head)
    print("-" * len(head))
    for w in report["windows"]:
        if "t0" not in w:
            continue
        tok = ranges.get(w["window"], {}).get("median")
        tok = f"{tok[0]}-{tok[1]}" if tok else None
        n, one, k = w["web"], w["web1"], w["worker"]
        print(f"{w['window']:<7}{fmt(tok, 11)}{w['seconds']:>6.1f} | {n['streams'][1]:>5}{n['selects_per_s']:>7}"
              f"{n['rows_read_per_s']:>8}{fmt(n['bytes_read_per_tick'], 12)}{n['ticks']:>6}"
              f"{fmt(n['bytes_read_per_worker_write'], 8, '.0f')}{n['output_events_per_s']:>9}"
              f"{fmt(n['cpu_us_per_output_event'], 10)} | {one['streams'][1]:>2}"
              f"{one['selects_per_s']:>7}{fmt(one['bytes_read_per_tick'], 12)} |{k['writes_per_s']:>9}"
              f"{fmt(k['bytes_written_per_write'], 9)}")
    print(f"(tokens: of the median job, from the simulator's send log; B/write after ticks: bytes read by N per "
          f"progress write of any job, i.e. per changed row with its new text; the worker's cadence asks "
          f"{report['config']['jobs'] / report['config']['progress_interval']:g} writes/s)")
    print(f"\nCPU, % of one core (the machine has {report['machine']['nproc']} cores; web = the N process's gunicorn "
          "worker, web1 = the other's)")
    names = ("web", "web1", "worker", "simulator", "mariadbd", "bench")
    head = f"{'window':<7}" + "".join(f"{n:>10}" for n in names) + f"{'others':>8}{'machine':>9}"
    print(head)
    print("-" * len(head))
    for w in report["windows"]:
        if "t0" in w:
            cpu = w["cpu_pct_of_one_core"]
            print(f"{w['window']:<7}" + "".join(fmt(cpu.get(n), 10) for n in names)
                  + f"{fmt(w['other_processes_pct_of_one_core'], 8)}{fmt(w['machine_busy_pct_of_one_core'], 9)}")
    for role, title in (("web", "the N streams"), ("web1", "the 1 stream")):
        d = (report.get("delay_ms") or {}).get(role) or {}
        print(f"\ndelay token -> client, {title} (ms, 1 ms buckets; a window's tokens are those it sent):")
        rows = [("all", d.get("all")), ("sim->wrk", d.get("simulator_to_worker_write")),
                ("wrk->cli", d.get("worker_write_to_client")), *((d.get("per_window") or {}).items())]
        for name, dist in rows:
            if dist:
                print(f"  {name:<8} n={dist['n']:>9}  p50 {dist['p50']:>5}  p90 {dist['p90']:>5}  p99 {dist['p99']:>5}"
                      f"  p99.9 {dist['p999']:>5}  max {dist['max']:>5}")
        seconds = (d.get("per_second_after_first_token") or {}).get("rows", [])
        slow = [f"{row[0]} s: p99 {row[2]} max {row[3]} (to the worker's write: p99 {row[4]})"
                for row in seconds if row[3] > 1000]
        print(f"  seconds after the first token with a delay over 1 s: {'; '.join(slow[:12]) or 'none'}"
              + (f" (+{len(slow) - 12} more)" if len(slow) > 12 else ""))
        print(f"  tokens never delivered to complete streams: {d.get('tokens_never_delivered_to_complete_streams')}")
    events = report.get("events", {})
    print("\nevents received: " + ", ".join(f"{k} {v['events']} (mean {v['mean_bytes']} B)" for k, v in events.items()))
    c = report.get("correctness", {})
    print(f"correctness: {c.get('clients_checked')} streams checked, complete and equal to the job's result: "
          f"{c.get('complete_equal')}; mismatches {c.get('mismatches')}; not complete {c.get('not_complete')}; gaps "
          f"{c.get('gaps')}, overlaps {c.get('overlaps')}, resets {c.get('resets')}, ids whose text chars != "
          f"offset + len(text): {c.get('id_chars_mismatch')}")
    for example in c.get("examples", []):
        print(f"  mismatch: {example}")
    print(f"jobs: {report.get('job_statuses')}, generations gate {report.get('generations_gate')}, simulator "
          f"requests per job {report.get('simulator_requests_per_job')}; client errors "
          f"{report.get('client_errors')}; run {report.get('run_seconds')} s, "
          f"{report.get('run_seconds_after_quiet_wait')} s of it after waiting for quiet cores")
    iv = report.get("worker_write_interval_ms") or {}
    print(f"worker: time between a job's text pieces (ms, {report['config']['progress_interval']:g} s asked): p50 "
          f"{iv.get('p50')} p90 {iv.get('p90')} p99 {iv.get('p99')} max {iv.get('max')}")
    print(f"timeline (s after the first token): {report.get('timeline_s_after_first_token')}; machine busy "
          f"before the start: {report['machine'].get('busy_pct_of_one_core_before')} % of one core")
    print("targets: " + json.dumps(report.get("summary", {}), default=str))


if __name__ == "__main__":
    sys.exit(main())
