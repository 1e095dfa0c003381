"""The worker process: `python worker.py`. Streams queued jobs from Ollama into the jobs table."""
from gevent import monkey

monkey.patch_all()  # before anything imports socket or threading: PyMySQL and requests cooperate

import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

# This process serves its own figures (WORKER_METRICS_PORT): prometheus_client must keep them in
# memory, not in the files of a web server's multiprocess mode should the setting reach it too.
os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)

from webapp import create_app, logs  # noqa: E402
from webapp.config import SettingError, log_level  # noqa: E402
from webapp.worker import Worker, metrics  # noqa: E402


def main():
    try:
        logs.configure(log_level(os.environ))
        worker = Worker(create_app())
    except SettingError as error:  # a bad setting names itself, not a traceback
        sys.exit(f"livegen worker: {error}")
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    if worker.app.config["WORKER_METRICS_PORT"]:
        metrics.serve(worker.app.config["WORKER_METRICS_PORT"], worker.app.config["METRICS_TOKEN"])
    worker.serve()


if __name__ == "__main__":
    main()
