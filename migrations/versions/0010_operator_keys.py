"""Operator keys: an API key may open the operator's page (/admin) only if it is made as one.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    # Existing keys are clients' keys: none becomes an operator's by the upgrade.
    op.add_column("ai_api_keys", sa.Column("admin", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade():
    with op.batch_alter_table("ai_api_keys") as table:
        table.drop_column("admin")
