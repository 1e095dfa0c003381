"""Runs one claimed job: streams it from Ollama, writes fenced progress, finishes it or retries it."""
import logging
import math
import random
import threading
import time

from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from webapp import history, output, queue, statuses
from webapp.estimates import prompt_kind
from webapp.extensions import db
from webapp.ollama import Generation, OllamaError, model_is_loaded
from webapp.progress import Meter, estimate_tokens, final_speed, prompt_tokens_guess
from webapp.webhooks import outbox
from webapp.worker import metrics
from webapp.worker.transcript import Transcript

log = logging.getLogger(__name__)
BACKOFF_BASE = 2.0
BACKOFF_CAP = 600.0
LOG_EVERY = 5.0  # seconds between a running job's progress lines in the worker's log


def backoff(attempt, base=BACKOFF_BASE, cap=BACKOFF_CAP, rand=random.uniform):
    """Full jitter (as Celery's retry_jitter): anywhere from 0 to min(cap, base * 2**attempt)."""
    return rand(0, min(cap, base * 2 ** attempt))


def learned_from(final, cold):
    """What later estimates learn from Ollama's final chunk (durations are nanoseconds, and
    omitted when zero: OLLAMA.md section 1)."""
    return {"done_reason": final.get("done_reason") or None, "cold_start": cold,
            "load_ms": int(final.get("load_duration") or 0) // 1_000_000,
            "prompt_eval_ms": int(final.get("prompt_eval_duration") or 0) // 1_000_000}


class Run:
    """One job from claim to final write. The stream is read here; a ticker thread writes."""

    def __init__(self, app, job, worker_id, clock=time.monotonic, rand=random.uniform):
        self.app, self.worker_id, self.clock = app, worker_id, clock
        self.rand = rand  # the back-off's random draw
        self.pk, self.model, self.attempts, self.run_number = job.id, job.model, job.attempts, job.runs
        self.body = {"model": job.model, "prompt": job.prompt, "options": job.options or {},
                     "stream": True, **({"system": job.system} if job.system else {})}
        self.config = app.config
        self.tells_output = outbox.wants(job, "output")  # its webhook asked for the text as it comes
        num_predict = (job.options or {}).get("num_predict")
        self.meter = Meter(started=clock(), history=history.learned(job.model),
                           kind=job.prompt_kind or prompt_kind(job.prompt, job.system),
                           limit=num_predict if num_predict and num_predict > 0 else None,
                           prompt_tokens=prompt_tokens_guess(job.prompt, job.system))
        # Even with num_predict the length is a guess: most answers end before the limit.
        self.expected_fields = {"progress_is_estimate": True}
        self.text, self.thinking_tokens, self.phase = Transcript(), 0, "waiting_model"
        self.lock = threading.Lock()
        self.wake = threading.Event()  # the first token, or the end: write without waiting
        self.ticking = True
        self.stop_reason = None  # "cancelled", "lost" or "shutdown"
        self.ended = False  # the final write is done (by the drain or a cancel, if the model loads)
        self.logged_at = self.meter.started
        self.generation = Generation(self.config["OLLAMA_URL"], self.body,
                                     read_timeout=self.config["OLLAMA_READ_TIMEOUT"])

    # --- the stream (this thread) -------------------------------------------------------------
    def run(self):
        # Asked here, in the run's own thread: a slow Ollama must not hold up the claim loop.
        self.meter.cold = not model_is_loaded(self.config["OLLAMA_URL"], self.model)
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
            piece = output.storable(chunk.get("response") or "")
            thought = output.storable(chunk.get("thinking") or "")
            with self.lock:
                self.text.add("text", piece)
                self.text.add("thinking", thought)
                self.thinking_tokens += estimate_tokens(thought)
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
        """A write at once (the time left while the model loads, learned, shows from the start),
        then every PROGRESS_INTERVAL (it renews the lease, during a model load too), and one at
        once when the first token arrives. The cadence counts from the start of each write, so
        slow writes do not stretch it."""
        interval = self.config["PROGRESS_INTERVAL"]
        extra = self.expected_fields
        last = time.monotonic() - interval
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
        """One fenced write, with the text that is new since the last one; False when the
        database did not take it (the text then goes with the next write)."""
        try:
            if not self.meter.history:  # the model's first jobs: learn as soon as one has ended
                self.meter.history = history.learned(self.model)
            with self.lock:
                fields = {**self.meter.sample(self.clock()), "phase": self.phase, **extra,
                          "thinking_tokens": self.thinking_tokens}
                new, taken = self.text.unwritten()
            self._log_progress(fields)
            started = time.monotonic()
            ours = queue.heartbeat(self.pk, self.worker_id, self.config["LEASE_SECONDS"],
                                   pieces=output.pieces(self.pk, self.run_number, new),
                                   tell_output=self.tells_output and bool(new["text"][1]), **fields,
                                   output_latest=output.latest(new), **self.text.chars(new))
            metrics.PROGRESS_WRITE.observe(time.monotonic() - started)
            if ours:
                with self.lock:
                    self.text.landed(new, taken)
            elif self.ticking:
                self._stop(queue.cancel_requested(self.pk))
        except SQLAlchemyError as error:
            db.session.rollback()
            metrics.PROGRESS_SKIPPED.inc()
            log.warning("job %s: progress write skipped, database error: %s", self.pk, error)
            return False
        return True

    def _log_progress(self, fields):
        """A line every LOG_EVERY seconds (on the run's clock): someone tailing the worker's log
        sees each job move, or sit waiting for its model."""
        now = self.clock()
        if now - self.logged_at < LOG_EVERY:
            return
        self.logged_at = now
        log.info("job %s: %d tokens | %.1f tok/s | %.0f%% | %.1f s elapsed | %s", self.pk,
                 fields["current_tokens"], fields["tokens_per_second"], fields["progress_percentage"],
                 fields["elapsed_time"] / 1000, fields["phase"])

    def _stop(self, cancelled):
        """The job is no longer ours to run: cancelled, or taken by the sweep or another worker."""
        self.stop_reason = "cancelled" if cancelled else "lost"
        log.info("job %s: %s; closing the Ollama stream", self.pk, self.stop_reason)
        loading = self.abort()
        if cancelled and loading:
            self._cancel_while_loading()

    def _cancel_while_loading(self):
        """Ollama sends nothing until the model is loaded, which can take minutes: say
        "cancelled" now; the stream is closed the moment its headers arrive."""
        if self._write_final(queue.finish, statuses.CANCELLED, error_message="Cancelled while the model was loading."):
            log.info("job %s: cancelled while the model was loading", self.pk)

    def abort(self, reason=None):
        """Stop the generation (from any thread): closing the response stops Ollama too.
        True when Ollama had not answered yet (a model load): there was nothing to close, and
        the run's thread stays blocked until the headers come, which can take minutes."""
        loading = self.generation.waiting_for_headers
        self.stop_reason = self.stop_reason or reason
        self.ticking = False
        self.wake.set()
        self.generation.close()
        return loading

    def shut_down(self, give_up_at):
        """The drain's grace is over (called from its thread): stop, and give the job back.
        A stream ends at once and this run's thread releases the job. A model load blocks that
        thread, so the job is released from here; the thread's late release is fenced off.
        True when nothing is left for the run's thread to write."""
        if not self.abort("shutdown"):
            return False
        if self.stop_reason == "shutdown":  # not already cancelled, or taken from us
            with self.app.app_context():
                self._release(give_up_at)
        return True

    # --- the end ---------------------------------------------------------------------------------
    def _finish(self, final):
        if self.ended:
            return  # a cancel or the drain already wrote the end while the model was loading
        with self.app.app_context():
            if isinstance(final, dict):  # done: a cancel or shutdown that came as it ended loses
                self._complete(final)
            elif self.stop_reason == "cancelled":
                self._cancel()
            elif self.stop_reason == "shutdown":
                self._release()
            elif self.stop_reason == "lost":
                log.warning("job %s was taken from this worker; dropping it", self.pk)
            elif isinstance(final, OllamaError):
                self._failed(final)

    def _complete(self, final):
        fields = self._completed(final)
        if self._write_final(queue.finish, statuses.COMPLETED, **fields):
            log.info("job %s: completed: %d tokens | %.1f tok/s | %.1f s", self.pk, fields["completion_tokens"],
                     fields["tokens_per_second"], fields["elapsed_time"] / 1000)

    def _cancel(self):
        fields = self._partial()
        if self._write_final(queue.finish, statuses.CANCELLED, error_message="Cancelled while generating.",
                             **fields):
            log.info("job %s: cancelled while generating, after %d tokens", self.pk, fields["current_tokens"])

    def _release(self, give_up_at=math.inf):
        if self._write_final(queue.release, give_up_at=give_up_at):
            log.info("job %s: released to the queue (attempt refunded)", self.pk)

    def _texts(self):
        """The whole text and thinking, for the final write (the row then holds them)."""
        text, thinking = self.text.whole("text"), self.text.whole("thinking")
        return {"result": text, "output_chars": len(text), "thinking": thinking or None,
                "thinking_chars": len(thinking), "thinking_tokens": self.thinking_tokens}

    def _partial(self):
        with self.lock:
            return {**self._texts(), **self.meter.sample(self.clock())}

    def _completed(self, final):
        with self.lock:
            texts = self._texts()
            live = self.meter.sample(self.clock())
        prompt_tokens = final.get("prompt_eval_count") or 0  # omitted when zero (OLLAMA.md §1)
        completion = final.get("eval_count") or live["current_tokens"]
        speed = final_speed(final.get("eval_count"), final.get("eval_duration"))
        return {**texts, "current_tokens": completion, "completion_tokens": completion,
                "prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + completion,
                "tokens_per_second": speed if speed is not None else live["tokens_per_second"],
                "elapsed_time": live["elapsed_time"], "estimated_time_remaining": 0,
                "estimated_time_remaining_low": 0, "estimated_time_remaining_high": 0,
                "progress_percentage": 100.0, "error_message": None, **learned_from(final, self.meter.cold)}

    def _failed(self, error):
        if error.retryable and self.attempts < self.config["MAX_ATTEMPTS"]:
            self._retry(error)
        else:
            self._fail(error)

    def _retry(self, error):
        """Back to the queue after a back-off. The error (a sentence) stays as `last_error`,
        shown as the previous attempt's while the next one runs."""
        delay = backoff(self.attempts, rand=self.rand)
        upcoming = f"attempt {self.attempts + 1} of {self.config['MAX_ATTEMPTS']}"
        when = "in under a second" if delay < 0.5 else f"in {delay:.0f} s"  # not "in 0 s"
        message = f"{error} Trying again {when} ({upcoming})."
        if self._write_final(queue.retry_later, delay, message, last_error=str(error)):
            log.warning("job %s: %s Retry scheduled in %.1f s (%s).", self.pk, error, delay, upcoming)

    def _fail(self, error):
        message = f"{error} {tried(self.attempts)}" if error.retryable else str(error)
        if self._write_final(queue.finish, statuses.FAILED, error_message=message, **self._partial()):
            log.warning("job %s: failed: %s", self.pk, message)

    def _write_final(self, write, *args, give_up_at=math.inf, **fields):
        """The last write is retried until it lands: a database blink must not lose the text.
        The drain gives up at its deadline: the PaaS kills at 30 s, and the lease recovers."""
        delay = 0.25
        while True:
            try:
                return self._write_once(write, *args, **fields)
            except SQLAlchemyError as error:
                db.session.rollback()
                if not isinstance(error, (OperationalError, InterfaceError)):  # not a blink: it would fail forever
                    log.error("job %s: final write refused (%s); leaving it to the lease", self.pk, error)
                    return False
                if time.monotonic() + delay > give_up_at:
                    log.warning("job %s: final write failed (%s); leaving it to the lease", self.pk, error)
                    return False
                log.warning("job %s: final write failed (%s); retrying in %.1f s", self.pk, error, delay)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)  # land soon after the database is back

    def _write_once(self, write, *args, **fields):
        landed = write(self.pk, self.worker_id, *args, **fields)
        self.ended = True  # landed, or the job is no longer ours: nothing is left to write
        if not landed:
            log.warning("job %s: final write found the job no longer ours", self.pk)
        return landed


def tried(attempts):
    return "Tried once." if attempts == 1 else f"Tried {attempts} times."
