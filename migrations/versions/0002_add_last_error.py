"""Add ai_generation_jobs.last_error: the reason the previous attempt failed.

error_message says what the job is doing now (waiting to retry, failed); while the next attempt
runs, last_error keeps the previous attempt's reason so it can be shown as such.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    # Nullable, no default: both SQLite and MariaDB add it in place, without copying the table.
    op.add_column("ai_generation_jobs", sa.Column("last_error", sa.Text(), nullable=True))


def downgrade():
    # Batch mode: SQLite drops a column by rebuilding the table; MariaDB drops it in place.
    with op.batch_alter_table("ai_generation_jobs") as batch:
        batch.drop_column("last_error")
