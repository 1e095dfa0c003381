"""Template helpers for the progress card: words for phases, human durations and speeds."""

PHASE_WORDS = {
    "waiting_model": "Waiting for the model to load…",
    "thinking": "The model is thinking…",
    "generating": "AI is Generating...",
    "saving": "Saving the result…",
}


def duration(ms):
    """'1.2 s', '3 min 05 s'; an em dash when unknown."""
    if ms is None:
        return "—"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes} min {seconds:02d} s"


def headline(job):
    """The card's status line."""
    status = job["status"]
    if status == "queued":
        position = job.get("queue_position")
        return f"Queued — number {position} in line" if position else "Queued"
    if status == "processing":
        words = PHASE_WORDS.get(job.get("phase"), "Working…")
        if job.get("phase") == "generating" and job.get("tokens_per_second"):
            words += f" {job['tokens_per_second']:.1f} tok/s"
        return words
    return {"completed": "Completed", "failed": "Failed", "cancelled": "Cancelled"}[status]


def register(app):
    app.jinja_env.filters["duration"] = duration
    app.jinja_env.globals["headline"] = headline
