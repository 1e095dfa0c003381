"""Owners: every job belongs to a browser session or an API key; named API keys, stored hashed.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=3), "mysql", "mariadb")


def upgrade():
    # Jobs made before owners existed belong to the open API's anonymous owner.
    op.add_column("ai_generation_jobs",
                  sa.Column("owner", sa.String(80), nullable=False, server_default="anonymous"))
    op.create_index("ix_jobs_owner", "ai_generation_jobs", ["owner", "id"])
    op.create_index("ix_jobs_turns", "ai_generation_jobs", ["status", "owner", "id"])
    # The claim's read in id order, covered: (status, run_after, id) could not give that order,
    # so MariaDB walked the primary key past every ended job (bench/claim_bench.py).
    op.drop_index("ix_jobs_claim", "ai_generation_jobs")
    op.create_index("ix_jobs_queue_head", "ai_generation_jobs", ["status", "id", "owner", "run_after", "cancel_requested"])
    op.create_table(
        "ai_api_keys",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("hint", sa.String(12), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        mysql_charset="utf8mb4", mariadb_charset="utf8mb4",
    )


def downgrade():
    op.drop_table("ai_api_keys")
    op.drop_index("ix_jobs_queue_head", "ai_generation_jobs")
    op.create_index("ix_jobs_claim", "ai_generation_jobs", ["status", "run_after", "id"])
    op.drop_index("ix_jobs_turns", "ai_generation_jobs")
    op.drop_index("ix_jobs_owner", "ai_generation_jobs")
    op.drop_column("ai_generation_jobs", "owner")
