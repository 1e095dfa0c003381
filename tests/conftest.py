"""Fixtures in flaskr's shape: a fresh app and database per test, on SQLite or on MySQL."""
import contextlib
import os
import shutil

import pytest
import sqlalchemy as sa
from flask_migrate import upgrade

from webapp import history
from webapp.extensions import db
from webapp.web import create_app

from servers import WorkerProcess

MYSQL_URL = os.environ.get("TEST_DATABASE_URL", "")
REQUIRE_MYSQL = os.environ.get("REQUIRE_MYSQL") == "1"
TEST_CONFIG = {"TESTING": True, "SECRET_KEY": "test-secret", "RATE_LIMIT_PER_MINUTE": 0,
               "PROGRESS_INTERVAL": 0.05, "LEASE_SECONDS": 30, "OLLAMA_READ_TIMEOUT": 10.0}


def make_app(url, **overrides):
    return create_app({**TEST_CONFIG, "SQLALCHEMY_DATABASE_URI": url, **overrides})


DROP_ALL = ("DROP TABLE IF EXISTS ai_metric_totals, ai_webhook_deliveries, ai_api_keys, ai_rate_windows, "
            "ai_generation_output, "
            "ai_generation_jobs, "
            "ai_generation_batches, alembic_version")


def run_sql(url, statement):
    """One statement in its own connection, committed."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(statement))
    finally:
        engine.dispose()


def migrate(url):
    """Run the real migrations (what `flask db upgrade` runs) against `url`."""
    app = make_app(url)
    with app.app_context():
        upgrade()
        db.engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    """One migrated SQLite file, copied for each test (migrating per test would be slow)."""
    path = tmp_path_factory.mktemp("template") / "livegen.sqlite3"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def mysql_url(worker_id):
    """The MySQL test database, migrated once. Missing server: skip, or fail under REQUIRE_MYSQL.
    Under pytest-xdist each test process gets a database of its own beside TEST_DATABASE_URL's,
    dropped at the end: the tests empty the tables they use."""
    if not MYSQL_URL:
        message = "TEST_DATABASE_URL is not set, so the MySQL tests cannot run"
        if REQUIRE_MYSQL:
            pytest.fail(message + " (REQUIRE_MYSQL=1)")
        pytest.skip(message)
    url, own = sa.make_url(MYSQL_URL), worker_id != "master"
    if own:
        url = url.set(database=f"{url.database}_{worker_id}")
    try:
        if own:
            run_sql(MYSQL_URL, f"CREATE DATABASE IF NOT EXISTS `{url.database}` CHARACTER SET utf8mb4")
        run_sql(url, DROP_ALL)
    except sa.exc.OperationalError as error:
        why = "is not reachable" + (f", or its user may not create this test process's database {url.database} "
                                    "(TEST_PROCESSES=0 runs without)" if own else "")
        if REQUIRE_MYSQL:
            pytest.fail(f"MySQL at {MYSQL_URL} {why}: {error}")
        pytest.skip(f"MySQL {why}: {error}")
    url = url.render_as_string(hide_password=False)
    migrate(url)
    yield url
    if own:
        run_sql(MYSQL_URL, f"DROP DATABASE IF EXISTS `{sa.make_url(url).database}`")


@pytest.fixture
def backend(request):
    """'sqlite' unless a test parametrizes it (indirect) with 'mysql'."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def database_url(request, backend, tmp_path, sqlite_template):
    if backend == "mysql":
        url = request.getfixturevalue("mysql_url")
        run_sql(url, "DELETE FROM ai_webhook_deliveries")
        run_sql(url, "DELETE FROM ai_generation_jobs")
        run_sql(url, "DELETE FROM ai_generation_batches")
        run_sql(url, "DELETE FROM ai_rate_windows")
        run_sql(url, "DELETE FROM ai_api_keys")
        run_sql(url, "DELETE FROM ai_metric_totals")
        return url
    path = tmp_path / "livegen.sqlite3"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def sim():
    from simulator import Simulator

    with Simulator(tokens_per_second=400.0, jitter=0.1, load_delay=0.0) as simulator:
        yield simulator


@contextlib.contextmanager
def app_in_context(database_url, **overrides):
    """The suite's app, in its app context, disposed after. Nothing listens on port 9: a test
    that streams points OLLAMA_URL at its `sim`."""
    app = make_app(database_url, **{"OLLAMA_URL": "http://127.0.0.1:9", **overrides})
    history.forget()  # what an earlier test's jobs taught stays with that test
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def app(database_url):
    with app_in_context(database_url) as app:
        yield app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def spawn(database_url):
    """spawn(ollama_url, **settings) starts a real worker process (`python worker.py`, configured
    only through the environment); all are killed at teardown, their output printed for a failure."""
    started = []

    def start(ollama_url, **settings):
        env = {"PROGRESS_INTERVAL": "0.1", "WORKER_CONCURRENCY": "2", "LEASE_SECONDS": "30",
               "SHUTDOWN_GRACE": "5", "MAX_ATTEMPTS": "3", "OLLAMA_READ_TIMEOUT": "60"}
        env.update({key: str(value) for key, value in settings.items()})
        worker = WorkerProcess(database_url, ollama_url, **env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()
    for worker in started:  # shown by pytest only when the test failed
        print(f"----- worker pid {worker.pid} (exit {worker.proc.returncode}) -----\n{worker.output()}")
        worker.close()
