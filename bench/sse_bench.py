"""SSE benchmark: livegen's one-watcher-per-process fan-out against the seeds' one-read-per-client
polling, side by side in one run.

    .venv/bin/python bench/sse_bench.py            # full run, about 10 minutes (--timeout 600)
    .venv/bin/python bench/sse_bench.py --quick    # about 2 minutes, small sizes
    .venv/bin/python bench/sse_bench.py --modes ours --levels 1 --capacity 10000 --timeout 900
                                                   # only ours' capacity ramp, with more time

It needs the MariaDB/MySQL server of --database-url (default
mysql+pymysql://root@127.0.0.1:3306/livegen_ssebench; the database name must contain "ssebench":
it is dropped and created again, then migrated with `flask --app wsgi db upgrade`).

What it starts, all on 127.0.0.1, each configured by environment only:
  * the simulated Ollama (`python -m simulator --tps 50 --load-delay 0 --lengths fixed`),
  * one `python worker.py` (WORKER_CONCURRENCY=8, PROGRESS_INTERVAL=0.5) and 8 jobs whose
    num_predict outlasts the run, so every job writes progress every 0.5 s all along;
  * per mode, one web process under the product's gunicorn.conf.py (gevent, WEB_CONCURRENCY=1,
    SSE_POLL_INTERVAL=0.2): "ours" is `bench.sse_ours_app:app` = `wsgi:app` plus a SELECT
    counter and `/sse-bench/stats` (bench/sse_counters.py; `--ours-app wsgi:app` runs the product
    untouched), "baseline" is `bench.sse_baseline_app:app` (the same app plus a route that reads
    its job's row once per client per interval, the seeds' design).

This process (gevent, one greenlet per client, a raw-socket HTTP/1.1 client that parses chunked
text/event-stream) opens the SSE streams, spread evenly over the jobs, and measures per mode:
  * database reads/s at each level (default 1, 100, 1,000, 5,000 watchers): the SELECTs the web
    process sent, counted in that process (exact, and blind to other databases on the server),
    next to the requirement's method, the delta of `SHOW GLOBAL STATUS LIKE 'Com_select'` over the
    window minus the same rate with the worker running and no watcher (server-wide: any other
    database's traffic shows up in it);
  * delay from a progress write to its event at the client: receive time - the write time of
    the event's version, same clock, p50/p99/max, at every level (the target is judged at
    --delay-watchers, 2,000). The write time does not come from the event (its data no longer
    carries a timestamp of the write): a reader in this process polls
    `SELECT job_id, version, last_update_at FROM ai_generation_jobs WHERE job_id IN (the bench's
    jobs)` every 10 ms from the jobs' start to the end of the last mode, and keeps, for every
    (job, version) it sees, the row's `last_update_at` (set by the worker just before its commit,
    in ms), which is exact however late the reader sees it. A received event is matched by its
    SSE `id:` line (the job's version; the streams are opened without `?include=output`, so ids
    are plain integers). A version the reader never saw because the row was written again between
    two of its reads has no write time: its events are skipped and counted per window
    (`events_skipped_missed`; `reader.missed_versions` counts such versions), as are events of a
    version the reader neither saw nor missed (`events_without_write_time`, expected 0). The reader's
    SELECTs are subtracted from the server-wide Com_select figures; its CPU shows in `bench` and
    `mariadbd`. Its first sight of each version also splits the delay into write -> visible in
    the database -> at the client (with the reader's read interval, which bounds the error);
  * "fed on time": a client is on time for a write (job, version, written at) when it received an
    event of that version or a later one within --on-time s (default 1) of the write; every
    version the reader saw written in the window counts, whether or not a client got it; the
    share of clients that missed any write in the window is "lagged";
  * capacity (ours only): streams added in batches up to --capacity (10,000), with short checks
    every --probe-step streams above the delay level, until a batch fails or stalls or the time
    budget ends; the gunicorn worker's VmRSS before and with the streams open gives the memory
    per stream;
  * bytes per progress event: exactly the id + event + data lines + the blank line, mean/max,
    and what each data field costs (over a sample of the received events: a field left out of
    some events, e.g. a null one, shows in how many it was present);
  * CPU of every process (web worker, livegen worker, simulator, mariadbd, this load generator,
    and everything else on the machine) per window, so a reader can tell when the cores ran out;
  * a probe of the watcher's start: a fresh ours whose first 50 subscribers arrive at once, and
    how many watcher loops then poll (one is the design).

A table goes to stdout; the figures, as JSON, to bench/results/sse-<timestamp>.json, and the
processes' logs to bench/results/sse-<timestamp>-logs/. Every phase is bounded in time, the whole
run by --timeout (a watchdog stops everything); every process started here is stopped on any exit,
and dies with this one (PR_SET_PDEATHSIG).
"""
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import pymysql  # noqa: E402
import requests  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import benchlib, sse_client  # noqa: E402 - after monkey.patch_all(): sse_client is gevent's side
from bench.benchlib import Proc, cpu_pct, fmt, machine_cpu, pct, proc_cpu  # noqa: E402
from bench.sse_client import CONNECTING, ENDED, FAILED, STREAMING, start_watchdog  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DEFAULT_DB = "mysql+pymysql://root@127.0.0.1:3306/livegen_ssebench"
PATHS = {"ours": "/api/v1/ai/generation/{}/progress", "baseline": "/baseline/{}/progress"}
APPS = {"ours": "bench.sse_ours_app:app", "baseline": "bench.sse_baseline_app:app"}


# --- small helpers -------------------------------------------------------------------------------
def dist_ms(values):
    if not values:
        return None
    values.sort()
    def ms(seconds):
        return round(seconds * 1000, 1)
    return {"n": len(values), "p50": ms(pct(values, 50)), "p99": ms(pct(values, 99)), "max": ms(values[-1]),
            "min": ms(values[0]), "mean": ms(sum(values) / len(values))}


def proc_rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, TypeError):
        pass
    return None


