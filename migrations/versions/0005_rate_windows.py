"""Rate windows: new jobs counted per client and minute, shared by every web process.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=3), "mysql", "mariadb")


def upgrade():
    op.create_table(
        "ai_rate_windows",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("window", Timestamp, primary_key=True),
        sa.Column("hits", sa.Integer(), nullable=False),
        mysql_charset="utf8mb4", mariadb_charset="utf8mb4",
    )


def downgrade():
    op.drop_table("ai_rate_windows")
