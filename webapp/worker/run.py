"""Runs one claimed job: streams it from Ollama, writes fenced progress, finishes it or retries it."""
import logging
import random
import threading
import time

from sqlalchemy.exc import SQLAlchemyError

from webapp import queue, statuses
from webapp.extensions import db
from webapp.ollama import Generation, OllamaError
from webapp.progress import Meter, estimate_tokens, expected_tokens, final_speed

log = logging.getLogger(__name__)
BACKOFF_BASE = 2.0
BACKOFF_CAP = 600.0


def backoff(attempt, base=BACKOFF_BASE, cap=BACKOFF_CAP, rand=random.uniform):
    """Full jitter (as Celery's retry_jitter): anywhere from 0 to min(cap, base * 2**attempt)."""
    return rand(0, min(cap, base * 2 ** attempt))


class Run:
    """One job from claim to final write. The stream is read here; a ticker thread writes."""

    def __init__(self, app, job, worker_id, clock=time.monotonic):
        self.app, self.worker_id, self.clock = app, worker_id, clock
        self.pk, self.model, self.attempts = job.id, job.model, job.attempts
        self.body = {"model": job.model, "prompt": job.prompt, "options": job.options or {},
                     "stream": True, **({"system": job.system} if job.system else {})}
        self.config = app.config
        num_predict = (job.options or {}).get("num_predict")
        expected, source = expected_tokens(num_predict, queue.completion_history(job.model))
        self.expected_fields = {"expected_tokens": expected,
                                "progress_is_estimate": source != "num_predict"}
        self.meter = Meter(started=clock(), expected=expected,
                           limit=num_predict if source == "num_predict" else None)
        self.text, self.phase = [], "waiting_model"
        self.lock = threading.Lock()
        self.wake = threading.Event()  # the first token, or the end: write without waiting
        self.ticking = True
        self.stop_reason = None  # "cancelled", "lost" or "shutdown"
        self.generation = Generation(self.config["OLLAMA_URL"], self.body,
                                     read_timeout=self.config["OLLAMA_READ_TIMEOUT"])

    # --- the stream (this thread) -------------------------------------------------------------
    def run(self):
        ticker = threading.Thread(target=self._tick_loop, name=f"ticker-{self.pk}", daemon=True)
        ticker.start()
        try:
            final = self._stream()
        except OllamaError as error:
            final = error
        finally:
            self.ticking = False
            self.wake.set()
        ticker.join()
        self._finish(final)

    def _stream(self):
        for chunk in self.generation:
            piece, thought = chunk.get("response") or "", chunk.get("thinking") or ""
            with self.lock:
                self.text.append(piece)
                first = self.meter.first_token_at is None
                self.meter.add(estimate_tokens(piece) + estimate_tokens(thought), self.clock())
                self.phase = "generating" if piece or self.phase == "generating" else (
                    "thinking" if thought else self.phase)
            if first and self.meter.first_token_at is not None:
                self.wake.set()  # the first token is shown at once, not at the next tick
            if chunk.get("done"):
                self.phase = "saving"
                return chunk
        return None  # closed by us: cancelled, lost or shut down

    # --- the ticker (its own thread) ----------------------------------------------------------
    def _tick_loop(self):
        """A write every PROGRESS_INTERVAL (it renews the lease, during a model load too), and
        one at once when the first token arrives. The claim was the job's first write. The
        cadence counts from the start of each write, so slow writes do not stretch it."""
        interval = self.config["PROGRESS_INTERVAL"]
        extra = self.expected_fields
        last = time.monotonic()
        with self.app.app_context():
            while True:
                self.wake.wait(max(0.0, last + interval - time.monotonic()))
                self.wake.clear()
                if not self.ticking:
                    return
                last = time.monotonic()
                if self._write_progress(extra):
                    extra = {}

    def _write_progress(self, extra):
        """One fenced write; False when the database did not take it."""
        with self.lock:
            fields = {**self.meter.sample(self.clock()), "phase": self.phase, **extra}
        try:
            ours = queue.heartbeat(self.pk, self.worker_id, self.config["LEASE_SECONDS"], **fields)
            if not ours and self.ticking:
                self._stop(queue.cancel_requested(self.pk))
        except SQLAlchemyError as error:
            db.session.rollback()
            log.warning("job %s: progress write skipped, database error: %s", self.pk, error)
            return False
        return True

    def _stop(self, cancelled):
        """The job is no longer ours to run: cancelled, or taken by the sweep or another worker."""
        self.stop_reason = "cancelled" if cancelled else "lost"
        log.info("job %s: %s; closing the Ollama stream", self.pk, self.stop_reason)
        loading = self.generation.waiting_for_headers
        self.abort()
        if cancelled and loading:
            # Ollama sends nothing until the model is loaded, which can take minutes: say
            # "cancelled" now; the stream is closed the moment its headers arrive.
            self._write_final(queue.finish, statuses.CANCELLED, error_message="Cancelled while the model was loading.")

    def abort(self, reason=None):
        """Stop the generation (from any thread): closing the response stops Ollama too."""
        self.stop_reason = self.stop_reason or reason
        self.ticking = False
        self.wake.set()
        self.generation.close()

    # --- the end ---------------------------------------------------------------------------------
    def _finish(self, final):
        with self.app.app_context():
            if isinstance(final, dict):  # done: a cancel or shutdown that came as it ended loses
                self._write_final(queue.finish, statuses.COMPLETED, **self._completed(final))
            elif self.stop_reason == "cancelled":
                self._write_final(queue.finish, statuses.CANCELLED, error_message="Cancelled while generating.",
                                  **self._partial())
            elif self.stop_reason == "shutdown":
                self._write_final(queue.release)
            elif self.stop_reason == "lost":
                log.warning("job %s was taken from this worker; dropping it", self.pk)
            elif isinstance(final, OllamaError):
                self._failed(final)

    def _partial(self):
        with self.lock:
            return {"result": "".join(self.text), **self.meter.sample(self.clock())}

    def _completed(self, final):
        with self.lock:
            text = "".join(self.text)
            live = self.meter.sample(self.clock())
        prompt_tokens = final.get("prompt_eval_count", 0)  # omitted when zero (OLLAMA.md §1)
        completion = final.get("eval_count", 0) or live["current_tokens"]
        speed = final_speed(final.get("eval_count"), final.get("eval_duration"))
        return {"result": text, "current_tokens": completion, "completion_tokens": completion,
                "prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + completion,
                "tokens_per_second": speed if speed is not None else live["tokens_per_second"],
                "elapsed_time": live["elapsed_time"], "estimated_time_remaining": 0,
                "progress_percentage": 100.0, "error_message": None}

    def _failed(self, error):
        max_attempts = self.config["MAX_ATTEMPTS"]
        if error.retryable and self.attempts < max_attempts:
            delay = backoff(self.attempts)
            message = (f"{error} Trying again in {delay:.0f} s "
                       f"(attempt {self.attempts + 1} of {max_attempts}).")
            self._write_final(queue.retry_later, delay, message)
        else:
            tries = f" (tried {self.attempts} times)" if error.retryable else ""
            self._write_final(queue.finish, statuses.FAILED, error_message=f"{error}{tries}", **self._partial())

    def _write_final(self, write, *args, **fields):
        """The last write is retried until it lands: a database blink must not lose the text."""
        delay = 0.25
        while True:
            try:
                landed = write(self.pk, self.worker_id, *args, **fields)
                if not landed:
                    log.warning("job %s: final write found the job no longer ours", self.pk)
                return landed
            except SQLAlchemyError as error:
                db.session.rollback()
                log.warning("job %s: final write failed (%s); retrying in %.1f s", self.pk, error, delay)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)  # land soon after the database is back
