"""One watcher per web process: each tick, one read of every watched job that changed, fanned out
to the SSE subscribers of this process. A thousand watchers cost the database what one does."""
import logging
import threading
import time

import sqlalchemy as sa
import sqlalchemy.orm as so
from sqlalchemy.exc import SQLAlchemyError

from webapp import output, statuses
from webapp.extensions import db
from webapp.models import Job
from webapp.snapshots import snapshots_of
from webapp.web import metrics
from webapp.web.transcripts import LiveText

log = logging.getLogger(__name__)
BATCH = 500  # ids per query: large enough for one read per tick, small enough for any server
MAX_BACKOFF = 5.0


class Subscription:
    """One client's view: the newest snapshot per job, waiting to be sent (a slow client gets the
    latest state, never a backlog; the newest snapshot's text reaches back to what it missed).
    `positions` is {job_id: (attempt, text chars, thinking chars)} the client has of the jobs
    whose text it is sent; `texts` says the watcher must keep the jobs' text (cards show its
    last lines) even when none is sent."""

    def __init__(self, snaps, positions=None, texts=False):
        self.job_ids = tuple(snap["job_id"] for snap in snaps)
        self.sent = {snap["job_id"]: change_key(snap) for snap in snaps}  # what the client already has
        self.positions = dict(positions or {})
        self.texts = texts or bool(self.positions)
        self.pending = {}
        self.ready = threading.Event()
        self.closed = False  # set on shutdown: the stream ends so the client reconnects elsewhere

    def offer(self, snap):
        """Queue a snapshot; False when it lacks the text this client needs (the watcher then
        reads the job again next tick, text included)."""
        if self.sent.get(snap["job_id"]) == change_key(snap):
            return True
        if self.texts and "_text" not in snap:
            return False
        self.sent[snap["job_id"]] = change_key(snap)
        self.pending[snap["job_id"]] = snap
        self.ready.set()
        return True

    def take(self, timeout):
        """Wait up to `timeout` s; the pending snapshots (maybe none), oldest job first."""
        self.ready.wait(timeout)
        self.ready.clear()
        snaps, self.pending = list(self.pending.values()), {}
        return snaps

    def close(self):
        self.closed = True
        self.ready.set()