# --- processes -----------------------------------------------------------------------------------
class Web(sse_client.Web):
    """One gunicorn master (WEB_CONCURRENCY=1) serving `app`; `worker_pid` is its one worker."""

    def __init__(self, mode, args, log_dir, name=None):
        self.mode = mode
        env = {"DATABASE_URL": args.database_url, "SECRET_KEY": "sse-bench",
               "SSE_POLL_INTERVAL": str(args.poll_interval), "PYTHONPATH": benchlib.pythonpath()}
        if args.capacity > 10000:  # gunicorn.conf.py: WORKER_CONNECTIONS, default 10,000
            env["WORKER_CONNECTIONS"] = str(args.capacity + 100)
        super().__init__(name or f"web-{mode}", args.ours_app if mode == "ours" else APPS[mode], env, log_dir)
        self.label = f"gunicorn ({mode})"

    def stats(self):
        """The process's own counters (bench/sse_counters.py), or None (plain wsgi:app, or no
        connection slot left: gunicorn's worker_connections are all streams)."""
        return self.fetch_stats(timeout=15)


# --- the database --------------------------------------------------------------------------------
class Db(benchlib.Db):
    marker = "ssebench"

    def com_select(self):
        """(time, server-wide Com_select). SHOW does not count as a SELECT."""
        value = int(self.execute("SHOW GLOBAL STATUS LIKE 'Com_select'")[0][1])
        return time.time(), value


class RowReader:
    """Polls the bench's job rows every `period` s in a greenlet of its own, for the whole run.

    updated  (job index, version) -> the row's last_update_at (time.time() seconds): the write time
             of that version, exact (the worker's own stamp, ms) however late this reader sees it;
    visible  (job index, version) -> when this reader first saw it (after its read returned);
    missed   (job index, version) -> when a read showed that this version had been overwritten
             since the previous read: it has no write time, its events are skipped and counted;
    at_start versions already there at the first read: visible, but since an unknown time.
    """

    def __init__(self, db, job_ids, period=0.01):
        self.index = {job_id: i for i, job_id in enumerate(job_ids)}
        self.kw = db.kw
        self.conn = pymysql.connect(**db.kw)
        self.query = (f"SELECT job_id, version, last_update_at FROM `{db.name}`.ai_generation_jobs "
                      f"WHERE job_id IN ({','.join(self.conn.escape(j) for j in job_ids)})")
        self.period = period
        self.updated, self.visible, self.missed = {}, {}, {}
        self.at_start = set()
        self.last = {}          # job index -> latest version read
        self.reads = 0          # SELECTs sent: taken out of the server-wide Com_select figures
        self.read_done = []     # when each read returned (the read interval bounds `visible`)
        self.errors = {}
        self.running = False
        self.greenlet = None

    def read_once(self):
        with self.conn.cursor() as cursor:
            self.reads += 1
            cursor.execute(self.query)
            rows = cursor.fetchall()
        now = time.time()
        first = not self.read_done
        self.read_done.append(now)
        for job_id, version, written in rows:
            job = self.index[job_id]
            key = (job, version)
            if key not in self.updated:
                self.updated[key] = written.replace(tzinfo=UTC).timestamp()
                self.visible[key] = now
                if first:
                    self.at_start.add(key)
            last = self.last.get(job)
            if last is not None and version > last + 1:
                for skipped in range(last + 1, version):
                    self.missed.setdefault((job, skipped), now)
            if last is None or version > last:
                self.last[job] = version

    def loop(self):
        while self.running:
            started = time.monotonic()
            try:
                self.read_once()
            except pymysql.err.Error as error:
                name = type(error).__name__
                self.errors[name] = self.errors.get(name, 0) + 1
                gevent.sleep(0.2)
                with contextlib.suppress(pymysql.err.Error):
                    self.conn.ping(reconnect=True)
            gevent.sleep(max(0.001, self.period - (time.monotonic() - started)))

    def start(self):
        self.running = True
        self.read_once()  # the versions already there: their write times are known, not when they showed
        self.greenlet = gevent.spawn(self.loop)

    def catch_up(self, timeout=5.0):
        """Wait for a read that started after now: every event received so far has its version read
        (or missed)."""
        target = self.reads + 2
        deadline = time.monotonic() + timeout
        while self.running and self.reads < target and time.monotonic() < deadline:
            gevent.sleep(self.period / 2)

    def stop(self):
        self.running = False
        if self.greenlet is not None:
            self.greenlet.join(5)
        with contextlib.suppress(Exception):
            self.conn.close()

    def window(self, t0, t1):
        """How the reader did in [t0, t1]: its reads, their interval, the versions it missed."""
        done = [t for t in self.read_done if t0 <= t <= t1]
        gaps = [b - a for a, b in zip(done, done[1:], strict=False)]
        missed = sum(1 for at in self.missed.values() if t0 <= at <= t1)
        return {"reads": len(done), "interval_ms": dist_ms(gaps), "missed_versions": missed,
                "errors": dict(self.errors)}


# --- the SSE clients -----------------------------------------------------------------------------
class Client(sse_client.Client):
    __slots__ = ("recs", "version")

    def __init__(self, job):
        super().__init__(job)
        self.recs = []
        self.version = None


