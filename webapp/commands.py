"""`flask jobs ...`: what an operator does to the jobs from a shell."""
import click
from flask.cli import AppGroup

from webapp import retention

jobs = AppGroup("jobs", help="Manage generation jobs.")


@jobs.command("purge")
@click.option("--older-than", "days", type=click.FloatRange(min=0), required=True, metavar="DAYS",
              help="Delete jobs that ended more than DAYS days ago.")
def purge(days):
    """Delete ended jobs (and their text) older than DAYS; queued and running jobs stay."""
    deleted = retention.purge(days)
    click.echo(f"Deleted {deleted} ended job(s) older than {days:g} day(s).")


def register(app):
    app.cli.add_command(jobs)
