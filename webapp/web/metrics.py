"""`/metrics` for Prometheus: the database's figures (`webapp.telemetry`), and the web processes'
own (open SSE streams, the watcher's ticks) added up over every gunicorn worker process by
prometheus_client's multiprocess mode (gunicorn.conf.py sets it up). See docs/metrics.md."""
import os

from flask import Blueprint, Response, current_app, request
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from webapp.telemetry import guard
from webapp.telemetry.figures import DatabaseFigures

bp = Blueprint("metrics", __name__)

# livesum: the streams of the processes alive now (a process that died takes its own with it).
STREAMS_OPEN = Gauge("livegen_sse_streams_open", "SSE responses open now, by route.", ["route"],
                     multiprocess_mode="livesum")
WATCHER_TICK = Histogram("livegen_watcher_tick_seconds", "Seconds one tick of a web process's watcher took "
                         "(its reads of every watched job and their new text, and the fan-out).",
                         buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0))
WATCHER_READS = Counter("livegen_watcher_reads", "Database reads of the watchers (a tick reads every watched "
                        "job at once, however many streams watch them).")
WATCHER_FAILURES = Counter("livegen_watcher_tick_failures", "Watcher ticks that failed (the database did not "
                           "answer); the streams stay open and the next tick tries again.")


@bp.get("/metrics")
def metrics():
    if not guard.allowed(request.headers.get("Authorization"), current_app.config["METRICS_TOKEN"]):
        return Response(guard.REFUSAL, 401, {"WWW-Authenticate": guard.WWW_AUTHENTICATE}, mimetype="text/plain")
    # Prometheus asks for OpenMetrics; curl and the text parser get the classic text format.
    encode, content_type = choose_encoder(request.headers.get("Accept"))
    body = encode(scraped(current_app._get_current_object()))
    return Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})


def scraped(app):
    """What a scrape reads: the database's figures, and this server's own, from every worker
    process's files in multiprocess mode (gunicorn), else from this process's registry."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(REGISTRY)
    registry.register(DatabaseFigures(app))
    return registry


@bp.after_app_request
def count_streams(response):
    """Every SSE response (a job's, the page's cards', a batch's) counts as open from here until
    the server closes it: its end, its client gone, a restart. One place sees every stream."""
    if response.mimetype == "text/event-stream" and response.is_streamed:
        open_now = STREAMS_OPEN.labels(request.endpoint or "")
        open_now.inc()
        response.call_on_close(open_now.dec)
    return response


def watcher_ticked(seconds, reads, failed):
    """One tick of a watcher (webapp/web/watch.py): how long, how many reads, and whether it failed."""
    WATCHER_TICK.observe(seconds)
    WATCHER_READS.inc(reads)
    if failed:
        WATCHER_FAILURES.inc()
