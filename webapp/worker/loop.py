"""The worker loop: claims jobs up to WORKER_CONCURRENCY, sweeps expired leases, stops gracefully."""
import logging
import os
import socket
import threading
import time
import uuid
from datetime import timedelta

from sqlalchemy.exc import SQLAlchemyError

from webapp import output, queue, ratelimits, retention
from webapp.extensions import discard_session
from webapp.models import utcnow
from webapp.webhooks import outbox
from webapp.worker import metrics
from webapp.worker.deliveries import Sender
from webapp.worker.run import Run

log = logging.getLogger(__name__)
IDLE_POLL = 0.5       # seconds between claim attempts when the queue is empty
SWEEP_EVERY = 5.0     # seconds between sweeps for jobs whose lease ran out
PRUNE_EVERY = 60.0    # seconds between clear-outs: text pieces the rows hold, rate windows, settled webhooks
# Seconds after the grace for aborted jobs to be released: 20 s grace + 5 s stays under the
# 30 s after which a PaaS kills the process.
RELEASE_WAIT = 5.0


def new_worker_id():
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    """Runs up to `concurrency` jobs at once, each in its own thread (a greenlet under gevent)."""

    def __init__(self, app, concurrency=None, worker_id=None, grace=None):
        self.app = app
        self.concurrency = concurrency or app.config["WORKER_CONCURRENCY"]
        self.worker_id = worker_id or new_worker_id()
        # SIGTERM: time running jobs get before they are released (a PaaS kills at 30 s).
        self.grace = app.config["SHUTDOWN_GRACE"] if grace is None else grace
        self.running = {}  # job pk -> (Run, thread)
        self.stopping = threading.Event()
        self.wake = threading.Event()  # a slot came free, or stop() was called
        self.last_sweep = 0.0
        self.last_prune = 0.0
        self.webhooks = Sender(app)
        metrics.INFO.labels(self.worker_id).set(1)
        metrics.SLOTS.set(self.concurrency)
        metrics.RUNNING.set_function(lambda: len(self.running))  # read when scraped

    def serve(self):
        """Claim and run until `stop()`; then drain, release leftovers and return."""
        log.info("worker %s: up to %d jobs at once", self.worker_id, self.concurrency)
        self.webhooks.start()
        while not self.stopping.is_set():
            self._reap()
            self._maybe_sweep()
            if len(self.running) >= self.concurrency or not self._claim_one():
                self.wake.wait(IDLE_POLL)  # a finished job wakes us at once: no idle slot waits
                self.wake.clear()
        self._drain()

    def stop(self, *_signal):
        if self.stopping.is_set():
            log.info("worker %s: already stopping (a second SIGTERM is not a kill)", self.worker_id)
        else:
            log.info("worker %s: stopping: no new jobs; running ones have %s s to finish", self.worker_id,
                     self.grace)
        self.stopping.set()
        self.wake.set()

    def _claim_one(self):
        with self.app.app_context():
            try:
                with metrics.CLAIM.time():
                    job = queue.claim(self.worker_id, self.app.config["LEASE_SECONDS"])
                run = job and Run(self.app, job, self.worker_id)
            except SQLAlchemyError as error:
                log.warning("claim failed, database error: %s", error)
                return False
            finally:
                discard_session()
        if not run:
            return False
        thread = threading.Thread(target=self._run, args=(run,), name=f"job-{run.pk}", daemon=True)
        self.running[run.pk] = (run, thread)
        thread.start()
        return True

    def _run(self, run):
        try:
            run.run()
        except Exception:  # a bug must not take the worker down; the lease recovers the job
            log.exception("job %s crashed", run.pk)
        finally:
            self.wake.set()

    def _reap(self):
        for pk, (_run, thread) in list(self.running.items()):
            if not thread.is_alive():
                del self.running[pk]

    def _maybe_sweep(self):
        if time.monotonic() - self.last_sweep < SWEEP_EVERY:
            return
        self.last_sweep = time.monotonic()
        with self.app.app_context():
            try:
                changed = queue.recover_expired(self.app.config["MAX_ATTEMPTS"])
                if changed:
                    log.warning("recovered %d job(s) whose worker stopped renewing its lease", changed)
                if time.monotonic() - self.last_prune >= PRUNE_EVERY:
                    self.last_prune = time.monotonic()
                    output.prune()
                    ratelimits.prune()
                    outbox.prune(utcnow() - timedelta(days=self.app.config["WEBHOOK_KEEP_DAYS"]))
                    if self.app.config["JOB_RETENTION_DAYS"] > 0:
                        retention.purge(self.app.config["JOB_RETENTION_DAYS"])
            except SQLAlchemyError as error:
                log.warning("sweep failed, database error: %s", error)
            finally:
                discard_session()

    def _drain(self):
        """Let running jobs finish within the grace period, then give the rest back to the
        queue, all within one deadline. A job whose thread is blocked on a model load is
        released from here (see Run.shut_down): its thread is not waited for."""
        self._join(self.running.values(), time.monotonic() + self.grace)
        deadline = time.monotonic() + RELEASE_WAIT
        releasing = []
        for run, thread in list(self.running.values()):
            if thread.is_alive():
                log.info("job %s: grace period over; releasing it to the queue", run.pk)
                if not run.shut_down(give_up_at=deadline):
                    releasing.append((run, thread))
        self._join(releasing, deadline)
        self.webhooks.stop(max(0.0, deadline - time.monotonic()))
        log.info("worker %s: stopped", self.worker_id)

    @staticmethod
    def _join(runs, deadline):
        for _run, thread in list(runs):
            thread.join(max(0.0, deadline - time.monotonic()))
