"""Which migration the database is at, and which this code's migrations end with."""
import functools
import os

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.exc import SQLAlchemyError

from webapp.extensions import db


@functools.cache
def _scripts(directory):
    return ScriptDirectory(directory)


def _directory(app):
    return _scripts(os.path.abspath(app.extensions["migrate"].directory))


def head(app):
    """The newest migration in this code's migrations/ (read once per process)."""
    return _directory(app).get_current_head()


def is_newer(app, revision):
    """Whether `revision` is a migration this code does not know: a newer release's."""
    if revision is None:
        return False
    try:
        return _directory(app).get_revision(revision) is None
    except CommandError:  # alembic's "no such revision"
        return True


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
