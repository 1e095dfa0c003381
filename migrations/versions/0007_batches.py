"""Batches: many prompts as one piece of work, with counters kept as their items end.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=3), "mysql", "mariadb")
PublicId = sa.String(43).with_variant(mysql.VARCHAR(43, collation="utf8mb4_bin"), "mysql", "mariadb")


def upgrade():
    op.create_table(
        "ai_generation_batches",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("batch_id", PublicId, nullable=False, unique=True),
        sa.Column("owner", sa.String(80), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False)
          for name in ("total", "completed", "failed", "cancelled")),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("item_ms", sa.BigInteger(), nullable=False),
        sa.Column("log_seq", sa.Integer(), nullable=False),
        sa.Column("last_ended_at", Timestamp, nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("completed_at", Timestamp, nullable=True),
        sa.Column("last_update_at", Timestamp, nullable=False),
        mysql_charset="utf8mb4", mariadb_charset="utf8mb4",
    )
    op.create_index("ix_batches_owner", "ai_generation_batches", ["owner", "id"])
    with op.batch_alter_table("ai_generation_jobs") as table:  # SQLite adds a foreign key by a copy
        table.add_column(sa.Column("batch_pk", BigId, nullable=True))
        table.add_column(sa.Column("batch_index", sa.Integer(), nullable=True))
        table.add_column(sa.Column("batch_seq", sa.Integer(), nullable=True))
        table.create_foreign_key("fk_jobs_batch", "ai_generation_batches", ["batch_pk"], ["id"], ondelete="CASCADE")
        table.create_index("ix_jobs_batch_items", ["batch_pk", "batch_index"])
        table.create_index("ix_jobs_batch_log", ["batch_pk", "batch_seq"])
    # An owner's list is of single jobs: batch items are listed through their batch.
    op.drop_index("ix_jobs_owner", "ai_generation_jobs")
    op.create_index("ix_jobs_owner", "ai_generation_jobs", ["owner", "batch_pk", "id"])


def downgrade():
    op.drop_index("ix_jobs_owner", "ai_generation_jobs")
    op.create_index("ix_jobs_owner", "ai_generation_jobs", ["owner", "id"])
    with op.batch_alter_table("ai_generation_jobs") as table:
        table.drop_constraint("fk_jobs_batch", type_="foreignkey")  # first: MySQL needs an index for it
        table.drop_index("ix_jobs_batch_log")
        table.drop_index("ix_jobs_batch_items")
        for name in ("batch_seq", "batch_index", "batch_pk"):
            table.drop_column(name)
    op.drop_table("ai_generation_batches")
