"""gunicorn settings: gevent workers for thousands of open streams, bound to $PORT."""
import glob
import logging
import os
import runpy
import secrets
import shutil
import signal
import tempfile

ROOT = os.path.dirname(os.path.abspath(__file__))
# The one logging shape (webapp/logs.py), read as a file: importing the `webapp` package here would
# load Flask and SQLAlchemy in the master, before gevent patches each worker.
_logs = runpy.run_path(os.path.join(ROOT, "webapp", "logs.py"))


def _setting(name, default, problem):
    value = os.environ.get(name, default)
    message = problem(value)
    if message:
        raise SystemExit(f"livegen: {message}")
    return value


def _whole_number(name):
    return lambda value: None if value.isdigit() else f"{name} must be a whole number, got {value!r}"


if not os.environ.get("SECRET_KEY"):
    # Set in the master, so every worker process shares it (each would draw its own otherwise,
    # and a form served by one worker would fail its CSRF check on another).
    os.environ["SECRET_KEY"] = secrets.token_urlsafe(32)
    logging.getLogger("gunicorn.error").warning(
        "SECRET_KEY is not set: using a random key for this start; set SECRET_KEY.")

# /metrics adds up the figures of every worker process (prometheus_client's multiprocess mode):
# each process writes its own to files in this directory. It must be set before any process
# imports prometheus_client, and hold nothing from an earlier start: a fresh directory per start,
# unless one is set (then emptied in on_starting). Made here, it is removed at exit; the mark is in
# the environment because a reload (SIGHUP) reads this file again.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="livegen-metrics-")
    os.environ["LIVEGEN_METRICS_DIR_MADE"] = "1"

bind = f"0.0.0.0:{_setting('PORT', '5000', _whole_number('PORT'))}"
worker_class = "gevent"
workers = int(_setting("WEB_CONCURRENCY", "2", _whole_number("WEB_CONCURRENCY")))
# Open connections one worker process holds (SSE streams included): bench/sse_bench.py fed
# about 6,000 streams on time per process on 2 cores; for more, raise WEB_CONCURRENCY.
worker_connections = int(_setting("WORKER_CONNECTIONS", "6000", _whole_number("WORKER_CONNECTIONS")))
# PaaS routers SIGKILL 30 s after SIGTERM: streams end at once on SIGTERM (see below), requests
# get the rest of this.
graceful_timeout = 20
# For async workers this is only a liveness check, not a request time limit.
timeout = 30
# One shared default path would make several servers on one machine fight over it.
control_socket_disable = True
accesslog = "-"
errorlog = "-"
logconfig_dict = _logs["dict_config"](
    _setting("LOG_LEVEL", "INFO", lambda value: _logs["level_problem"](value.upper())).upper())
# gunicorn refuses longer request lines and header fields itself, with its own small HTML page; its
# limits are set above the app's (webapp/web/limits.py), so the app answers first, in JSON under /api/.
limit_request_line = 8190
limit_request_field_size = 16380


def post_worker_init(worker):
    """On SIGTERM, end every SSE stream with a `retry:` hint first, so clients reconnect to a
    process that is staying instead of being cut off at the graceful timeout."""
    stop_accepting = worker.handle_exit

    def handle_exit(sig, frame):
        from webapp.web import watch

        watch.get(worker.wsgi).shutdown()
        stop_accepting(sig, frame)

    signal.signal(signal.SIGTERM, handle_exit)


def on_starting(server):
    """Empty a PROMETHEUS_MULTIPROC_DIR that was set (counters of a previous start would be added
    to this one's); only its figures' files, as it may hold other things."""
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(directory, exist_ok=True)
    for path in glob.glob(os.path.join(directory, "*.db")):
        os.remove(path)
    server.log.info("metrics: worker processes' figures in %s", directory)


def child_exit(server, worker):
    """A worker process is gone: its open-stream gauge goes with it (its counters stay)."""
    # Here, not at the top: the master loads no more than it must before it forks (see _logs).
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if os.environ.get("LIVEGEN_METRICS_DIR_MADE"):
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
