"""Helpers for bench/output_bench.py, in two processes it starts (neither imports the other's side):

* the web app: `gunicorn -c gunicorn.conf.py 'bench.output_counters:web_app()'` is the product's
  `wsgi:app` plus bench/sse_counters.py's counters (SELECTs this process sent, connections,
  the watcher's own read count) and three more, `ticks` (watcher ticks run), `tick_seconds`
  (time spent in them), `selects_by_table` (SELECTs by the first table after FROM) and
  `selects_by_shape` (by their text from FROM on, literals as ?: the first 40 shapes), all under
  `GET /sse-bench/stats`. Counting costs a few microseconds per statement;
* the simulated Ollama with a send log: `python -m bench.output_counters --port P --log FILE
  [--tps 40 ...]` runs `simulator.Simulator` (the same class `python -m simulator` runs) and
  appends one line per chunk whose write has returned: `<request> <job> <chars> <thinking chars>
  <time.time()>`, where chars is the length in code points of the text sent so far (the
  simulator's `record.text`, updated just before the bytes are written) and job the number in
  the prompt ("... job 17: ..."). The log is flushed every half second and on SIGTERM. With
  `--gate N`, the generations of prompts naming a job wait (once the model is theirs, as behind
  one model load) until N of them have arrived, or --gate-timeout s: the jobs start together
  however long the worker takes to claim them all; `<request> <job> gate <arrived> <released>`
  lines say when.
"""
import argparse
import contextlib
import re
import signal
import sys
import threading
import time

JOB_IN_PROMPT = re.compile(r"\bjob (\d+)\b")
FROM_TABLE = re.compile(r"\bFROM\s+`?(\w+)`?", re.IGNORECASE)
LITERALS = re.compile(r"'(?:[^'\\]|\\.)*'|\b\d+(?:\.\d+)?\b")
TICKS = {"ticks": 0, "tick_seconds": 0.0, "selects_by_table": {}, "selects_by_shape": {}}
SHAPES = 40  # distinct statement shapes kept


def web_app():
    """gunicorn's app factory: `wsgi:app` with the counters (imported here, in the gevent-patched
    worker, never by the simulator's process)."""
    import pymysql.connections  # noqa: PLC0415 - only in the web process

    from bench.sse_counters import instrument  # noqa: PLC0415
    from webapp.web import watch  # noqa: PLC0415
    from wsgi import app  # noqa: PLC0415

    query = pymysql.connections.Connection.query  # already counted by bench/sse_counters.py
    by_table, by_shape = TICKS["selects_by_table"], TICKS["selects_by_shape"]

    def query_by_table(self, sql, unbuffered=False):
        text = sql if isinstance(sql, str) else sql.decode("utf-8", "replace")
        if text.lstrip()[:6].upper() == "SELECT":
            match = FROM_TABLE.search(text)
            table = match[1] if match else "(no table)"
            by_table[table] = by_table.get(table, 0) + 1
            # its shape: from FROM on, literals as ?, IN lists folded
            shape = re.sub(r"\?(?:, \?)+", "?, ...", LITERALS.sub("?", text[match.start() if match else 0:]))[:240]
            if shape in by_shape or len(by_shape) < SHAPES:
                by_shape[shape] = by_shape.get(shape, 0) + 1
        return query(self, sql, unbuffered)

    pymysql.connections.Connection.query = query_by_table

    tick = getattr(watch.Watcher, "tick", None)
    if tick is not None:
        def counted_tick(self, *args, **kwargs):
            started = time.perf_counter()
            try:
                return tick(self, *args, **kwargs)
            finally:
                TICKS["ticks"] += 1
                TICKS["tick_seconds"] += time.perf_counter() - started

        watch.Watcher.tick = counted_tick
    return instrument(app, TICKS)


class SendLog:
    """The simulator's `Recorder.flushed` hook: one line per chunk that changed the text."""

    def __init__(self, path):
        self.file = open(path, "w", buffering=1 << 20)
        self.lock = threading.Lock()
        self.requests = {}  # id(record) -> (request number, job)
        self.last = {}      # request number -> (chars, thinking chars) last logged

    def hook(self, recorder):
        flushed = recorder.flushed

        def logged(record):
            flushed(record)
            self.note(record, time.time())

        recorder.flushed = logged

    def note(self, record, now):
        with self.lock:
            known = self.requests.get(id(record))
            if known is None:
                match = JOB_IN_PROMPT.search(str((record.body or {}).get("prompt", "")))
                known = self.requests[id(record)] = (len(self.requests), int(match[1]) if match else -1)
            number, job = known
            sizes = (len(record.text), len(record.thinking))
            if self.last.get(number) != sizes:
                self.last[number] = sizes
                self.file.write(f"{number} {job} {sizes[0]} {sizes[1]} {now:.6f}\n")

    def flush(self):
        with self.lock:
            self.file.flush()

    def close(self):
        with self.lock:
            self.file.close()


    def gated(self, number, job, arrived, released):
        with self.lock:
            self.file.write(f"{number} {job} gate {arrived:.6f} {released:.6f}\n")


def gate_generations(sim, log, n, timeout):
    """Hold each job's generation until `n` have arrived (see the module's docstring)."""
    from simulator import session  # noqa: PLC0415 - the simulator's process only

    barrier = threading.Barrier(n)
    answer = session.Session._answer

    def gated_answer(self, ask):
        match = JOB_IN_PROMPT.search(str((self.record.body or {}).get("prompt", "")))
        if match:
            arrived = time.time()
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout)
            with log.lock:
                number = log.requests.setdefault(id(self.record), (len(log.requests), int(match[1])))[0]
            log.gated(number, int(match[1]), arrived, time.time())
        return answer(self, ask)

    session.Session._answer = gated_answer


def read_send_log(path):
    """({job: [(request number, chars, thinking chars, time), ...]} in the order sent,
    {job: (arrived, released)} of the gate)."""
    jobs, gate = {}, {}
    with open(path) as log:
        for line in log:
            parts = line.split()
            if len(parts) == 5 and parts[2] == "gate":
                gate[int(parts[1])] = (float(parts[3]), float(parts[4]))
            elif len(parts) == 5:
                jobs.setdefault(int(parts[1]), []).append(
                    (int(parts[0]), int(parts[2]), int(parts[3]), float(parts[4])))
    return jobs, gate


def simulator_main(argv=None):
    """The simulated Ollama with the send log, until SIGTERM or SIGINT."""
    from simulator.sim import Simulator  # noqa: PLC0415 - not needed by the web side

    parser = argparse.ArgumentParser(prog="python -m bench.output_counters", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True, help="the send log to write")
    parser.add_argument("--tps", type=float, default=40.0)
    parser.add_argument("--jitter", type=float, default=0.25, help="as python -m simulator's default")
    parser.add_argument("--speed-spread", type=float, default=0.0)
    parser.add_argument("--lengths", default="fixed")
    parser.add_argument("--gate", type=int, default=0, help="start the jobs' generations together, N of them")
    parser.add_argument("--gate-timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    sim = Simulator(tokens_per_second=args.tps, jitter=args.jitter, load_delay=0.0, port=args.port,
                    lengths=args.lengths, speed_spread=args.speed_spread)
    log = SendLog(args.log)
    log.hook(sim.recorder)
    if args.gate > 1:
        gate_generations(sim, log, args.gate, args.gate_timeout)
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    sim.start()
    print(f"simulated Ollama with a send log listening on {sim.url}", flush=True)
    while not done.wait(0.5):
        log.flush()
    sim.stop()
    log.close()
    return 0


if __name__ == "__main__":
    sys.exit(simulator_main())
