"""The worker process: `python worker.py`. Streams queued jobs from Ollama into the jobs table."""
from gevent import monkey

monkey.patch_all()  # before anything imports socket or threading: PyMySQL and requests cooperate

import logging  # noqa: E402
import signal  # noqa: E402

from webapp import create_app  # noqa: E402
from webapp.worker import Worker  # noqa: E402


def main():
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    worker = Worker(create_app(routes=False))
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    worker.serve()


if __name__ == "__main__":
    main()
