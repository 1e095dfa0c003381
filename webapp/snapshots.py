"""Plain-dict views of a job row: the one shape the status route, SSE and the card all read."""
import calendar

from webapp import estimates, history, output, queue, statuses
from webapp.models import utcnow

HOLD_SHARE = 4  # a time left counts down to a quarter of itself between the worker's writes


def iso(moment):
    """ISO 8601 UTC with milliseconds and a Z, or None."""
    return moment.isoformat(timespec="milliseconds") + "Z" if moment else None


def snapshot(job, position=None):
    """Everything a client may see of a job (the result only once completed, the previous
    attempt's error only while it is live)."""
    snap = {
        "job_id": job.job_id,
        "status": job.status,
        "phase": job.phase,
        "progress": 100.0 if job.status == statuses.COMPLETED else round(job.progress_percentage or 0, 2),
        "progress_is_estimate": bool(job.progress_is_estimate),
        "expected_tokens": job.expected_tokens,
        "current_tokens": job.current_tokens or 0,
        "tokens_per_second": job.tokens_per_second or 0.0,
        "elapsed_time": job.elapsed_time or 0,
        # The time left as of now (the worker wrote it up to an interval ago), and the range
        # around it: the 20th to 80th percentile of what this server has seen, in ms.
        **dict(zip(("estimated_remaining", "estimated_remaining_low", "estimated_remaining_high"),
                   left_now(job), strict=True)),
        "time_since_submit": since_submit(job),
        "prompt_tokens": job.prompt_tokens,
        "completion_tokens": job.completion_tokens,
        "total_tokens": job.total_tokens,
        "error_message": job.error_message,
        # How much text the row says there is (the text itself: `output.text_of`, or a stream).
        "output_attempt": output.attempt_of(job),
        "output_chars": job.output_chars or 0,
        "thinking_chars": job.thinking_chars or 0,
        "thinking_tokens": job.thinking_tokens or None,
        "prompt": job.prompt,
        "model": job.model,
        "attempts": job.attempts,
        "queue_position": position,
        "version": job.version,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "completed_at": iso(job.completed_at),
        "last_update_at": iso(job.last_update_at),
        "timestamp": calendar.timegm(job.last_update_at.timetuple()) if job.last_update_at else None,
    }
    if job.status == statuses.COMPLETED:
        snap["result"] = job.result
    if job.status in statuses.LIVE:  # an ended job's own error_message says how it ended
        snap["last_error"] = job.last_error
    return snap


def left_now(job):
    """The worker's three figures of the time left, less the time since it wrote them, but not
    below a quarter of each: a job still running is not "0 s" away, and the worker's next
    write (within an interval) brings fresh figures."""
    figures = (job.estimated_time_remaining, job.estimated_time_remaining_low, job.estimated_time_remaining_high)
    if job.status != statuses.PROCESSING or not job.last_update_at:
        return figures
    age = max(0, int((utcnow() - job.last_update_at).total_seconds() * 1000))
    return tuple(None if value is None else max(value // HOLD_SHARE, value - age) for value in figures)


def since_submit(job):
    """Milliseconds from submit to now (to the end, once ended): the wait a person feels."""
    end = job.completed_at if job.status in statuses.ENDED else utcnow()
    return max(0, int((end - job.created_at).total_seconds() * 1000)) if end and job.created_at else None


def snapshots_of(rows):
    """Snapshots with the queue places and the queued jobs' estimates filled in (one more read,
    only if any is queued; what the estimates learn from is kept a few seconds per process)."""
    positions = queue.queue_positions([job for job in rows if job.status == statuses.QUEUED])
    snaps = [snapshot(job, positions.get(job.id)) for job in rows]
    runs = {}  # one estimate of a run per model, kind and limit, however many jobs share them
    for job, snap in zip(rows, snaps, strict=True):
        if snap["queue_position"] or (job.status == statuses.PROCESSING and snap["estimated_remaining"] is None):
            _estimate_unwritten(job, snap, runs)
    return snaps


def _estimate_unwritten(job, snap, runs):
    """A queued job (and one just taken, before its worker's first write) has no figures of
    its own: its place in line at this server's pace, then its own run as learned; None while
    the model has no history."""
    limit = (job.options or {}).get("num_predict")
    key = (job.model, job.prompt_kind or "plain:s:-", limit if limit and limit > 0 else None)
    if key not in runs:
        runs[key] = estimates.before_first_token_left(history.learned(key[0]), key[1], key[2], cold=False,
                                                      prompt_tokens=0, waited=0)
    left = estimates.queued_left(runs[key], snap["queue_position"] or 0, *history.pace())
    if left is not None:
        snap.update(estimated_remaining=left.point, estimated_remaining_low=left.low,
                    estimated_remaining_high=left.high)


def snapshot_of(job):
    return snapshots_of([job])[0]
