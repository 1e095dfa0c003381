"""`flask jobs submit/watch/list/cancel/retry/purge`: jobs from a shell, where the app runs (its
settings, its database). New jobs belong to the operator (`cli`) or, with `--key`, to a key."""
import os

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import AppGroup

from webapp import queue, retention, statuses
from webapp.batches import store as batch_store
from webapp.cli.endings import INTERRUPTED, EndingCommand
from webapp.cli.owner import acting, key_option
from webapp.extensions import db
from webapp.models import Job

group = AppGroup("jobs", help="Submit, watch, list, cancel, retry and purge generation jobs.")

url_option = click.option(
    "--url", envvar="LIVEGEN_URL", default=lambda: f"http://127.0.0.1:{os.environ.get('PORT', '5000')}",
    show_default="$LIVEGEN_URL, else http://127.0.0.1:$PORT", help="The web server whose stream to follow.")
watch_option = click.option("--watch", is_flag=True,
                            help="Follow the job to its end; the exit code says how it ended.")


def _not_blank(_ctx, _param, value):
    if not value.strip():
        raise click.BadParameter("must not be empty")
    return value


@group.command("submit", cls=EndingCommand)
@click.argument("prompt", callback=_not_blank)
@click.option("--model", help="An Ollama model name (default: DEFAULT_MODEL).")
@click.option("--system", help="A system prompt.")
@click.option("--num-predict", type=click.IntRange(1, 32_768), help="The most tokens to generate.")
@click.option("--temperature", type=click.FloatRange(0, 2), help="0 to 2: how freely the model picks words.")
@key_option
@watch_option
@url_option
def submit(prompt, model, system, num_predict, temperature, key_name, watch, url):
    """Queue a new job; print its id.

    With --watch: follow it to its end instead, then print its text; the exit code says how it
    ended (0 completed, 1 failed, 2 cancelled, 3 anything else)."""
    options = {name: value for name, value in (("num_predict", num_predict), ("temperature", temperature))
               if value is not None}
    job = queue.enqueue(prompt=prompt, model=model or current_app.config["DEFAULT_MODEL"], system=system,
                        options=options, owner=acting(key_name))
    _queued(job, watch, url)


def _queued(job, watch, url):
    """Say what was queued: its id on stdout, or with `watch` its end (exits with its code)."""
    if not watch:
        click.echo(job.job_id)
        click.echo(f"Queued as {job.owner}. Follow it: flask jobs watch {as_argument(job.job_id)}", err=True)
        return
    follow(job.job_id, url)


def as_argument(job_id):
    """A job id as the commands take it: one may start with '-', which click takes for an option."""
    return f"-- {job_id}" if job_id.startswith("-") else job_id


@group.command("watch", cls=EndingCommand)
@click.argument("job_id")
@url_option
def watch(job_id, url):
    """Follow a job live until it ends.

    A bar, tokens, speed, elapsed and time left, and the text as it arrives, from the web server's
    stream (from the database when the server cannot be reached); a completed job's text is then
    printed to stdout. Exit code: 0 completed, 1 failed, 2 cancelled, 3 no such job; Ctrl-C stops
    watching, not the job (130)."""
    follow(job_id, url)


def follow(job_id, url):
    # rich takes a good part of a second to import: imported here, the web and worker processes,
    # which register these commands but never draw, do not pay for it.
    from webapp.cli.watch import watch as draw

    ctx = click.get_current_context()
    try:
        ctx.exit(draw(job_id, url))
    except KeyboardInterrupt:
        click.echo(f"\nStopped watching; job {job_id} goes on ('flask jobs cancel {as_argument(job_id)}' "
                   "stops it).", err=True)
        ctx.exit(INTERRUPTED)


@group.command("list")
@click.option("--all", "everyone", is_flag=True, help="Every owner's jobs, not only the operator's.")
@key_option
@click.option("--status", type=click.Choice(statuses.ALL))
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
def list_jobs(everyone, key_name, status, limit):
    """List the newest jobs.

    The operator's, a key's (--key) or everyone's (--all); single jobs, not batch items."""
    from webapp.cli.tables import print_jobs  # rich: see `follow`

    rows = everyones_jobs(limit, status) if everyone else queue.owned([acting(key_name)], limit, status=status)
    print_jobs(rows, with_owner=everyone)


def everyones_jobs(limit, status):
    query = sa.select(Job).where(Job.batch_pk.is_(None)).order_by(Job.id.desc()).limit(limit)
    return list(db.session.scalars(query.where(Job.status == status) if status else query))


def _job(job_id):
    job = queue.get(job_id)
    if job is None:
        raise click.ClickException(f"No job with id '{job_id[:64]}'.")
    return job


@group.command("cancel")
@click.argument("job_id")
def cancel(job_id):
    """Cancel a job, whoever owns it.

    A queued job at once, a running one at the worker's next write. Exits 1 when it has
    already ended."""
    outcome = queue.request_cancel(_job(job_id))
    if outcome is None:
        raise click.ClickException(f"Job {job_id} has already ended ({queue.get(job_id).status}); "
                                   "there is nothing to cancel.")
    click.echo(f"Cancelled job {job_id}." if outcome == statuses.CANCELLED
               else f"Cancel requested: the worker stops job {job_id} at its next write.")


@group.command("retry", cls=EndingCommand)
@click.argument("job_id")
@watch_option
@url_option
def retry(job_id, watch, url):
    """Queue a failed or cancelled job again.

    A new job with the same prompt, model, system and options, for the same owner; its id is
    printed (with --watch: it is followed, as submit --watch does). The ended job stays as it
    ended."""
    job = _job(job_id)
    batch = batch_store.of_item(job)
    if batch is not None:  # its batch counts its items: a job outside it would not be counted
        raise click.ClickException(f"Job {job_id} is an item of batch {batch.batch_id}: retry the batch's "
                                   f"failed items (POST /api/v1/ai/generation/batches/{batch.batch_id}/retry).")
    if job.status not in (statuses.FAILED, statuses.CANCELLED):
        raise click.ClickException(f"Job {job_id} is {job.status}: only a failed or cancelled job is retried.")
    again = queue.enqueue(prompt=job.prompt, model=job.model, system=job.system, options=job.options,
                          owner=job.owner)
    _queued(again, watch, url)


@group.command("purge")
@click.option("--older-than", "days", type=click.FloatRange(min=0), required=True, metavar="DAYS",
              help="Delete jobs that ended more than DAYS days ago.")
def purge(days):
    """Delete old ended jobs.

    Ended jobs (and their text) older than DAYS go; queued and running jobs stay."""
    deleted = retention.purge(days)
    click.echo(f"Deleted {deleted} ended job(s) older than {days:g} day(s).")
