"""`flask jobs ...` and `flask keys ...`: what an operator does from a shell."""
import click
from flask.cli import AppGroup

from webapp import retention
from webapp.owners import keys

jobs = AppGroup("jobs", help="Manage generation jobs.")
api_keys = AppGroup("keys", help="Manage the JSON API's keys.")


@jobs.command("purge")
@click.option("--older-than", "days", type=click.FloatRange(min=0), required=True, metavar="DAYS",
              help="Delete jobs that ended more than DAYS days ago.")
def purge(days):
    """Delete ended jobs (and their text) older than DAYS; queued and running jobs stay."""
    deleted = retention.purge(days)
    click.echo(f"Deleted {deleted} ended job(s) older than {days:g} day(s).")


@api_keys.command("create")
@click.argument("name")
def create_key(name):
    """Make a key named NAME and print its secret (shown this once; only its hash is kept)."""
    try:
        secret = keys.create(name)
    except keys.KeyProblem as problem:
        raise click.ClickException(str(problem)) from None
    click.echo(secret)
    click.echo(f"Key '{name.strip()}' created. Keep the secret now: it cannot be shown again. "
               "Send it as 'Authorization: Bearer <secret>'. From now on the API needs a key.", err=True)


@api_keys.command("list")
def list_keys():
    """The keys: name, the secret's first characters, and when each was made."""
    rows = keys.listed()
    for key in rows:
        click.echo(f"{key.name}\t{key.hint}…\t{key.created_at:%Y-%m-%d %H:%M} UTC")
    if not rows:
        click.echo("No keys: the API is open (unless API_TOKEN is set).", err=True)


@api_keys.command("revoke")
@click.argument("name")
def revoke_key(name):
    """Delete the key named NAME: its secret stops working at once."""
    if not keys.revoke(name):
        raise click.ClickException(f"There is no key named '{name}'.")
    click.echo(f"Key '{name}' revoked.")


def register(app):
    app.cli.add_command(jobs)
    app.cli.add_command(api_keys)
