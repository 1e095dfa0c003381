"""Template helpers for the progress card: words for phases and states, durations, staleness."""
from datetime import UTC, datetime

from webapp import statuses
from webapp.progress import duration_text as duration  # the card and the terminal say it alike
from webapp.snapshots import HOLD_SHARE
from webapp.web import csrf, markdown

SOON_MS = 1000  # a time left below this reads "any moment now": no figure would be honest
STALLED_AFTER_MS = 10_000  # a running job whose row has not changed for this long looks stalled
PHASE_WORDS = {
    "waiting_model": "Waiting for the model to load…",
    "thinking": "The model is thinking…",
    "generating": "AI is Generating...",
    "saving": "Saving the result…",
}




def headline(job):
    """The card's status line."""
    status = job["status"]
    if status == statuses.QUEUED:
        position = job.get("queue_position")
        return f"Queued — number {position} in line" if position else "Queued"
    if status == statuses.PROCESSING:
        words = PHASE_WORDS.get(job.get("phase"), "Working…")
        if job.get("phase") == "generating":
            words += f" {job.get('tokens_per_second') or 0:.1f} tok/s"
        return words
    return status.capitalize()  # Completed, Failed, Cancelled


def age_ms(job, now=None):
    """Milliseconds since the job's row last changed."""
    if not job.get("last_update_at"):
        return 0
    updated = datetime.fromisoformat(job["last_update_at"].rstrip("Z")).replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0, int((now - updated).total_seconds() * 1000))


def stall_note(job, now=None):
    """What to tell a person whose job has not moved for a while, or None."""
    if job["status"] in statuses.ENDED or age_ms(job, now) < STALLED_AFTER_MS:
        return None
    if job["status"] == statuses.QUEUED:
        if job.get("queue_position") != 1:
            return None  # waiting behind others is not a fault
        return "No worker has taken this job yet. Is the worker process running?"
    return "No progress for a while: this looks stalled. It will be retried if the worker is lost."


def register(app):
    app.jinja_env.filters["duration"] = duration
    app.jinja_env.filters["markdown"] = markdown.render
    app.jinja_env.globals.update(headline=headline, stall_note=stall_note, statuses=statuses,
                                 ENDED=statuses.ENDED, STALLED_AFTER_MS=STALLED_AFTER_MS, SOON_MS=SOON_MS,
                                 HOLD_SHARE=HOLD_SHARE)
    app.jinja_env.globals["csrf_token"] = csrf.token
