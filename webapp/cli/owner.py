"""Who the CLI acts as: the operator (owner `cli`), or an API key's owner (`--key NAME`)."""
import click
import sqlalchemy as sa

from webapp import owners
from webapp.extensions import db
from webapp.models import ApiKey

OPERATOR = "cli"  # the owner of jobs made from a shell: no browser session, no key

key_option = click.option("--key", "key_name", metavar="NAME",
                          help="Act as the owner of the API key NAME (its jobs, as the API lists them) "
                               "instead of the operator ('cli').")


def acting(key_name):
    """The owner name for `--key NAME`, or the operator's without it."""
    if key_name is None:
        return OPERATOR
    secret_hash = db.session.scalar(sa.select(ApiKey.secret_hash).where(ApiKey.name == key_name.strip()))
    if secret_hash is None:
        raise click.ClickException(f"There is no key named '{key_name}' ('flask keys list' shows them).")
    return owners.key(secret_hash)


def shown(owner, key_names):
    """An owner as a person reads it: a key by its name, a browser by the end of its hash."""
    if owner in key_names:
        return f"key {key_names[owner]}"
    if owner.startswith("browser:"):
        return f"browser …{owner[-6:]}"
    return owner