class Load(sse_client.Load):
    """Every client of one mode and their counters; the write times come from `reader` (RowReader)."""

    SAMPLE_EVERY, SAMPLES = 37, 400  # progress events kept for the per-field byte costs

    def __init__(self, mode, port, job_ids, reader, connect_timeout=60.0):
        super().__init__(port, [PATHS[mode].format(job_id) for job_id in job_ids], connect_timeout)
        self.mode = mode
        self.job_ids = job_ids
        self.reader = reader   # shared by the modes: same rows, same versions
        self.tolerance = 0.1  # a batch with more failed or stalled clients than this stops the ramp
        self.recording = False
        self.progress_events = 0
        self.progress_bytes = 0
        self.progress_bytes_max = 0
        self.progress_bytes_min = 1 << 30
        self.other_events = {}
        self.sample_event = None    # the first progress event of a processing job
        self.largest_event = None
        self.samples = []           # every SAMPLE_EVERY-th progress event, up to SAMPLES
        self.bad_ids = 0            # progress events whose id: line is missing or not an integer

    def on_event(self, c, text, now):
        if text.startswith(b"retry:"):
            return
        start = text.find(b"event: ")
        name = text[start + 7:text.find(b"\n", start)] if start >= 0 else b"message"
        if name != b"progress":
            key = name.decode(errors="replace")
            self.other_events[key] = self.other_events.get(key, 0) + 1
            if name != b"ping":
                c.done = True  # complete / error / timeout end the stream
            return
        size = len(text) + 2  # the blank line: the data line's own \n is in `text`, the 2nd \n here
        self.progress_events += 1
        self.progress_bytes += size
        if size > self.progress_bytes_max:
            self.progress_bytes_max = size
            self.largest_event = text
        self.progress_bytes_min = min(self.progress_bytes_min, size)
        if self.progress_events % self.SAMPLE_EVERY == 1 and len(self.samples) < self.SAMPLES:
            self.samples.append(text)
        if self.sample_event is None and b'"status":"processing"' in text:
            self.sample_event = text
        # the id: line is the job's version (a plain integer: the streams are opened without
        # ?include=output); the event's data is not read
        version = -1
        if text.startswith(b"id: "):
            with contextlib.suppress(ValueError):
                version = int(text[4:text.find(b"\n")])
        if version < 0:
            self.bad_ids += 1
        if c.state == CONNECTING:
            c.state = STREAMING  # the connect snapshot: not a live push, no delay recorded
        elif self.recording:
            c.recs.append((version, now))
        c.version = version

    # many clients ------------------------------------------------------------------------------
    def ramp(self, target, batch, batch_timeout, deadline):
        """Open clients up to `target` in batches, each waited for; stop at the first batch that
        fails or stalls. Returns what happened."""
        started = time.monotonic()
        stopped, trouble = None, []
        while len(self.clients) < target:
            if time.monotonic() > deadline:
                stopped = "time budget of the run"
                break
            opened = len(self.clients)
            new = [Client((opened + k) % len(self.job_ids)) for k in range(min(batch, target - opened))]
            failed, waiting, reasons = self.open_batch(new, batch_timeout)
            if failed or waiting:
                trouble.append(f"batch of {len(new)} up to {len(self.clients)}: {failed} failed, {waiting} "
                               f"without their first event after {batch_timeout:.0f} s "
                               f"({'; '.join(reasons)})")
                if failed + waiting > self.tolerance * len(new):
                    stopped = trouble[-1]
                    break
        return {"target": target, "opened": len(self.clients), "streaming": self.streaming(),
                "failed": sum(1 for c in self.clients if c.state in (FAILED, ENDED)),
                "seconds": round(time.monotonic() - started, 1), "stopped": stopped, "trouble": trouble}

    def start_recording(self):
        for c in self.clients:
            c.recs = []
        self.recording = True

    def stop_recording(self):
        self.recording = False

    def close_all(self, timeout=20):
        greenlets = [c.greenlet for c in self.clients if c.greenlet is not None]
        gevent.killall(greenlets, block=True, timeout=timeout)
        self.clients = []

    def judge(self, t0, t1, on_time):
        """Delays of the live events received in [t0, t1], and who was fed on time. The write time
        of (job, version) is the row's last_update_at as the reader saw it; an event of a version the
        reader missed (overwritten between two of its reads) is skipped and counted."""
        delays = []
        updated, missed = self.reader.updated, self.reader.missed
        skipped_missed = unknown = 0
        received = set()
        for c in self.clients:
            job = c.job
            for version, got in c.recs:
                key = (job, version)
                received.add(key)
                at = updated.get(key)
                if at is not None:
                    delays.append(got - at)
                elif key in missed:
                    skipped_missed += 1
                else:
                    unknown += 1
        # the writes judged: every version of a watched job the reader saw, written in [t0, t1 - on_time]
        watched = {c.job for c in self.clients}
        writes = {}
        for (job, version), at in updated.items():
            if t0 <= at <= t1 - on_time and job in watched:
                writes.setdefault(job, []).append((version, at))
        nobody = 0
        for job, job_writes in writes.items():
            job_writes.sort()
            nobody += sum(1 for version, _ in job_writes if (job, version) not in received)
        lagged = not_streaming = checked = 0
        for c in self.clients:
            if c.state != STREAMING:
                not_streaming += 1
                lagged += 1
                continue
            recs, i, late = c.recs, 0, False
            for version, at in writes.get(c.job, ()):
                while i < len(recs) and recs[i][0] < version:
                    i += 1
                checked += 1
                if i >= len(recs) or recs[i][1] > at + on_time:
                    late = True
                    break
            lagged += late
        n_writes = sum(len(w) for w in writes.values())
        return {"delay_ms": dist_ms(delays), "events": len(delays), "events_skipped_missed": skipped_missed,
                "events_without_write_time": unknown, "writes_judged": n_writes,
                "write_versions_nobody_got": nobody, "clients": len(self.clients),
                "clients_not_streaming": not_streaming, "clients_lagged": lagged,
                "lagged_fraction": round(lagged / len(self.clients), 4) if self.clients else None,
                "reader": self.reader.window(t0, t1)}

    def breakdown(self, t0, t1):
        """The delay split at the reader's first sight of each version: write -> visible in the
        database (commit latency, plus up to one read interval) -> the event at the client."""
        reader = self.reader
        visible = {k: t for k, t in reader.visible.items() if k not in reader.at_start}
        commit = [t - reader.updated[k] for k, t in visible.items() if t0 <= t <= t1]
        deliver = [got - visible[(c.job, v)] for c in self.clients for v, got in c.recs if (c.job, v) in visible]
        return {"poll_period_ms": reader.period * 1000, "write_to_visible_ms": dist_ms(commit),
                "visible_to_client_ms": dist_ms(deliver)}


