"""Which migration the database is at, and which this code's migrations end with."""
import functools
import os

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy.exc import SQLAlchemyError

from webapp.extensions import db


@functools.cache
def _head(directory):
    return ScriptDirectory(directory).get_current_head()


def head(app):
    """The newest migration in this code's migrations/ (read once per process)."""
    return _head(os.path.abspath(app.extensions["migrate"].directory))


def current():
    """The database's migration (None before the first), in a short transaction of its own.
    Raises SQLAlchemyError when the database does not answer."""
    try:
        return db.session.scalar(sa.text("SELECT version_num FROM alembic_version"))
    except SQLAlchemyError:
        db.session.rollback()
        if sa.inspect(db.engine).has_table("alembic_version"):  # it answered: the read itself failed
            raise
        return None  # it answered, and has never been migrated
    finally:
        db.session.rollback()
