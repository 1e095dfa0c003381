"""Plain-dict views of a batch: its counters, pace and time left (what its API, stream and page
read), and one line of its log per ended item."""
from webapp import estimates, history, statuses
from webapp.models import utcnow
from webapp.snapshots import iso

MIN_OWN_ITEMS = 3  # items a batch must have finished before its own mean says more than the server's pace


def snapshot(batch, running):
    """The batch as a client sees it; `running` are its items running now (`store.running_items`)."""
    queued = max(0, batch.total - batch.ended - len(running))
    elapsed = _ms((batch.completed_at or utcnow()) - batch.created_at)
    tokens = batch.tokens + sum(job.current_tokens or 0 for job in running)
    snap = {
        "batch_id": batch.batch_id,
        "status": _status(batch, running),
        "model": batch.model,
        "total": batch.total, "queued": queued, "running": len(running), "completed": batch.completed,
        "failed": batch.failed, "cancelled": batch.cancelled, "ended": batch.ended,
        "progress": round(100.0 * batch.ended / batch.total, 2) if batch.total else 100.0,
        "tokens": tokens,
        "tokens_per_second": round(tokens / (elapsed / 1000), 1) if elapsed else 0.0,
        "elapsed_time": elapsed,  # since submit
        "cancel_requested": bool(batch.cancel_requested),
        "log_seq": batch.log_seq, "version": batch.version,
        "created_at": iso(batch.created_at), "completed_at": iso(batch.completed_at),
    }
    snap.update(_time_left(batch, queued, len(running)))
    return snap


def _status(batch, running):
    if batch.status == statuses.PROCESSING and not running and not batch.ended:
        return statuses.QUEUED  # nothing has started yet
    return batch.status


def _time_left(batch, queued, running):
    keys = ("estimated_remaining", "estimated_remaining_low", "estimated_remaining_high")
    if batch.status in statuses.ENDED:
        return dict.fromkeys(keys, 0)
    finished = batch.completed + batch.failed
    slots, pace = history.pace()
    # The batch's own mean once it says enough, or sooner when the server has no pace to offer.
    trusted = finished >= MIN_OWN_ITEMS or (finished and pace is None)
    own = batch.item_ms / 1000 / finished if trusted else None
    per_item = estimates.batch_item_time(own, pace)
    if per_item is None:
        return dict.fromkeys(keys)
    left = estimates.batch_left(queued, running, per_item, slots)
    return dict(zip(keys, (left.point, left.low, left.high), strict=True))


def _ms(delta):
    return max(0, int(delta.total_seconds() * 1000))


def log_line(job):
    """One ended item, as the `item` event and the log show it."""
    line = {"index": job.batch_index, "job_id": job.job_id, "status": job.status, "seq": job.batch_seq,
            "tokens": job.completion_tokens if job.completion_tokens is not None else job.current_tokens or 0,
            "duration": job.elapsed_time or 0, "tokens_per_second": job.tokens_per_second or 0.0,
            "ended_at": iso(job.completed_at)}
    if job.status != statuses.COMPLETED:
        line["error"] = job.error_message or job.status
    return line


def item(job):
    """One item, as the items list gives it: its state, and its output once it has one."""
    return {"index": job.batch_index, "job_id": job.job_id, "status": job.status, "prompt": job.prompt,
            "model": job.model, "output": job.result, "error": job.error_message if job.status in
            (statuses.FAILED, statuses.CANCELLED) else None,
            "prompt_tokens": job.prompt_tokens, "completion_tokens": job.completion_tokens,
            "elapsed_time": job.elapsed_time or 0, "tokens_per_second": job.tokens_per_second or 0.0,
            "created_at": iso(job.created_at), "started_at": iso(job.started_at),
            "completed_at": iso(job.completed_at)}


def log_text(line, total):
    """A log line as the console and the download show it, e.g.
    `[12:03:04] 17/50 completed · 412 tok · 18.2 tok/s · 22.6 s` (UTC), or the item's error."""
    clock = (line["ended_at"] or "")[11:19] or "--:--:--"
    head = f"[{clock}] {line['index'] + 1:>{len(str(total))}}/{total} {line['status']}"  # aligned
    if "error" in line:
        return f"{head} · {line['error']}"
    return (f"{head} · {line['tokens']} tok · {line['tokens_per_second']:.1f} tok/s · "
            f"{line['duration'] / 1000:.1f} s")