# --- measuring -----------------------------------------------------------------------------------
class Sampler:
    """CPU, RSS, Com_select (and the baseline's own counters) at one moment."""

    def __init__(self, db, pids, reader=None):
        self.db = db
        self.pids = pids  # name -> pid (or a callable giving it)
        self.reader = reader

    def take(self, web):
        at, com_select = self.db.com_select()
        reader_reads = self.reader.reads if self.reader else 0
        pids = {name: (pid() if callable(pid) else pid) for name, pid in self.pids.items()}
        return {"t": at, "com_select": com_select, "reader_reads": reader_reads, "mono": time.monotonic(),
                "cpu": {name: proc_cpu(pid) for name, pid in pids.items()}, "machine": machine_cpu(),
                "web_rss_kb": proc_rss_kb(pids.get("web")), "bench_rss_kb": proc_rss_kb(os.getpid()),
                "web_pid": pids.get("web"), "stats": web.stats() if web else None}


def window_figures(s0, s1, idle_com_select):
    """Rates over the window between two samples. `reads_per_s` is the web process's own count of
    the SELECTs it sent (isolated from the rest of the server); `com_select_net_per_s` is the
    server-wide Com_select rate minus the no-watcher figure (the requirement's method, but it
    also moves with any other database on the server); the bench's own row reader's SELECTs are
    taken out of both (`reader_selects_per_s` says how many)."""
    wall = s1["t"] - s0["t"]
    own = s1["reader_reads"] - s0["reader_reads"]
    com = (s1["com_select"] - s0["com_select"] - own) / wall
    cpu, machine = cpu_pct(s0, s1, wall)
    others = round(machine - sum(cpu.values()), 1) if machine is not None else None
    out = {"seconds": round(wall, 2), "reads_per_s": None, "com_select_per_s": round(com, 1),
           "reader_selects_per_s": round(own / wall, 1),
           "com_select_net_per_s": round(com - idle_com_select, 1) if idle_com_select is not None else None,
           "cpu_pct_of_one_core": cpu,
           "machine_busy_pct_of_one_core": round(machine, 1) if machine is not None else None,
           "other_processes_pct_of_one_core": others,
           "web_rss_kb": s1["web_rss_kb"], "bench_rss_kb": s1["bench_rss_kb"]}
    b0, b1 = s0.get("stats"), s1.get("stats")
    if b0 and b1 and b1["at"] > b0["at"] and b0["pid"] == b1["pid"]:
        span = b1["at"] - b0["at"]
        out["reads_per_s"] = round((b1["selects"] - b0["selects"]) / span, 1)
        out["queries_per_s"] = round((b1["queries"] - b0["queries"]) / span, 1)
        out["db_connects_per_s"] = round((b1["connects"] - b0["connects"]) / span, 1)
        out["watcher_reads_per_s"] = round((b1["watcher_reads"] - b0["watcher_reads"]) / span, 1)
        if "baseline_reads" in b1:
            out["baseline_reads_per_s"] = round((b1["baseline_reads"] - b0["baseline_reads"]) / span, 1)
            out["baseline_read_errors"] = b1["baseline_read_errors"] - b0["baseline_read_errors"]
    if s0["web_pid"] != s1["web_pid"]:
        out["web_worker_restarted"] = [s0["web_pid"], s1["web_pid"]]
    return out


def measure(load, sampler, web, window, on_time, idle_com_select, breakdown=False):
    """One window at the current load: reads, delays, lag, CPU, memory."""
    events0 = load.progress_events
    s0 = sampler.take(web)
    load.start_recording()
    gevent.sleep(window)
    s1 = sampler.take(web)
    load.stop_recording()
    load.reader.catch_up()  # the versions of the last events received are read (or known missed)
    figures = window_figures(s0, s1, idle_com_select)
    figures.update(load.judge(s0["t"], s1["t"], on_time))
    if breakdown:
        figures["delay_breakdown"] = load.breakdown(s0["t"], s1["t"])
    events = load.progress_events - events0
    figures["events_per_s"] = round(events / figures["seconds"], 1)
    web_cpu = figures["cpu_pct_of_one_core"].get("web")
    if events and web_cpu is not None:
        figures["web_cpu_us_per_event"] = round(web_cpu / 100 * figures["seconds"] / events * 1e6, 1)
    return figures


def measure_idle(sampler, web, window):
    s0 = sampler.take(web)
    gevent.sleep(window)
    s1 = sampler.take(web)
    return window_figures(s0, s1, None)


def render_cost():
    """Microseconds to render one progress event from a fresh snapshot (the product's renderer; if
    it caches the frame on the snapshot, as webapp.web.live.rendered_once does, that is the cost per change)."""
    from webapp.web.streams import json_event as _json_event  # noqa: PLC0415 - only here, after the load phases
    snap = {"job_id": "x" * 32, "status": "processing", "phase": "generating", "progress": 45.3,
            "progress_is_estimate": False, "current_tokens": 230, "tokens_per_second": 49.47,
            "elapsed_time": 16200, "estimated_remaining": 20000, "prompt_tokens": None,
            "completion_tokens": None, "total_tokens": None, "queue_position": None, "version": 123,
            "timestamp": 1730491234, "last_update_at": "2026-11-21T08:13:39.523Z"}
    n = 20000
    fresh = [dict(snap) for _ in range(n)]
    started = time.perf_counter()
    for one in fresh:
        _json_event(one)
    once = (time.perf_counter() - started) / n * 1e6
    started = time.perf_counter()
    for _ in range(n):
        _json_event(snap)
    again = (time.perf_counter() - started) / n * 1e6
    return {"fresh_snapshot_us": round(once, 2), "same_snapshot_again_us": round(again, 2)}


def field_bytes(events):
    """What each field of the progress events' data costs (`"key":value,`), biggest first: over the
    events given (their text, str or bytes), in how many it was present and its mean/max bytes
    there. A field left out of some events (e.g. when null) just shows a smaller `present`."""
    sizes, n = {}, 0
    for event in events:
        text = event.decode(errors="replace") if isinstance(event, bytes) else event
        line = next((x for x in text.split("\n") if x.startswith("data: ")), None)
        try:
            data = json.loads(line[6:]) if line else None
        except ValueError:
            data = None
        if not isinstance(data, dict):
            continue
        n += 1
        for key, value in data.items():
            sizes.setdefault(key, []).append(len(json.dumps({key: value}, separators=(",", ":"))) - 1)
    out = {key: {"present": len(v), "mean": round(sum(v) / len(v), 1), "max": max(v)} for key, v in sizes.items()}
    return {"events": n, "fields": dict(sorted(out.items(), key=lambda item: -item[1]["mean"] * item[1]["present"]))}


