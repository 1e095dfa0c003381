"""The shared core of livegen: `create_app` builds a Flask app with settings and the database,
and no routes. The web side (`webapp.web`) adds its routes to it; the worker uses it as it is."""
import os

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from webapp import cli
from webapp import config as settings
from webapp.extensions import db, migrate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def create_app(config=None):
    """Laptop defaults, then the environment, then `config` (tests)."""
    app = Flask(__name__, instance_path=os.path.join(ROOT, "instance"),
                template_folder=os.path.join(ROOT, "templates"),
                static_folder=os.path.join(ROOT, "static"))
    app.config.from_mapping(settings.from_env(os.environ, app.instance_path))
    app.config.update(config or {})
    settings.ensure_secret_key(app.config)
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(app.config)
    os.makedirs(app.instance_path, exist_ok=True)
    register_extensions(app)
    cli.register(app)
    return app


def engine_options(config):
    # hide_parameters: a failed statement's parameters stay out of its error message, or every
    # warning of an outage would log a prompt or the whole generated text.
    url = config["SQLALCHEMY_DATABASE_URI"]
    if url.startswith("mysql"):
        # READ COMMITTED: every statement sees the latest commit, whatever else the session did.
        # A fixed pool without overflow: queries are short, so a burst waits a few ms for a
        # connection instead of opening (and then closing) new ones, which costs far more.
        # Timeouts: a database that stops answering with its port open must fail a request in
        # seconds (503), not hold it for the whole outage. PyMySQL's read timeout also bounds the
        # wait for the server's greeting; connect_timeout covers only the TCP connect.
        timeouts = {"connect_timeout": config["DB_CONNECT_TIMEOUT"],
                    "read_timeout": config["DB_READ_TIMEOUT"], "write_timeout": config["DB_WRITE_TIMEOUT"]}
        return {"hide_parameters": True, "isolation_level": "READ COMMITTED", "pool_pre_ping": True,
                "pool_recycle": 280, "pool_size": config["DB_POOL_SIZE"], "max_overflow": 0,
                "pool_timeout": config["DB_POOL_TIMEOUT"], "connect_args": timeouts}
    if url.startswith("sqlite"):
        return {"hide_parameters": True, "connect_args": {"timeout": 30}}
    return {"hide_parameters": True, "pool_pre_ping": True}


def register_extensions(app):
    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(ROOT, "migrations"))


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record):
    """WAL lets the web read while the worker writes; busy_timeout waits instead of failing."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()
