"""gunicorn settings: gevent workers for thousands of open streams, bound to $PORT."""
import os

bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
worker_class = "gevent"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Open connections one worker process holds (SSE streams included).
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "10000"))
# PaaS routers SIGKILL 30 s after SIGTERM: finish (or end) streams before that.
graceful_timeout = 20
# For async workers this is only a liveness check, not a request time limit.
timeout = 30
accesslog = "-"
errorlog = "-"
