"""The worker process: `python worker.py`. Streams queued jobs from Ollama into the jobs table."""
from gevent import monkey

monkey.patch_all()  # before anything imports socket or threading: PyMySQL and requests cooperate

import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

from webapp import create_app, logs  # noqa: E402
from webapp.config import SettingError, log_level  # noqa: E402
from webapp.worker import Worker  # noqa: E402


def main():
    try:
        logs.configure(log_level(os.environ))
        worker = Worker(create_app())
    except SettingError as error:  # a bad setting names itself, not a traceback
        sys.exit(f"livegen worker: {error}")
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    worker.serve()


if __name__ == "__main__":
    main()
