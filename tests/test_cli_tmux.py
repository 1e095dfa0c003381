"""`flask jobs submit --watch` in a real terminal (tmux, 100x30), against a real gunicorn, a real
worker and a slow simulated Ollama: the bar moves, then the result, and the exit code says how
the job ended. The screens are printed (`pytest -rP` shows them; docs/cli.md holds a run's)."""
import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid

import pytest
import sqlalchemy as sa

from webapp import queue
from webapp.extensions import db
from webapp.models import Job

from helpers import both_backends, row, wait_until
from servers import ROOT, Gunicorn

PERCENT = re.compile(r" (\d+)%\n")
EXITED = re.compile(r"\[exit (\d+)\]")


class Terminal:
    """A detached tmux session of 100x30 on a server of its own (never the user's tmux)."""

    def __init__(self, command, env):
        self.socket = f"livegen-test-{uuid.uuid4().hex[:8]}"
        # The shell prints the exit code, then stays, so the last screen can be read.
        script = f"cd {shlex.quote(ROOT)} && {shlex.join(command)}; echo \"[exit $?]\"; sleep 600"
        settings = [arg for name, value in env.items() for arg in ("-e", f"{name}={value}")]
        self.tmux("new-session", "-d", "-x", "100", "-y", "30", "-s", "cli", *settings, "sh", "-c", script)
        self.socket_path = self.tmux("display-message", "-p", "#{socket_path}").strip()

    def tmux(self, *args):
        # An explicit environment without COLUMNS and LINES: a library's curses set-up may have put
        # 80 and 24 in this process's C environment, and rich would then draw 80 columns in 100.
        env = {name: value for name, value in os.environ.items() if name not in ("COLUMNS", "LINES")}
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True,
                              env=env).stdout

    def screen(self):
        return self.tmux("capture-pane", "-p", "-t", "cli")

    def wait_for(self, predicate, timeout, what):
        """The first screen `predicate` holds for."""
        def matching():
            shown = self.screen()
            return shown if predicate(shown) else None
        return wait_until(matching, timeout, what, interval=0.05)

    def close(self):
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, check=False)
        with contextlib.suppress(FileNotFoundError):  # tmux leaves its socket file behind
            os.unlink(self.socket_path)


@pytest.fixture
def terminal(database_url):
    """terminal(web, *submit arguments): `flask jobs submit … --watch` in a new tmux session."""
    if shutil.which("tmux") is None:
        if os.environ.get("REQUIRE_TMUX") == "1":
            pytest.fail("tmux is not installed (REQUIRE_TMUX=1)")
        pytest.skip("tmux is not installed (apt-get install tmux)")
    opened = []

    def open_one(web, *args):
        command = [sys.executable, "-m", "flask", "--app", "wsgi", "jobs", "submit", *args, "--watch"]
        env = {"DATABASE_URL": database_url, "LIVEGEN_URL": web.url, "SECRET_KEY": "test-secret"}
        opened.append(Terminal(command, env))
        return opened[-1]

    yield open_one
    for term in opened:
        print(f"----- the last screen -----\n{term.screen()}")
        term.close()


def percent(screen):
    """The bar's percentage while the job runs (None before the bar, or once it has ended)."""
    found = PERCENT.search(screen)
    value = int(found.group(1)) if found and "generating" in screen else None
    return value if value is not None and 0 < value < 100 else None


def learned_from(count, sim):
    """`count` quick runs of 150 tokens first: the server then knows how long an answer runs, and
    the watched job's time left has a figure and a range (its speed is measured as it runs)."""
    sim.tokens_per_second = 400.0
    for n in range(count):
        queue.enqueue(prompt=f"Warm-up {n}", model="llama3.2", options={"num_predict": 150})

    def all_done():
        db.session.commit()  # each poll its own transaction
        return db.session.scalar(sa.select(sa.func.count()).where(Job.status != "completed")) == 0
    wait_until(all_done, 30, "the warm-up jobs to complete")


def show(title, screen):
    print(f"----- {title} -----\n{screen.rstrip()}\n")


def exit_code(screen):
    return int(EXITED.search(screen).group(1))


@both_backends
def test_the_bar_moves_then_the_result_shows_and_the_exit_code_is_0(app, sim, spawn, database_url, terminal):
    spawn(sim.url, PROGRESS_INTERVAL="0.2").wait_ready()
    learned_from(3, sim)
    sim.tokens_per_second = 15.0  # 150 tokens: ten seconds of a bar to watch
    with Gunicorn(database_url, SSE_POLL_INTERVAL="0.1") as web:
        term = terminal(web, "Write a story about a lighthouse keeper", "--num-predict", "150")
        # Past 10 %, a second in: the time left is then worked out at the job's own speed.
        first = term.wait_for(lambda shown: (percent(shown) or 0) >= 10, 60, "the bar to show a job under way")
        moved = min(percent(first) + 20, 95)  # a slow start may show the first frame late
        later = term.wait_for(lambda shown: (percent(shown) or 0) >= moved, 30, "the bar to move")
        last = term.wait_for(EXITED.search, 30, "the command to end")
    for title, screen in (("the bar", first), ("the bar, later", later), ("the end", last)):
        show(title, screen)
    assert exit_code(last) == 0
    assert "left (" in first + later, "the time left, with its range, learned from the earlier jobs"
    result = row(db.session.scalar(sa.select(Job.job_id).order_by(Job.id.desc()).limit(1))).result
    assert "completed" in last and "100%" in last and "150 tokens" in last
    assert " ".join(result.split()[:8]) in " ".join(last.split()), "the answer is printed at the end"


@pytest.mark.parametrize(("args", "code", "word"), [
    (["No such model here", "--model", "nosuch"], 1, "failed"),
    (["A story to stop halfway", "--num-predict", "300"], 2, "cancelled"),
])
def test_a_failed_job_exits_1_and_a_cancelled_one_2(app, sim, spawn, database_url, terminal, args, code, word):
    sim.tokens_per_second = 30.0
    spawn(sim.url, PROGRESS_INTERVAL="0.2").wait_ready()
    with Gunicorn(database_url, SSE_POLL_INTERVAL="0.1") as web:
        term = terminal(web, *args)
        if word == "cancelled":
            running = term.wait_for(lambda shown: (percent(shown) or 0) >= 20, 60, "the job to run a while")
            show("running", running)
            queue.request_cancel(row(db.session.scalar(sa.select(Job.job_id))))
        last = term.wait_for(EXITED.search, 60, "the command to end")
    show(f"the end ({word})", last)
    assert exit_code(last) == code and f"{word} " in last
