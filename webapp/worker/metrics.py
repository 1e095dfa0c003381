"""The worker process's own figures, served on WORKER_METRICS_PORT: what only this process knows
(its slots, its running jobs, how long its claims, progress writes and webhook sends take). What
the database knows of every worker (leases, webhook tries) is in the web's /metrics."""
import logging

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, make_wsgi_app

from webapp.telemetry import guard

log = logging.getLogger(__name__)
FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

INFO = Gauge("livegen_worker_info", "This worker process, by its id (the `worker` of livegen_worker_leases).",
             ["worker"])
SLOTS = Gauge("livegen_worker_slots", "Jobs this worker process may run at once (WORKER_CONCURRENCY).")
RUNNING = Gauge("livegen_worker_running_jobs", "Jobs this worker process runs now.")
CLAIM = Histogram("livegen_worker_claim_seconds", "Seconds a claim took (the next job in turn, taken).",
                  buckets=FAST)
PROGRESS_WRITE = Histogram("livegen_worker_progress_write_seconds", "Seconds a progress write took (the row, its "
                           "new text and the lease, in one transaction).", buckets=FAST)
PROGRESS_SKIPPED = Counter("livegen_worker_progress_writes_skipped", "Progress writes the database did not take "
                           "(their text goes with the next one).")
WEBHOOK_SEND = Histogram("livegen_worker_webhook_send_seconds", "Seconds a webhook try took, by result: delivered "
                         "(2xx), rejected (another answer), error (no answer).", ["result"],
                         buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))


def serve(port, token):
    """Serve this process's figures on `port` (every address: a scraper is elsewhere), behind
    `token` when one is set. None when the port cannot be had: the worker goes on without them."""
    from gevent.pywsgi import WSGIServer  # the worker process runs under gevent (worker.py)

    server = WSGIServer(("", port), guarded(make_wsgi_app(REGISTRY), token), log=None)
    try:
        server.start()
    except OSError as error:
        log.error("metrics: cannot serve on port %d (%s); WORKER_METRICS_PORT needs a free port "
                  "per worker process", port, error)
        return None
    log.info("metrics: this worker's figures at http://0.0.0.0:%d/metrics", port)
    return server


def guarded(app, token):
    """`app` behind the METRICS_TOKEN check (401 without it)."""
    def guarded_app(environ, start_response):
        if guard.allowed(environ.get("HTTP_AUTHORIZATION"), token):
            return app(environ, start_response)
        start_response("401 Unauthorized", [("Content-Type", "text/plain; charset=utf-8"),
                                            ("WWW-Authenticate", guard.WWW_AUTHENTICATE)])
        return [guard.REFUSAL.encode()]
    return guarded_app


def webhook_result(ok, status_code):
    """'delivered', 'rejected' (the receiver answered, not 2xx) or 'error' (no answer)."""
    if ok:
        return "delivered"
    return "rejected" if status_code is not None else "error"