# --- the run -------------------------------------------------------------------------------------
def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, about 2 minutes")
    parser.add_argument("--database-url", default=os.environ.get("SSE_BENCH_DATABASE_URL", DEFAULT_DB))
    parser.add_argument("--modes", default="ours,baseline")
    parser.add_argument("--ours-app", default=APPS["ours"],
                        help="what gunicorn serves for ours: the default adds only a SELECT counter and a "
                             "stats route to wsgi:app; 'wsgi:app' runs the product untouched (then only "
                             "Com_select counts)")
    parser.add_argument("--levels", help="watcher counts for the reads figure (default 1,100,1000,5000)")
    parser.add_argument("--delay-watchers", type=int, help="the level the delay target is judged at (2000)")
    parser.add_argument("--capacity", type=int, help="streams to ramp ours to (10000; 0 to skip)")
    parser.add_argument("--window", type=float, help="seconds per measurement window (10)")
    parser.add_argument("--settle", type=float, help="seconds between a ramp and its window (3)")
    parser.add_argument("--no-race-probe", dest="race_probe", action="store_false",
                        help="skip the probe of concurrent first subscribers (a fresh ours web process)")
    parser.add_argument("--probe-step", type=int,
                        help="streams between the short checks above the delay level (1000)")
    parser.add_argument("--probe-window", type=float, help="seconds per short check (4)")
    parser.add_argument("--no-breakdown", dest="breakdown", action="store_false",
                        help="skip splitting the delay at the delay level (at the 10 ms row reader's first "
                             "sight of each version)")
    parser.add_argument("--ours-share", type=float, default=0.55,
                        help="share of the time left that ours may use when other modes follow")
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--tps", type=float, default=50.0)
    parser.add_argument("--worker-concurrency", type=int, default=8)
    parser.add_argument("--progress-interval", type=float, default=0.5)
    parser.add_argument("--poll-interval", type=float, default=0.2, help="SSE_POLL_INTERVAL of both modes")
    parser.add_argument("--on-time", type=float, default=1.0,
                        help="seconds a write may take to reach a client")
    parser.add_argument("--batch", type=int, default=250, help="clients opened at once while ramping")
    parser.add_argument("--batch-timeout", type=float, default=30.0)
    parser.add_argument("--timeout", type=float, help="hard limit of the whole run, seconds (660)")
    args = parser.parse_args(argv)
    quick = {"levels": "1,100,500", "delay_watchers": 500, "capacity": 1500, "window": 3, "settle": 1,
             "timeout": 240, "probe_step": 500, "probe_window": 2.5}
    full = {"levels": "1,100,1000,5000", "delay_watchers": 2000, "capacity": 10000, "window": 8, "settle": 2,
            "timeout": 600, "probe_step": 1000, "probe_window": 4}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.levels = sorted({int(x) for x in args.levels.split(",") if x.strip()})
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for mode in args.modes:
        if mode not in PATHS:
            parser.error(f"unknown mode {mode!r}")
    return args


def start_jobs(web, args, updated_deadline):
    num_predict = min(32768, int(args.tps * (args.timeout + 60)))
    job_ids = []
    for i in range(args.jobs):
        response = requests.post(web.url + "/api/v1/ai/generation", timeout=20, json={
            "prompt": f"SSE benchmark job {i}: tell a long story.", "options": {"num_predict": num_predict}})
        response.raise_for_status()
        job_ids.append(response.json()["job_id"])
    while time.monotonic() < updated_deadline:
        states = [requests.get(f"{web.url}/api/v1/ai/generation/{job_id}/status", timeout=20).json()["job"]
                  for job_id in job_ids]
        if all(s["status"] == "processing" and s["current_tokens"] > 0 for s in states):
            return job_ids, num_predict
        gevent.sleep(0.5)
    raise RuntimeError(f"the jobs did not start streaming: {[s['status'] for s in states]}")


