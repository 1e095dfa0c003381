"""Create ai_generation_jobs: the contract's columns plus queue, lease and change-counter columns.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

MYSQL = ("mysql", "mariadb")
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=3), *MYSQL)
LongText = sa.Text().with_variant(mysql.MEDIUMTEXT(), *MYSQL)
PublicId = sa.String(43).with_variant(mysql.VARCHAR(43, collation="utf8mb4_bin"), *MYSQL)
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    op.create_table(
        "ai_generation_jobs",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("job_id", PublicId, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("phase", sa.String(16), nullable=True),
        sa.Column("prompt", LongText, nullable=False),
        sa.Column("system", LongText, nullable=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("result", LongText, nullable=True),
        sa.Column("progress_percentage", sa.Float(), nullable=False),
        sa.Column("progress_is_estimate", sa.Boolean(), nullable=False),
        sa.Column("expected_tokens", sa.Integer(), nullable=True),
        sa.Column("current_tokens", sa.Integer(), nullable=False),
        sa.Column("tokens_per_second", sa.Float(), nullable=False),
        sa.Column("elapsed_time", sa.Integer(), nullable=False),
        sa.Column("estimated_time_remaining", sa.Integer(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("total_tokens", sa.Integer(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.String(64), nullable=True),
        sa.Column("lease_until", Timestamp, nullable=True),
        sa.Column("run_after", Timestamp, nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("started_at", Timestamp, nullable=True),
        sa.Column("completed_at", Timestamp, nullable=True),
        sa.Column("last_update_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ai_generation_jobs")),
        sa.UniqueConstraint("job_id", name=op.f("uq_ai_generation_jobs_job_id")),
        mysql_charset="utf8mb4",
        mariadb_charset="utf8mb4",
    )
    # The claim reads queued jobs in id order; the sweep reads expired leases; the ETA reads
    # a model's latest completed jobs.
    op.create_index("ix_jobs_claim", "ai_generation_jobs", ["status", "run_after", "id"])
    op.create_index("ix_jobs_lease", "ai_generation_jobs", ["status", "lease_until"])
    op.create_index("ix_jobs_model_done", "ai_generation_jobs", ["model", "status", "completed_at"])


def downgrade():
    op.drop_table("ai_generation_jobs")
