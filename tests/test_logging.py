"""One logging shape for every process: time, level, logger name, message; LOG_LEVEL obeyed."""
import re

import requests

from webapp import queue

from helpers import wait_until
from servers import Gunicorn

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) (?P<logger>[\w.]+): (?P<message>.*)$")


def logged(output):
    """(level, logger, message) of every line in the log's shape."""
    return [(m["level"], m["logger"], m["message"]) for m in map(LINE.match, output.splitlines()) if m]


def test_the_web_process_writes_info_lines_with_time_level_and_logger(database_url, app):
    job_id = queue.enqueue(prompt="watched", model="llama3.2").job_id
    with Gunicorn(database_url) as server:
        requests.get(server.url + "/", timeout=10)
        with requests.get(f"{server.url}/api/v1/ai/generation/{job_id}/progress", stream=True, timeout=10) as stream:
            lines = stream.iter_lines()
            while not next(lines).startswith(b"data:"):  # the snapshot: the stream subscribes next
                pass
            wait_until(lambda: "webapp.web.watch" in server.output(), 10, "the watcher's log line",
                       interval=0.05)
        server.stop()
        lines = logged(server.output())
    info = {logger for level, logger, _ in lines if level == "INFO"}
    # gunicorn's error and access logs, and the app's own loggers, all in the one shape
    assert {"gunicorn.error", "gunicorn.access", "webapp.web.watch"} <= info, lines
    assert any('"GET / HTTP/1.1" 200' in message for _, logger, message in lines if logger == "gunicorn.access")


def test_log_level_warning_silences_info(database_url):
    with Gunicorn(database_url, LOG_LEVEL="WARNING") as server:
        requests.get(server.url + "/", timeout=10)
        server.stop()
        lines = logged(server.output())
    assert not [line for line in lines if line[0] == "INFO" and line[1] != "gunicorn.access"], lines
