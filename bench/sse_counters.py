"""Counters for the SSE benchmark's two web apps, and a stats route to read them.

`instrument(app, extra)` registers `GET /sse-bench/stats`, answering JSON with this process's pid,
  selects        SELECT statements this process sent to the database server (counted where PyMySQL
                 sends every statement, so SQLAlchemy's own connect-time queries count too; other
                 databases on the same server do not show up here, as they do in Com_select);
  queries        every statement it sent (SELECTs, ROLLBACKs, SETs, ...);
  connects       new database connections it opened (a pool that churns shows here);
  watcher_reads  the product's own count of its watcher's queries (webapp/web/watch.py);
and the `extra` counters (the baseline's). Counting costs well under a microsecond per statement.
"""
import os

import pymysql.connections
import sqlalchemy as sa
from flask import Blueprint, current_app, jsonify
from sqlalchemy.engine import Engine

from webapp.web import watch

COUNTS = {"selects": 0, "queries": 0, "connects": 0}
_query = pymysql.connections.Connection.query


def _counted_query(self, sql, unbuffered=False):
    COUNTS["queries"] += 1
    head = sql.lstrip()[:6]
    if (head.upper() if isinstance(head, str) else head.upper().decode("latin-1")) == "SELECT":
        COUNTS["selects"] += 1
    return _query(self, sql, unbuffered)


pymysql.connections.Connection.query = _counted_query


@sa.event.listens_for(Engine, "connect")
def _count_connects(_dbapi_connection, _record):
    COUNTS["connects"] += 1


def instrument(app, extra=None):
    bp = Blueprint("sse_bench_stats", __name__, url_prefix="/sse-bench")

    @bp.get("/stats")
    def stats():
        return jsonify(pid=os.getpid(), watcher_reads=watch.get(current_app).reads, **COUNTS, **(extra or {}))

    app.register_blueprint(bp)
    return app
