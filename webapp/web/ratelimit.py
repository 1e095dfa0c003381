"""A small per-address limit on job creation (per process: a guard, not a quota system)."""
import threading
import time


class RateLimiter:
    """At most `per_minute` hits per key in each 60-second window."""

    def __init__(self, per_minute, clock=time.monotonic):
        self.per_minute = per_minute
        self.clock = clock
        self.windows = {}
        self.lock = threading.Lock()

    def hit(self, key):
        """Count a hit; returns seconds to wait when over the limit, else 0."""
        if self.per_minute <= 0:
            return 0
        now = self.clock()
        with self.lock:
            start, count = self.windows.get(key, (now, 0))
            if now - start >= 60:
                start, count = now, 0
            if count >= self.per_minute:
                return int(60 - (now - start)) + 1
            self.windows[key] = (start, count + 1)
            if len(self.windows) > 10_000:  # forget old windows rather than grow without bound
                self.windows = {k: v for k, v in self.windows.items() if now - v[0] < 60}
            return 0


def init_app(app):
    app.extensions["livegen.ratelimit"] = RateLimiter(app.config["RATE_LIMIT_PER_MINUTE"])
