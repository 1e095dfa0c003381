"""gunicorn settings: gevent workers for thousands of open streams, bound to $PORT."""
import logging
import os
import secrets
import signal

if not os.environ.get("SECRET_KEY"):
    # Set in the master, so every worker process shares it (each would draw its own otherwise,
    # and a form served by one worker would fail its CSRF check on another).
    os.environ["SECRET_KEY"] = secrets.token_urlsafe(32)
    logging.getLogger("gunicorn.error").warning(
        "SECRET_KEY is not set: using a random key for this start; set SECRET_KEY.")

bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
worker_class = "gevent"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Open connections one worker process holds (SSE streams included): bench/sse_bench.py fed
# about 6,000 streams on time per process on 2 cores; for more, raise WEB_CONCURRENCY.
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "6000"))
# PaaS routers SIGKILL 30 s after SIGTERM: streams end at once on SIGTERM (see below), requests
# get the rest of this.
graceful_timeout = 20
# For async workers this is only a liveness check, not a request time limit.
timeout = 30
# One shared default path would make several servers on one machine fight over it.
control_socket_disable = True
accesslog = "-"
errorlog = "-"


def post_worker_init(worker):
    """On SIGTERM, end every SSE stream with a `retry:` hint first, so clients reconnect to a
    process that is staying instead of being cut off at the graceful timeout."""
    stop_accepting = worker.handle_exit

    def handle_exit(sig, frame):
        from webapp import watch

        watch.get(worker.wsgi).shutdown()
        stop_accepting(sig, frame)

    signal.signal(signal.SIGTERM, handle_exit)
