"""Webhooks: where a job or batch tells of its changes, and the outbox of deliveries.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=3), "mysql", "mariadb")
PublicId = sa.String(43).with_variant(mysql.VARCHAR(43, collation="utf8mb4_bin"), "mysql", "mariadb")
LongText = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
TABLES = ("ai_generation_jobs", "ai_generation_batches")


def upgrade():
    for table in TABLES:
        op.add_column(table, sa.Column("webhook", sa.String(2000), nullable=True))
        op.add_column(table, sa.Column("webhook_events", sa.String(40), nullable=True))
    op.create_table(
        "ai_webhook_deliveries",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("delivery_id", PublicId, nullable=False, unique=True),
        sa.Column("job_pk", BigId, sa.ForeignKey("ai_generation_jobs.id", ondelete="CASCADE"), nullable=True),
        sa.Column("batch_pk", BigId, sa.ForeignKey("ai_generation_batches.id", ondelete="CASCADE"), nullable=True),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("body", LongText, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", Timestamp, nullable=False),
        sa.Column("lease_until", Timestamp, nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("delivered_at", Timestamp, nullable=True),
        mysql_charset="utf8mb4", mariadb_charset="utf8mb4",
    )
    op.create_index("ix_deliveries_due", "ai_webhook_deliveries", ["status", "next_attempt_at"])
    op.create_index("ix_deliveries_job", "ai_webhook_deliveries", ["job_pk", "id"])
    op.create_index("ix_deliveries_batch", "ai_webhook_deliveries", ["batch_pk", "id"])


def downgrade():
    op.drop_table("ai_webhook_deliveries")
    for table in TABLES:
        with op.batch_alter_table(table) as alter:
            alter.drop_column("webhook_events")
            alter.drop_column("webhook")