def run_mode(mode, args, db, job_ids, reader, log_dir, run_deadline, web=None):
    """Everything measured against one web process."""
    result = {"mode": mode, "levels": []}
    if web is None:
        web = Web(mode, args, log_dir)
        web.wait_up()
    result["app"] = web.app
    result["web_worker_pid"] = web.worker_pid
    sampler = Sampler(db, {"web": web.current_worker, "worker": WORKER_PID[0], "simulator": SIM_PID[0],
                           "mariadbd": MARIADB_PID[0], "bench": os.getpid()}, reader)
    load = Load(mode, web.port, job_ids, reader)
    try:
        # warm-up: the first streams load what a stream needs and start ours' watcher. One stream
        # first, alone: concurrent first subscribers can start several watchers (see watcher_race).
        load.ramp(1, 1, args.batch_timeout, run_deadline)
        load.ramp(10, 10, args.batch_timeout, run_deadline)
        gevent.sleep(1.0)
        load.close_all()
        gevent.sleep(1.5)  # the server notices the closed streams at its next write
        result["idle"] = measure_idle(sampler, web, args.window)
        idle_com_select = result["idle"]["com_select_per_s"]
        rss0 = proc_rss_kb(web.current_worker())
        result["web_rss_kb_no_streams"] = rss0
        print(f"[{mode}] idle: {idle_com_select} Com_select/s server-wide with the worker running and no "
              f"watcher ({result['idle']['reads_per_s']} SELECTs/s from the web process); "
              f"web worker RSS {rss0} kB; "
              f"other processes {result['idle']['other_processes_pct_of_one_core']} % of a core", flush=True)
        full = set(args.levels) | {args.delay_watchers}
        probes = set()
        if mode == "ours" and args.capacity:
            full.add(args.capacity)
            # short fed-on-time checks between the delay level and the capacity target
            probes = set(range(args.delay_watchers + args.probe_step, args.capacity, args.probe_step)) - full
        for n in sorted(full | probes):
            short = n in probes
            window, settle = (args.probe_window, args.settle / 2) if short else (args.window, args.settle)
            per_level_cost = settle + window + 15
            if time.monotonic() + per_level_cost > run_deadline:
                result["levels"].append({"watchers": n, "skipped": "time budget of the run"})
                continue
            before = web.stats()
            ramp = load.ramp(n, args.batch, args.batch_timeout, run_deadline - per_level_cost)
            after = web.stats()
            if before and after:
                span = after["at"] - before["at"]
                ramp["db_connects"] = after["connects"] - before["connects"]
                ramp["selects"] = after["selects"] - before["selects"]
                new = ramp["opened"] - before_opened(result)
                ramp["streams_per_s"] = round(new / span, 1) if span > 0 else None
            gevent.sleep(settle)
            figures = measure(load, sampler, web, window, args.on_time, idle_com_select,
                              breakdown=args.breakdown and n == args.delay_watchers and not ramp["stopped"])
            figures.update({"watchers": n, "ramp": ramp, "probe": short})
            if rss0 and figures["web_rss_kb"] and ramp["streaming"]:
                grown = figures["web_rss_kb"] - rss0
                figures["web_rss_kb_per_stream"] = round(grown / ramp["streaming"], 2)
            result["levels"].append(figures)
            delay = figures["delay_ms"] or {}
            print(f"[{mode}] {ramp['streaming']:>6}/{n} streams{' (probe)' if short else ''}: reads/s "
                  f"{figures['reads_per_s']} (Com_select net {figures['com_select_net_per_s']}), "
                  f"delay p50 {delay.get('p50')} p99 {delay.get('p99')} max {delay.get('max')} ms, "
                  f"lagged {figures['clients_lagged']}, web CPU {figures['cpu_pct_of_one_core']['web']} %, "
                  f"bench CPU {figures['cpu_pct_of_one_core']['bench']} %, "
                  f"others {figures['other_processes_pct_of_one_core']} %, RSS {figures['web_rss_kb']} kB; "
                  f"skipped events (version missed by the reader) {figures['events_skipped_missed']}, "
                  f"reader interval p99 {(figures['reader']['interval_ms'] or {}).get('p99')} ms"
                  + (f"  [ramp stopped: {ramp['stopped']}]" if ramp["stopped"] else
                     f"  [ramp trouble: {ramp['trouble'][-1]}]" if ramp["trouble"] else ""), flush=True)
            if "delay_breakdown" in figures:
                print(f"[{mode}] delay breakdown: {figures['delay_breakdown']}", flush=True)
            if ramp["stopped"]:
                result["stopped_at"] = {"watchers": ramp["streaming"], "why": ramp["stopped"]}
                break
    finally:
        result["events"] = {"progress": load.progress_events, "other": load.other_events,
                            "client_errors": load.errors}
        n = load.progress_events

        def as_text(event):
            return event.decode(errors="replace") + "\n\n" if event is not None else None
        result["bytes"] = {"progress_events": n, "mean": round(load.progress_bytes / n, 1) if n else None,
                           "max": load.progress_bytes_max if n else None,
                           "min": load.progress_bytes_min if n else None, "sample": as_text(load.sample_event),
                           "largest": as_text(load.largest_event),
                           "samples": [as_text(event) for event in load.samples],
                           "events_without_integer_id": load.bad_ids}
        load.close_all()
        gevent.sleep(0.5)
        result["web_exit"] = web.proc.stop(grace=25)
        marks = ("Error", "ERROR", "WORKER TIMEOUT")
        result["web_log_errors"] = [line for line in web.proc.log_tail(200000).splitlines()
                                    if any(mark in line for mark in marks)][-10:]
    return result


def before_opened(result):
    """Clients open before the current ramp (the last measured level's, or 0)."""
    done = [r["ramp"]["opened"] for r in result["levels"] if "ramp" in r]
    return done[-1] if done else 0


def write_phases(updated, interval):
    """Each job's write phase within the progress interval (ms), from its latest writes: when they
    bunch, every job changes in the same watcher tick and the fan-out comes as one burst."""
    latest = {}
    for (job, version), at in updated.items():
        if at is not None and (job not in latest or version > latest[job][0]):
            latest[job] = (version, at)
    return sorted(round((at % interval) * 1000) for _, at in latest.values())


def watcher_race(args, job_ids, reader, log_dir, clients=50, window=3.0, name="web-ours-race"):
    """A fresh `ours` whose first `clients` subscribers arrive at once: how many watcher loops run?
    One loop reads once per SSE_POLL_INTERVAL (8 jobs fit one query), so loops = reads/s x interval."""
    web = Web("ours", args, log_dir, name=name)
    try:
        web.wait_up()
        load = Load("ours", web.port, job_ids, reader)
        for i in range(clients):
            c = Client(i % len(job_ids))
            load.clients.append(c)
            c.greenlet = gevent.spawn(load.run_client, c)
        deadline = time.monotonic() + 30
        while any(c.state == CONNECTING for c in load.clients) and time.monotonic() < deadline:
            gevent.sleep(0.05)
        gevent.sleep(1.0)
        s0 = web.stats()
        gevent.sleep(window)
        s1 = web.stats()
        streaming = load.streaming()
        load.close_all()
        if not (s0 and s1):
            return {"error": "no stats (run ours with the default --ours-app)"}
        rate = (s1["watcher_reads"] - s0["watcher_reads"]) / (s1["at"] - s0["at"])
        return {"concurrent_first_subscribers": clients, "streams": streaming,
                "watcher_reads_per_s": round(rate, 1), "watcher_loops": round(rate * args.poll_interval, 1)}
    finally:
        web.proc.stop(grace=25)


WORKER_PID, SIM_PID, MARIADB_PID, READER = [None], [None], [None], [None]


