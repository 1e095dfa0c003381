"""Live output: the text as it is written, in append-only pieces, and the thinking kept apart.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

LongText = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=3), "mysql", "mariadb")


def upgrade():
    for name in ("output_chars", "thinking_chars", "thinking_tokens", "runs"):
        op.add_column("ai_generation_jobs", sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
    op.add_column("ai_generation_jobs", sa.Column("thinking", LongText, nullable=True))
    op.add_column("ai_generation_jobs", sa.Column("output_latest", sa.JSON(), nullable=True))
    op.create_table(
        "ai_generation_output",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("job_pk", BigId, sa.ForeignKey("ai_generation_jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("char_from", sa.Integer(), nullable=False),
        sa.Column("char_to", sa.Integer(), nullable=False),
        sa.Column("content", LongText, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        mysql_charset="utf8mb4", mariadb_charset="utf8mb4",
    )
    op.create_index("ix_output_read", "ai_generation_output", ["job_pk", "attempt", "kind", "char_to"])


def downgrade():
    op.drop_table("ai_generation_output")  # its index goes with it (MySQL will not drop it first: the key needs it)
    with op.batch_alter_table("ai_generation_jobs") as batch:
        for name in ("runs", "output_latest", "thinking", "thinking_tokens", "thinking_chars", "output_chars"):
            batch.drop_column(name)
