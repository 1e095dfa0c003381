"""The livegen web application: `create_app` builds it from the environment (and a test mapping)."""
import os

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.middleware.proxy_fix import ProxyFix

from webapp import config as settings
from webapp.extensions import db, migrate
from webapp.ratelimit import RateLimiter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def create_app(config=None, routes=True):
    """Laptop defaults, then the environment, then `config` (tests). The worker passes
    `routes=False`: it needs the database, never a route."""
    app = Flask(__name__, instance_path=os.path.join(ROOT, "instance"),
                template_folder=os.path.join(ROOT, "templates"),
                static_folder=os.path.join(ROOT, "static"))
    app.config.from_mapping(settings.from_env(os.environ, app.instance_path))
    app.config.update(config or {})
    settings.ensure_secret_key(app.config)
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(app.config["SQLALCHEMY_DATABASE_URI"],
                                                             app.config["DB_POOL_SIZE"])
    os.makedirs(app.instance_path, exist_ok=True)
    register_extensions(app)
    if routes:
        register_blueprints(app)
    if app.config["PROXY_HOPS"]:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["PROXY_HOPS"], x_proto=1)
    return app


def engine_options(url, pool_size):
    if url.startswith("mysql"):
        # READ COMMITTED: every statement sees the latest commit, whatever else the session did.
        # A fixed pool without overflow: queries are short, so a burst waits a few ms for a
        # connection instead of opening (and then closing) new ones, which costs far more.
        return {"isolation_level": "READ COMMITTED", "pool_pre_ping": True, "pool_recycle": 280,
                "pool_size": pool_size, "max_overflow": 0, "pool_timeout": 10}
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 30}}
    return {"pool_pre_ping": True}


def register_extensions(app):
    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(ROOT, "migrations"))
    app.extensions["livegen.ratelimit"] = RateLimiter(app.config["RATE_LIMIT_PER_MINUTE"])


def register_blueprints(app):
    # Imported here so that importing the package (the worker does) loads no routes.
    from webapp import api, cards, csrf, errors, pages, stream, watch

    app.register_blueprint(api.bp)
    app.register_blueprint(stream.bp)
    app.register_blueprint(pages.bp)
    errors.register(app)
    cards.register(app)
    watch.init_app(app)
    app.jinja_env.globals["csrf_token"] = csrf.token


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record):
    """WAL lets the web read while the worker writes; busy_timeout waits instead of failing."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()
