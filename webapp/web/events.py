"""The JSON stream's events for a job snapshot, in the contract's shapes."""
from webapp import statuses

PROGRESS_FIELDS = ("status", "phase", "progress", "progress_is_estimate", "current_tokens",
                   "tokens_per_second", "elapsed_time", "estimated_remaining", "prompt_tokens",
                   "completion_tokens", "total_tokens", "queue_position", "estimated_remaining_low",
                   "estimated_remaining_high", "time_since_submit")
COMPLETE_FIELDS = ("status", "total_tokens", "prompt_tokens", "completion_tokens", "elapsed_time",
                   "tokens_per_second")


def job_event(snap):
    """(event name, payload): `complete`, `error` (failed or cancelled) or `progress`."""
    status = snap["status"]
    if status == statuses.COMPLETED:
        return "complete", {key: snap[key] for key in COMPLETE_FIELDS}
    if status in statuses.ENDED:
        return "error", {"status": status, "error": snap.get("error_message") or status}
    payload = {key: snap.get(key) for key in PROGRESS_FIELDS}
    payload["timestamp"] = snap.get("timestamp")
    payload["updated_at"] = snap.get("last_update_at")  # ms precision, for clients and benchmarks
    return "progress", payload
