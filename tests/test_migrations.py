"""The migration builds, from an empty database, exactly the table the models describe."""
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from conftest import DROP_ALL, make_app, migrate, run_sql
from flask_migrate import downgrade

from webapp.extensions import db

from helpers import both_backends

CONTRACT_COLUMNS = {"job_id", "status", "progress_percentage", "current_tokens", "tokens_per_second",
                    "elapsed_time", "estimated_time_remaining", "last_update_at", "prompt_tokens",
                    "completion_tokens", "total_tokens", "error_message", "prompt", "model",
                    "created_at", "started_at", "completed_at"}
DESIGN_COLUMNS = {"id", "result", "attempts", "worker_id", "lease_until", "run_after", "version",
                  "cancel_requested", "options", "phase", "last_error", "prompt_kind", "done_reason",
                  "load_ms", "prompt_eval_ms", "cold_start", "estimated_time_remaining_low",
                  "estimated_time_remaining_high"}


@pytest.fixture
def empty_url(backend, tmp_path, request):
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    url = request.getfixturevalue("mysql_url")
    run_sql(url, DROP_ALL)
    return url


@both_backends
def test_upgrade_from_empty_matches_the_models(empty_url):
    migrate(empty_url)
    app = make_app(empty_url)
    with app.app_context():
        inspector = sa.inspect(db.engine)
        columns = {c["name"] for c in inspector.get_columns("ai_generation_jobs")}
        indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("ai_generation_jobs")}
        with db.engine.connect() as conn:
            drift = compare_metadata(MigrationContext.configure(conn), db.metadata)
        db.engine.dispose()
    assert columns >= CONTRACT_COLUMNS | DESIGN_COLUMNS
    assert indexes["ix_jobs_queue_head"] == ["status", "id", "owner", "run_after", "cancel_requested"]
    assert indexes["ix_jobs_lease"] == ["status", "lease_until"]
    assert drift == [], f"models and migrations differ: {drift}"


def _columns(url):
    app = make_app(url)
    with app.app_context():
        names = {c["name"] for c in sa.inspect(db.engine).get_columns("ai_generation_jobs")}
        db.engine.dispose()
    return names


@both_backends
def test_last_error_migration_goes_down_and_up_again(empty_url):
    migrate(empty_url)
    app = make_app(empty_url)
    with app.app_context():
        downgrade(revision="0001")
        db.engine.dispose()
    assert "last_error" not in _columns(empty_url) and "error_message" in _columns(empty_url)
    migrate(empty_url)
    assert "last_error" in _columns(empty_url)


def test_release_command_migrates(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    app = make_app(url)
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert "ai_generation_jobs" in sa.inspect(db.engine).get_table_names()
        db.engine.dispose()
