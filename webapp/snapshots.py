"""Plain-dict views of a job row: the one shape the status route, SSE and the card all read."""
import calendar

from webapp import queue, statuses


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
        "progress": 100.0 if job.status == statuses.COMPLETED else round(job.progress_percentage or 0, 1),
        "progress_is_estimate": bool(job.progress_is_estimate),
        "expected_tokens": job.expected_tokens,
        "current_tokens": job.current_tokens or 0,
        "tokens_per_second": job.tokens_per_second or 0.0,
        "elapsed_time": job.elapsed_time or 0,
        "estimated_remaining": job.estimated_time_remaining,
        "prompt_tokens": job.prompt_tokens,
        "completion_tokens": job.completion_tokens,
        "total_tokens": job.total_tokens,
        "error_message": job.error_message,
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


def snapshots_of(rows):
    """Snapshots with the queue places filled in (one more read, only if any is queued)."""
    positions = queue.queue_positions([job.id for job in rows if job.status == statuses.QUEUED])
    return [snapshot(job, positions.get(job.id)) for job in rows]


def snapshot_of(job):
    return snapshots_of([job])[0]
