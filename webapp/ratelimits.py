"""The limit on new jobs per client and minute, counted in the database (shared by every process)."""
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite

from webapp.extensions import db
from webapp.models import RateWindow, utcnow

KEEP_WINDOWS = timedelta(minutes=2)


def _count(key, window):
    """One more hit in this window, made atomically by the database (an upsert)."""
    values = {"key": key[:100], "window": window, "hits": 1}
    if db.engine.dialect.name in ("mysql", "mariadb"):
        return mysql.insert(RateWindow).values(values).on_duplicate_key_update(hits=RateWindow.hits + 1)
    return (sqlite.insert(RateWindow).values(values)
            .on_conflict_do_update(index_elements=["key", "window"], set_={"hits": RateWindow.hits + 1}))


def hit(key, per_minute, now=None):
    """Count a hit for `key`; the seconds to wait when it is over `per_minute` in this minute,
    else 0. A limit of 0 or less is no limit."""
    if per_minute <= 0:
        return 0
    now = now or utcnow()
    window = now.replace(second=0, microsecond=0)
    db.session.execute(_count(key, window))
    hits = db.session.execute(sa.select(RateWindow.hits).where(RateWindow.key == key[:100],
                                                               RateWindow.window == window)).scalar_one()
    db.session.commit()
    return 0 if hits <= per_minute else max(1, 60 - now.second)


def prune(now=None):
    """Forget windows that are over (the worker's sweep calls it now and then)."""
    deleted = db.session.execute(sa.delete(RateWindow).where(RateWindow.window < (now or utcnow()) - KEEP_WINDOWS))
    db.session.commit()
    return deleted.rowcount
