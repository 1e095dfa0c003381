"""The tables `flask jobs list` and `flask queue` print, drawn with rich."""
from rich.console import Console
from rich.table import Table
from rich.text import Text

from webapp import statuses
from webapp.cli.owner import shown
from webapp.cli.screen import duration
from webapp.models import utcnow
from webapp.telemetry.overview import key_names

PIPE_WIDTH = 200  # a pipe gets whole rows, not rich's 80 columns: a script greps ids and prompts
RIGHT = ("place", "tokens")
STATUS_STYLES = {statuses.COMPLETED: "green", statuses.FAILED: "red", statuses.CANCELLED: "yellow",
                 statuses.PROCESSING: "cyan"}


def console():
    found = Console()
    if not found.is_terminal:
        found.width = PIPE_WIDTH
    return found


def table(headers, rows, width, title=None, prompt=True):
    """A borderless table that keeps every column whole (ids are what the other commands take),
    but for a last `prompt` column, which gets what the width leaves, cut with '…'."""
    widths = [max([len(header), *(len(row[index]) for row in rows)]) for index, header in enumerate(headers)]
    if prompt:
        room = max(10, width - sum(widths[:-1]) - 2 * (len(widths) - 1))
        rows, widths[-1] = [[*row[:-1], cut(row[-1], room)] for row in rows], None
    drawn = Table(box=None, pad_edge=False, title=title, title_justify="left", title_style="bold")
    for header, least in zip(headers, widths, strict=True):
        drawn.add_column(header, no_wrap=True, min_width=least, overflow="ellipsis",
                         justify="right" if header in RIGHT else "left")
    for row in rows:  # Text, not markup: a prompt may hold "[/]"
        drawn.add_row(*(Text(cell) if isinstance(cell, str) else cell for cell in row))
    return drawn


def cut(text, width):
    line = " ".join((text or "").split())  # one line: a prompt's line breaks would break the row
    return line if len(line) <= width else line[:width - 1] + "…"


def age(moment, now):
    return duration(int((now - moment).total_seconds() * 1000)) if moment else "—"


def print_jobs(rows, with_owner):
    """`flask jobs list`: a row per job, newest first."""
    out, now, names = console(), utcnow(), key_names() if with_owner else {}
    if not rows:
        out.print("No jobs.")
        return
    headers = ["job", "status", "model", "tokens", "age", *(["owner"] if with_owner else []), "prompt"]
    cells = [[job.job_id, Text(job.status, style=STATUS_STYLES.get(job.status, "")), job.model,
              str((job.completion_tokens if job.status == statuses.COMPLETED else job.current_tokens) or 0),
              age(job.created_at, now), *([shown(job.owner, names)] if with_owner else []), job.prompt]
             for job in rows]
    out.print(table(headers, cells, out.width))


def line_table(line, names, width):
    """The next jobs in line, in the order the claim takes them."""
    cells = [[str(job["place"]), job["job_id"], shown(job["owner"], names), job["model"], duration(job["wait_ms"]),
              job["prompt"]] for job in line]
    return table(["place", "job", "owner", "model", "waiting", "prompt"], cells, width, title="next in line")


def worker_table(worker_id, jobs, names, width):
    """One worker's running jobs: how long each has run, its lease (negative, in red: run out,
    the sweep takes the job back) and how long ago its row was written (a write renews it)."""
    cells = [[job["job_id"], shown(job["owner"], names), job["model"], str(job["current_tokens"] or 0),
              duration(job["running_ms"]), lease(job["lease_left_ms"]), f"{duration(job['written_ms'])} ago"]
             for job in jobs]
    headers = ["job", "owner", "model", "tokens", "running", "lease left", "written"]
    return table(headers, cells, width, title=f"worker {worker_id}: {len(jobs)} running", prompt=False)


def lease(left_ms):
    if left_ms is None or left_ms >= 0:
        return duration(left_ms)
    return Text(f"-{duration(-left_ms)}", style="red")
