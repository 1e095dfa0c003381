"""`flask keys create/list/revoke`: the JSON API's keys."""
import click
from flask.cli import AppGroup

from webapp.owners import keys

group = AppGroup("keys", help="Manage the JSON API's keys.")


@group.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="An operator's key: it also opens /admin, which shows every owner's jobs.")
def create_key(name, admin):
    """Make a key named NAME and print its secret (shown this once; only its hash is kept)."""
    try:
        secret = keys.create(name, admin=admin)
    except keys.KeyProblem as problem:
        raise click.ClickException(str(problem)) from None
    click.echo(secret)
    click.echo(f"Key '{name.strip()}' created. Keep the secret now: it cannot be shown again. "
               "Send it as 'Authorization: Bearer <secret>'. From now on the API needs a key.", err=True)


@group.command("list")
def list_keys():
    """The keys: name, the secret's first characters, operator or client, and when each was made."""
    rows = keys.listed()
    for key in rows:
        role = "operator" if key.admin else "client"
        click.echo(f"{key.name}\t{key.hint}…\t{role}\t{key.created_at:%Y-%m-%d %H:%M} UTC")
    if not rows:
        click.echo("No keys: the API is open (unless API_TOKEN is set).", err=True)


@group.command("revoke")
@click.argument("name")
def revoke_key(name):
    """Delete the key named NAME: its secret stops working at once."""
    if not keys.revoke(name):
        raise click.ClickException(f"There is no key named '{name}'.")
    click.echo(f"Key '{name}' revoked.")