class Watcher:
    """Reads changed rows every `interval` s while anyone watches; idles otherwise."""

    def __init__(self, app, interval):
        self.app = app
        self.interval = interval
        self.subscribers = {}   # job_id -> set of Subscription
        self.seen = {}          # job_id -> (version, queue position) last fanned out
        self.texting = {}       # job_id -> how many of its subscriptions want its text
        self.transcripts = {}   # job_id -> LiveText of its current run (read once, then appended)
        self.wake = threading.Event()
        self.thread = None
        self.starting = threading.Lock()
        self.stopping = False
        self.reads = 0          # queries issued (the benchmark reads it)

    def subscribe(self, snaps, positions=None, texts=False):
        """Follow the jobs of these snapshots (already sent to the client, with their text up
        to `positions`)."""
        sub = Subscription(snaps, positions, texts)
        if self.stopping:  # a stream that subscribes after SIGTERM ends at once too
            sub.close()
            return sub
        for snap in snaps:
            self.subscribers.setdefault(snap["job_id"], set()).add(sub)
            if sub.texts:
                self.texting[snap["job_id"]] = self.texting.get(snap["job_id"], 0) + 1
            if self.seen.setdefault(snap["job_id"], change_key(snap)) != change_key(snap):
                # This client read the row at another version than the watcher last fanned out
                # (maybe the final one): forget it, so the next tick reads the row again; the
                # other subscribers skip what they already have.
                del self.seen[snap["job_id"]]
        self._ensure_running()
        self.wake.set()
        return sub

    def unsubscribe(self, sub):
        for job_id in sub.job_ids:
            subs = self.subscribers.get(job_id)
            if subs is not None and sub in subs:
                subs.discard(sub)
                if sub.texts:
                    self._stop_texting(job_id)
                if not subs:
                    del self.subscribers[job_id]
                    self.seen.pop(job_id, None)

    def _stop_texting(self, job_id):
        self.texting[job_id] -= 1
        if not self.texting[job_id]:
            del self.texting[job_id]
            self.transcripts.pop(job_id, None)

    def shutdown(self):
        """End every stream (SIGTERM): clients reconnect to a process that is staying."""
        self.stopping = True
        for subs in list(self.subscribers.values()):
            for sub in list(subs):
                sub.close()
        self.wake.set()

    def _ensure_running(self):
        # `is None`, not `is_alive()`: under gevent, start() lets other requests run before the
        # thread is alive, and each of them would start another loop. The loop never ends.
        with self.starting:
            if self.thread is None:
                self.thread = threading.Thread(target=self._loop, name="livegen-watcher", daemon=True)
                self.thread.start()
                log.info("watcher: following jobs every %.2f s for this process's streams", self.interval)

    def _loop(self):
        failures = 0
        while not self.stopping:
            if not self.subscribers:
                self.wake.wait(1.0)  # idle: no queries at all
                self.wake.clear()
                continue
            started, reads = time.monotonic(), self.reads
            try:
                self.tick()
                failures = 0
            except SQLAlchemyError as error:
                failures += 1
                log.warning("watcher: database read failed (%s); clients keep their streams", error)
            except Exception:  # the loop must outlive any bug: every stream of the process needs it
                failures += 1
                log.exception("watcher: tick failed")
            metrics.watcher_ticked(time.monotonic() - started, self.reads - reads, failed=failures > 0)
            pause = min(MAX_BACKOFF, self.interval * 2 ** failures) if failures else self.interval
            time.sleep(max(0.0, pause - (time.monotonic() - started)))

    def tick(self):
        """One short transaction per tick (REPEATABLE READ would freeze a long one)."""
        with self.app.app_context():
            try:
                for snap in self.changed(list(self.subscribers)):
                    self._fan_out(snap)
            finally:
                db.session.remove()

    def changed(self, job_ids):
        """Snapshots of the watched jobs whose version (or place in the queue) moved."""
        rows = []
        for start in range(0, len(job_ids), BATCH):
            batch = job_ids[start:start + BATCH]
            known = [(job_id, self.seen[job_id][0]) for job_id in batch if job_id in self.seen]
            query = sa.select(Job).where(Job.job_id.in_(batch)).options(so.defer(Job.system))
            if known:
                query = query.where(sa.or_(sa.tuple_(Job.job_id, Job.version).not_in(known),
                                           Job.status == statuses.QUEUED))
            rows += db.session.scalars(query).all()
            self.reads += 1
        # A queued job's place moves when jobs ahead are claimed, without its own row changing.
        self.reads += any(job.status == statuses.QUEUED for job in rows)
        snaps = snapshots_of(rows)
        self._read_texts(rows, snaps)
        return [snap for snap in snaps if self.seen.get(snap["job_id"]) != change_key(snap)]

    def _read_texts(self, rows, snaps):
        """Bring the kept transcripts up to the rows just read: one query for the new text of
        every job, whoever watches it; each snapshot carries a view of its job's text."""
        rows = [(job, snap) for job, snap in zip(rows, snaps, strict=True) if job.job_id in self.texting]
        starts, copies = {}, {}  # local: the read below lets other streams (un)subscribe meanwhile
        for job, _snap in rows:
            kept = self.transcripts.get(job.job_id)
            if kept is None or not output.follows(kept.position(), output.position(job)):
                kept = self.transcripts[job.job_id] = LiveText(output.attempt_of(job))  # a new run: from 0
            copies[job.id] = kept
            starts[job.id] = dict(zip(output.KINDS, kept.lengths(), strict=True))
        if not rows:
            return
        found, wants = output.plan([job for job, _snap in rows], starts)
        new = output.merge(found, output.read(wants))
        self.reads += bool(wants)
        for job, snap in rows:
            kept = copies[job.id]
            kept.extend(new.get(job.id, {}))
            snap["_text"] = kept.view()
            snap["output_tail"] = snap["_text"].tail()
            # A piece was missing (it should not be): read the job again next tick.
            snap["_short"] = kept.position() != output.position(job)

    def _fan_out(self, snap):
        self.seen[snap["job_id"]] = change_key(snap)
        if snap.get("_short"):
            self.seen.pop(snap["job_id"])
        for sub in list(self.subscribers.get(snap["job_id"], ())):
            if not sub.offer(snap):
                self.seen.pop(snap["job_id"], None)  # read it again, with its text, next tick


def change_key(snap):
    """What a client has seen of a job: its version, and its place in line while queued."""
    return snap["version"], snap.get("queue_position")


def init_app(app):
    app.extensions["livegen.watcher"] = Watcher(app, app.config["SSE_POLL_INTERVAL"])


def get(app):
    return app.extensions["livegen.watcher"]
