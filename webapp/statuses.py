"""The job statuses, named once: the table, the queue, the routes, the templates and (through
the `data-` attributes the server writes) the page script all use these."""
QUEUED = "queued"
PROCESSING = "processing"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"

ALL = (QUEUED, PROCESSING, COMPLETED, FAILED, CANCELLED)
ENDED = frozenset({COMPLETED, FAILED, CANCELLED})  # the statuses a job never leaves
LIVE = frozenset({QUEUED, PROCESSING})


def is_ended(status):
    return status in ENDED
