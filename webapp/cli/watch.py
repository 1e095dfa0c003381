"""`flask jobs watch`: follow a job to its end on its server's SSE stream (or, when the server
cannot be reached, in the database), drawn live with rich; returns the exit code of its end."""
import click
import requests
from flask import current_app
from rich.console import Console
from rich.live import Live
from rich.text import Text

from webapp import queue, statuses
from webapp.cli import polling, stream
from webapp.cli.endings import EXIT_CODES
from webapp.cli.screen import Screen, Seen
from webapp.extensions import db


def watch(job_id, base_url):
    """Draw the job until it ends (the view on stderr), then print a completed job's text to
    stdout: `flask jobs watch ID > answer.txt` keeps the answer apart. Its exit code."""
    job = queue.get(job_id)
    if job is None:
        raise click.ClickException(f"No job with id '{job_id[:64]}'.")
    db.session.close()  # hold no database connection while the stream does the work
    console = Console(stderr=True)
    # Text, not markup: a model name (the CLI does not check it) may hold "[".
    console.print(Text.assemble("job ", (job.job_id, "bold"), f" · {job.model} · from {base_url}"), soft_wrap=True)
    seen = Seen()
    screen = Screen(console, seen)
    with Live(screen, console=console, refresh_per_second=8, redirect_stdout=False, redirect_stderr=False):
        try:
            for name, data in events(job_id, base_url, seen, console):
                seen.take(name, data)
                if seen.ended:
                    break
        finally:
            screen.done = True  # the last frame: Live draws it as it stops
    if seen.ended == statuses.COMPLETED:
        print_answer(seen.text)
    return EXIT_CODES[seen.ended]


def print_answer(text):
    """The text as it is for a pipe or a file; word-wrapped for a terminal to read."""
    out = Console()
    if out.is_terminal:
        out.print(Text(text))
    else:
        click.echo(text)


def events(job_id, base_url, seen, console):
    """The stream's events; when the server cannot be reached, or will not show this job, the
    same events made from the database, from where the stream stopped."""
    try:
        yield from stream.events(base_url, job_id)
        return
    except stream.Refused as refused:
        reason = str(refused)
    except requests.RequestException as error:
        reason = f"cannot be reached ({type(error).__name__})"
    interval = current_app.config["PROGRESS_INTERVAL"]  # as often as the worker writes
    console.print(f"The server at {base_url} {reason}: following the job in the database instead "
                  f"(a read every {interval:g} s).", style="yellow", markup=False, highlight=False)
    yield from polling.events(job_id, seen.position(), interval)
