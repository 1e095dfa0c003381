"""Extension singletons, bound to an app in `create_app` (so tests and the worker get their own),
and the one safe way to drop a session."""
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.exc import InterfaceError, OperationalError

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