def main(argv=None):
    args = parse_args(argv)
    started_at = datetime.now(UTC)
    stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    log_dir = RESULTS / f"sse-{stamp}-logs"
    log_dir.mkdir()
    nofile = benchlib.raise_nofile()
    run_deadline = time.monotonic() + args.timeout - 40  # room to stop everything and write the results

    out = RESULTS / f"sse-{stamp}.json"
    report = {}

    start_watchdog("sse_bench", args.timeout, Proc.stop_all, report, out)

    db = Db(args.database_url)
    machine = benchlib.machine_info(db.version(), nofile,
                           mem_total_mb=int(Path("/proc/meminfo").read_text().split()[1]) // 1024)
    report.update({"started_at": started_at.isoformat(timespec="seconds"), "machine": machine,
                   "config": {k: v for k, v in vars(args).items() if k != "database_url"}, "modes": {}})
    try:
        print(f"sse_bench: {benchlib.machine_line(machine)}; logs in {log_dir.relative_to(ROOT)}", flush=True)
        db.recreate()
        benchlib.migrate(args.database_url)
        sim_port = benchlib.free_port()
        sim = Proc("simulator", [sys.executable, "-m", "simulator", "--port", str(sim_port),
                                 "--tps", str(args.tps), "--load-delay", "0", "--quiet",
                                 # jobs must run their whole num_predict at one pace
                                 "--lengths", "fixed", "--speed-spread", "0"], {}, log_dir)
        SIM_PID[0] = sim.pid
        worker = Proc("worker", [sys.executable, "worker.py"],
                      {"DATABASE_URL": args.database_url, "OLLAMA_URL": f"http://127.0.0.1:{sim_port}",
                       "WORKER_CONCURRENCY": str(args.worker_concurrency),
                       "PROGRESS_INTERVAL": str(args.progress_interval), "SECRET_KEY": "sse-bench",
                       "SHUTDOWN_GRACE": "2"}, log_dir)
        WORKER_PID[0] = worker.pid
        MARIADB_PID[0] = (benchlib.pids_named("mariadbd", "mysqld") or [None])[0]
        first = Web(args.modes[0], args, log_dir)
        first.wait_up()
        job_ids, num_predict = start_jobs(first, args, time.monotonic() + 60)
        report["config"]["num_predict"] = num_predict
        print(f"sse_bench: {len(job_ids)} jobs streaming at {args.tps:g} tok/s, progress every "
              f"{args.progress_interval:g} s; SSE_POLL_INTERVAL {args.poll_interval:g} s", flush=True)
        reader = READER[0] = RowReader(db, job_ids)
        reader.start()
        if "ours" in args.modes and args.race_probe:
            attempts = [watcher_race(args, job_ids, reader, log_dir, name=f"web-ours-race{i + 1}")
                        for i in range(3)]
            loops = [a.get("watcher_loops") for a in attempts]
            report["watcher_race"] = {"attempts": attempts, "watcher_loops": loops, "expected_loops": 1}
            print(f"sse_bench: watcher start race, fresh ours with 50 first subscribers at once, 3 times: "
                  f"{loops} watcher loops polling (1 is the design)", flush=True)
        for i, mode in enumerate(args.modes):
            # ours (with its capacity ramp) gets a share of the time left, the modes after it the rest
            left = run_deadline - time.monotonic()
            share = args.ours_share if mode == "ours" and i < len(args.modes) - 1 else 1.0
            report["modes"][mode] = run_mode(mode, args, db, job_ids, reader, log_dir,
                                             time.monotonic() + left * share, web=first if i == 0 else None)
        report["write_phases_ms"] = write_phases(reader.updated, args.progress_interval)
        report["row_reader"] = {"period_ms": reader.period * 1000, "reads": reader.reads,
                                "versions_seen": len(reader.updated), "versions_missed": len(reader.missed),
                                "errors": reader.errors}
        reader.stop()
        report["idle_after"] = measure_idle(Sampler(db, {"bench": os.getpid()}), None, min(args.window, 5))
        report["jobs_still_processing"] = all(
            row[0] == "processing" for row in db.execute(
                f"SELECT status FROM `{db.name}`.ai_generation_jobs"))
        report["render_us_per_event"] = render_cost()
        samples = [event for m in report["modes"].values() for event in m["bytes"].pop("samples", [])]
        if samples:
            report["progress_event_field_bytes"] = field_bytes(samples)
        report["summary"] = summarize(report, args)
        report["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    finally:
        if READER[0] is not None:
            READER[0].stop()
        Proc.stop_all()
        out.write_text(json.dumps(report, indent=2, default=str))
    print_table(report, args)
    print(f"\nJSON: {out.relative_to(ROOT)}")
    return 0


# --- the report ----------------------------------------------------------------------------------
def level(report, mode, n):
    for row in report["modes"].get(mode, {}).get("levels", []):
        if row.get("watchers") == n and "skipped" not in row:
            return row
    return None


def summarize(report, args):
    out = {}
    ours = report["modes"].get("ours")
    if ours:
        one = level(report, "ours", 1)
        for key, name in (("reads_per_s", "reads_ratio_to_1_watcher"),
                          ("com_select_net_per_s", "com_select_net_ratio_to_1_watcher")):
            ratios = {}
            if one and one.get(key):
                for n in args.levels:
                    row = level(report, "ours", n)
                    if row and row.get(key) is not None:
                        ratios[n] = round(row[key] / one[key], 3)
            out[name] = ratios
        flat = out["reads_ratio_to_1_watcher"]
        out["reads_flat_within_10pct"] = bool(flat) and all(0.9 <= r <= 1.1 for r in flat.values())
        at = level(report, "ours", args.delay_watchers)
        out["delay_watchers"] = args.delay_watchers
        out["delay_p99_ms_at_target"] = at["delay_ms"]["p99"] if at and at["delay_ms"] else None
        p99 = out["delay_p99_ms_at_target"]
        out["delay_target_met"] = p99 is not None and p99 < 300
        rows = [r for r in ours["levels"] if "skipped" not in r]
        if rows:
            top = max(rows, key=lambda r: r["ramp"]["streaming"])
            fed = 0
            for r in sorted(rows, key=lambda r: r["ramp"]["streaming"]):
                if r["clients_lagged"]:
                    break
                fed = r["ramp"]["streaming"]
            kb = top.get("web_rss_kb_per_stream")
            out["capacity"] = {"streams": top["ramp"]["streaming"], "lagged_fraction": top["lagged_fraction"],
                               "delay_ms": top["delay_ms"],
                               "web_rss_KB_per_stream": round(kb * 1.024, 1) if kb else None,
                               "stopped": ours.get("stopped_at")}
            out["most_streams_all_fed_on_time"] = fed
            out["memory_target_met"] = kb is not None and kb * 1.024 < 50
            out["capacity_target_met"] = top["ramp"]["streaming"] >= 10000 and top["clients_lagged"] == 0
    means = [m["bytes"]["mean"] for m in report["modes"].values() if m["bytes"]["mean"]]
    if means:
        out["bytes_per_progress_event"] = max(means)
        out["bytes_target_met"] = max(means) < 200
    return out


def print_table(report, args):
    print("\nSSE benchmark: ours (one watcher per web process) vs baseline (one SELECT per client per "
          f"{args.poll_interval:g} s). reads/s: SELECTs the web process sent (its own count); Com_sel: "
          "server-wide Com_select minus the no-watcher figure; CPU in % of one core; KB/str: web worker "
          "RSS growth per open stream")
    head = (f"{'mode':<9}{'watchers':>9}{'streams':>8}{'reads/s':>9}{'Com_sel':>9}{'p50 ms':>8}{'p99 ms':>8}"
            f"{'max ms':>8}{'lagged':>8}{'ev/s':>8}{'conn/s':>7}{'web':>6}{'bench':>6}{'db':>5}{'other':>6}"
            f"{'RSS MB':>8}{'KB/str':>7}")
    print(head)
    print("-" * len(head))
    for mode, result in report["modes"].items():
        rows = ([dict(result["idle"], watchers=0, ramp={"streaming": 0}, delay_ms=None, lagged_fraction=None,
                      events_per_s=None)] if result.get("idle") else []) + result["levels"]
        for row in rows:
            if "skipped" in row:
                print(f"{mode:<9}{row['watchers']:>9}  skipped: {row['skipped']}")
                continue
            d = row["delay_ms"] or {}
            cpu = row["cpu_pct_of_one_core"]
            lag = f"{row['lagged_fraction'] * 100:.1f}%" if row.get("lagged_fraction") is not None else None
            kb = row.get("web_rss_kb_per_stream")
            print(f"{mode:<9}{row['watchers']:>9}{row['ramp']['streaming']:>8}{fmt(row['reads_per_s'], 9)}"
                  f"{fmt(row['com_select_net_per_s'], 9)}{fmt(d.get('p50'), 8)}{fmt(d.get('p99'), 8)}"
                  f"{fmt(d.get('max'), 8)}{fmt(lag, 8)}{fmt(row.get('events_per_s'), 8)}"
                  f"{fmt(row.get('db_connects_per_s'), 7)}{fmt(cpu.get('web'), 6)}{fmt(cpu.get('bench'), 6)}"
                  f"{fmt(cpu.get('mariadbd'), 5)}{fmt(row['other_processes_pct_of_one_core'], 6)}"
                  f"{fmt((row['web_rss_kb'] or 0) / 1024, 8, '.1f')}"
                  f"{fmt(kb * 1.024 if kb is not None else None, 7, '.1f')}")
        if result.get("stopped_at"):
            stop = result["stopped_at"]
            print(f"{'':<9}ramp stopped at {stop['watchers']} streams: {stop['why']}")
        b = result["bytes"]
        print(f"{'':<9}progress events received: {b['progress_events']}, bytes each: mean {b['mean']} "
              f"min {b['min']} max {b['max']}; client errors: {result['events']['client_errors'] or 'none'}")
        rows = [r for r in result["levels"] if "skipped" not in r]
        print(f"{'':<9}events without a write time: {sum(r['events_skipped_missed'] for r in rows)} skipped "
              f"(version overwritten between two reads of the 10 ms reader), "
              f"{sum(r['events_without_write_time'] for r in rows)} otherwise unknown; "
              f"{sum(r['events'] for r in rows)} timed")
    print(f"\nidle after the run: {report.get('idle_after', {}).get('com_select_per_s')} Com_select/s "
          f"server-wide; rendering one event: {report.get('render_us_per_event')}")
    print(f"write phases of the jobs within the {args.progress_interval:g} s progress interval (ms): "
          f"{report.get('write_phases_ms')}")
    for mode, result in report["modes"].items():
        for row in result["levels"]:
            if row.get("delay_breakdown"):
                b = row["delay_breakdown"]
                w, v = b["write_to_visible_ms"] or {}, b["visible_to_client_ms"] or {}
                gap = row["reader"]["interval_ms"] or {}
                print(f"{mode} at {row['watchers']} watchers: write -> visible in the database "
                      f"p50 {w.get('p50')} p99 {w.get('p99')} ms (reader's read interval p50 {gap.get('p50')} "
                      f"p99 {gap.get('p99')} ms); visible -> client "
                      f"p50 {v.get('p50')} p99 {v.get('p99')} max {v.get('max')} ms")
    if report.get("watcher_race"):
        print(f"watcher start race (a fresh ours, 50 first subscribers at once): "
              f"{report['watcher_race']['watcher_loops']} watcher loops polling (1 is the design)")
    fields = report.get("progress_event_field_bytes")
    if fields:
        print(f"bytes per field of the progress data (over {fields['events']} sampled events; present in n, "
              "mean): " + ", ".join(f"{key} {f['present']}x{f['mean']:g}" for key, f in fields["fields"].items()))
    if report.get("row_reader"):
        r = report["row_reader"]
        print(f"row reader (write times): {r['reads']} reads, {r['versions_seen']} versions seen, "
              f"{r['versions_missed']} missed, errors {r['errors'] or 'none'}")
    print("targets: " + json.dumps(report.get("summary", {}), default=str))


if __name__ == "__main__":
    sys.exit(main())
