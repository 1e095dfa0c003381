"""A job followed in the database, when its server cannot be reached: the stream's events, made
from the row (read every `interval` s) and its text pieces."""
import time

import click

from webapp import output, queue, statuses
from webapp.extensions import db
from webapp.snapshots import snapshot_of


def events(job_id, have, interval, sleep=time.sleep):
    """(event name, data) as the stream would send them, until the job ends. `have` is what the
    reader has of the text, (attempt, characters): only the rest is read."""
    version = None
    while True:
        db.session.commit()  # end the previous read: each poll sees the latest commit
        job = queue.get(job_id)
        if job is None:
            raise click.ClickException(f"Job {job_id} is gone from the database (purged?).")
        if job.version != version:
            version = job.version
            piece = _new_text(job, have)
            have = (piece["attempt"], piece["offset"] + len(piece["text"]))
            yield from _in_order(job, piece)
        if job.status in statuses.ENDED:
            return
        sleep(interval)


def _new_text(job, have):
    """The `output` event of what the reader lacks; a new run starts the text over."""
    attempt = output.attempt_of(job)
    start = have[1] if have[0] == attempt else 0
    texts = output.since([job], {job.id: {"text": start, "thinking": job.thinking_chars or 0}})
    piece = {"offset": start, "text": texts.get(job.id, {}).get("text", ""), "attempt": attempt}
    return {**piece, "reset": True} if have[0] not in (None, attempt) else piece


def _in_order(job, piece):
    """As the stream orders them: an ended job's text before its end, a live one's after its figures."""
    snap = {key: value for key, value in snapshot_of(job).items() if value is not None}
    text = [("output", piece)] if piece["text"] or piece.get("reset") else []
    if job.status == statuses.COMPLETED:
        return [*text, ("complete", snap)]
    if job.status in statuses.ENDED:
        return [*text, ("error", {"status": job.status, "error": job.error_message or job.status})]
    return [("progress", snap), *text]
