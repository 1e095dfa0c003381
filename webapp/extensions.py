"""Extension singletons, bound to an app in `create_app` (so tests and the worker get their own),
the one safe way to drop a session, and a commit whose new row stays readable without a query."""
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm.attributes import set_committed_value

# Named constraints, so Alembic migrations are the same on SQLite and MySQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING))
migrate = Migrate()


def discard_session():
    """End the session whatever state its connection is in: closing one the database reset
    raises, and a process must not die of that (the pool drops the connection either way)."""
    try:
        db.session.remove()
    except (OperationalError, InterfaceError):
        db.session.registry.clear()


def commit_keeping(row, *names):
    """Commit, with these attributes of `row` still readable after it without a query: reading
    them back could fail on a database blink, and a client told 503 would send again what was
    created."""
    kept = {name: getattr(row, name) for name in names}
    db.session.commit()
    for name, value in kept.items():
        set_committed_value(row, name, value)
