"""Which models are loaded and until when: the cold-load wait and keep_alive expiry."""

import math
import random
import threading
import time

from simulator.faults import LOAD_FAIL
from simulator.gojson import RequestError

DEFAULT_KEEP_ALIVE = 300.0  # OLLAMA_KEEP_ALIVE's default, 5m


class Scheduler:
    """Tracks loaded models by catalog key; one load at a time per model, like Ollama's runner.

    load_delay is the seconds a cold load takes, or a (low, high) range drawn from per load (seeded,
    so a run's loads repeat). keep_alive is the server default (OLLAMA_KEEP_ALIVE), negative = forever.
    clock is the time source; tests may swap it to jump past a keep_alive without sleeping.
    """

    def __init__(self, load_delay, keep_alive=DEFAULT_KEEP_ALIVE, seed=0):
        self.load_delay = load_delay
        self.keep_alive = keep_alive
        self.clock = time.monotonic
        self._rng = random.Random(f"load\x00{seed}")
        self._lock = threading.Lock()
        self._load_locks = {}
        self._expires = {}  # key -> clock() deadline (math.inf while in use or forever)
        self._keep_alive = {}  # key -> seconds last asked for, reused when a request omits it

    def acquire(self, key, pause, fail=False):
        """Make sure the model is loaded; pause(seconds) does the waiting (and may raise).

        fail=True plays a load that times out: the model ends up unloaded, even if it was warm.
        """
        with self._load_lock(key):
            if fail:
                self.unload(key)
                pause(self.load_time())
                raise RequestError(500, LOAD_FAIL)
            if not self.is_loaded(key):
                pause(self.load_time())
            self._set_expiry(key, math.inf)  # in use: never expires mid-request

    def load_time(self):
        """Seconds the next cold load takes: load_delay, or a draw from its (low, high) range."""
        if not isinstance(self.load_delay, (tuple, list)):
            return self.load_delay
        low, high = self.load_delay
        with self._lock:
            return self._rng.uniform(low, high)

    def release(self, key, keep_alive):
        """A request finished: start the keep_alive clock (0 unloads now)."""
        with self._lock:
            seconds = keep_alive if keep_alive is not None else self._keep_alive.get(key, self.keep_alive)
            self._keep_alive[key] = seconds
            if seconds == 0:
                self._expires.pop(key, None)
            else:
                self._expires[key] = math.inf if seconds < 0 else self.clock() + seconds

    def unload(self, key):
        """Drop a model at once (a load-only request with keep_alive 0)."""
        with self._lock:
            self._expires.pop(key, None)

    def is_loaded(self, key):
        """True while the model is in memory."""
        with self._lock:
            return self._expires.get(key, 0) > self.clock()

    def loaded(self):
        """{key: seconds until expiry} for every loaded model (inf = never)."""
        with self._lock:
            now = self.clock()
            return {key: deadline - now for key, deadline in self._expires.items() if deadline > now}

    def _set_expiry(self, key, deadline):
        with self._lock:
            self._expires[key] = deadline

    def _load_lock(self, key):
        with self._lock:
            return self._load_locks.setdefault(key, threading.Lock())
