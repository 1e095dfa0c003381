"""The in-process Simulator: configuration, start/stop, faults and the records tests inspect."""

import itertools
import math
import threading
import time

from simulator import catalog, generation
from simulator.faults import FaultSwitch
from simulator.records import Recorder
from simulator.scheduler import DEFAULT_KEEP_ALIVE, Scheduler
from simulator.server import Server

_FOREVER = "2318-01-01T00:00:00Z"  # roughly what "never expires" looks like in /api/ps
LENGTHS = ("fixed", "realistic")
_REALISTIC_SPEED_SPREAD = 0.2


class Simulator:
    """A fake Ollama on a local port, served from daemon threads; see OLLAMA.md for the wire format."""

    def __init__(self, tokens_per_second=50.0, jitter=0.2, load_delay=0.0, prompt_eval_rate=2000.0,
                 models=("llama3.2", "qwen2.5:0.5b", "deepseek-r1:1.5b"), default_tokens=None, seed=0,
                 stall_seconds=3600.0, host="127.0.0.1", port=0, lengths="fixed", speed_spread=None,
                 keep_alive=DEFAULT_KEEP_ALIVE):
        """lengths "fixed": num_predict tokens exactly when set, else default_tokens or 20-80 by prompt
        (what most tests want). "realistic": lognormal per-model lengths shifted by prompt hints,
        cut by num_predict (see lengths.py); default_tokens is then unused.

        speed_spread: each request's speed is tokens_per_second times a uniform draw in
        1 ± speed_spread; None means 0.2 for realistic lengths and 0 (a steady speed) for fixed.
        load_delay: seconds per cold load, or a (low, high) range drawn per load.
        keep_alive: seconds a model stays loaded when a request does not say (negative: forever).
        """
        if lengths not in LENGTHS:
            raise ValueError(f"lengths must be one of {LENGTHS}, not {lengths!r}")
        self.tokens_per_second = tokens_per_second
        self.jitter = jitter
        self.prompt_eval_rate = prompt_eval_rate
        self.models = tuple(models)
        self.default_tokens = default_tokens
        self.seed = seed
        self.stall_seconds = stall_seconds
        self.lengths = lengths
        if speed_spread is None:
            speed_spread = _REALISTIC_SPEED_SPREAD if lengths == "realistic" else 0.0
        self.speed_spread = speed_spread
        self.host = host
        self.port = port
        self.log_requests = False
        self.script = None  # a list of chunk texts: every answer is exactly these (tests of odd text)
        self.stopping = threading.Event()
        self.recorder = Recorder()
        self.faults = FaultSwitch()
        self.scheduler = Scheduler(load_delay, keep_alive, seed)
        self._keys = {catalog.key(name): name for name in self.models}
        self._draws = itertools.count()
        self._draws_lock = threading.Lock()
        self._httpd = None
        self._thread = None

    def start(self):
        """Bind (port 0 picks a free port) and serve in a daemon thread; returns self."""
        if self._httpd is None:
            self._httpd = Server((self.host, self.port), self)
            self.port = self._httpd.server_address[1]
            self._thread = threading.Thread(target=self._httpd.serve, name=f"simulator-{self.port}",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout=5.0):
        """Stop serving, end in-flight streams (stalls included) and wait for their threads."""
        if self._httpd is None or self.stopping.is_set():
            return  # never started, or already stopped
        self.stopping.set()
        self._httpd.wake()
        self._thread.join(timeout)
        self._httpd.server_close()
        self._httpd.close_connections(timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    @property
    def url(self):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def load_delay(self):
        return self.scheduler.load_delay

    @load_delay.setter
    def load_delay(self, seconds):
        self.scheduler.load_delay = seconds

    @property
    def keep_alive(self):
        return self.scheduler.keep_alive

    @keep_alive.setter
    def keep_alive(self, seconds):
        self.scheduler.keep_alive = seconds

    def next_draw(self):
        """How many generations drew their length and speed before this one: a repeated prompt
        varies from one request to the next, yet a sequential run repeats exactly."""
        with self._draws_lock:
            return next(self._draws)

    def set_fault(self, fault, times=None):
        """Fault for the following generate/chat requests; times=N limits it to the next N."""
        self.faults.set(fault, times)

    @property
    def requests(self):
        """A snapshot copy of every generate/chat RequestRecord so far."""
        return self.recorder.snapshot()

    def wait_for_requests(self, n, timeout=5.0):
        """Block until at least n records exist and return them (TimeoutError otherwise)."""
        return self.recorder.wait_for(lambda records: len(records) >= n, timeout)

    def wait_for(self, predicate, timeout=5.0):
        """Block until predicate(records) holds and return a snapshot (TimeoutError otherwise)."""
        return self.recorder.wait_for(predicate, timeout)

    def has_model(self, name):
        """True when name (with or without :latest) is one of the simulator's models."""
        return bool(name) and catalog.key(name) in self._keys

    def loaded_models(self):
        """The /api/ps list."""
        entries = []
        for key, left in self.scheduler.loaded().items():
            expires = _FOREVER if math.isinf(left) else generation.created_at(int((time.time() + left) * 1e9))
            entries.append(catalog.ps_entry(self._keys.get(key, key), expires))
        return entries
