"""Why a job failed, in a few words a dashboard can group by, read from its error message."""

# The first match wins, so the specific come before the general. Each phrase is part of a
# message written in webapp/ollama.py or webapp/queue.py (tests/test_metrics.py holds them to it).
REASONS = (
    ("worker_lost", ("worker was lost", "worker running this job was lost")),
    ("model_not_found", ("answered 404",)),
    ("bad_request", ("answered 400",)),
    ("ollama_unreachable", ("is not reachable", "did not accept a connection", "talking to ollama failed")),
    ("ollama_stalled", ("sent nothing for",)),
    ("ollama_disconnected", ("was cut", "ended the stream before")),
    ("ollama_error", ("ollama answered", "stopped with an error", "not a json object")),
)
OTHER = "other"
ALL = (*(name for name, _phrases in REASONS), OTHER)


def reason(message):
    """The reason a failed job's `error_message` gives, one of ALL."""
    text = (message or "").lower()
    for name, phrases in REASONS:
        if any(phrase in text for phrase in phrases):
            return name
    return OTHER
