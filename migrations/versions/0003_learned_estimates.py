"""What learned estimates need: the prompt's kind, Ollama's final figures, and the range.

prompt_kind groups prompts that ask for like lengths; done_reason says whether num_predict cut
the output (a censored length); load_ms, prompt_eval_ms and cold_start teach load and
prompt-reading times; the two range columns hold the estimate's 20th and 80th percentiles.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS = (
    ("prompt_kind", sa.String(40)),
    ("done_reason", sa.String(16)),
    ("load_ms", sa.Integer()),
    ("prompt_eval_ms", sa.Integer()),
    ("cold_start", sa.Boolean()),
    ("estimated_time_remaining_low", sa.Integer()),
    ("estimated_time_remaining_high", sa.Integer()),
)


def upgrade():
    # Nullable, no default: both SQLite and MariaDB add them in place.
    for name, kind in COLUMNS:
        op.add_column("ai_generation_jobs", sa.Column(name, kind, nullable=True))


def downgrade():
    with op.batch_alter_table("ai_generation_jobs") as batch:
        for name, _kind in reversed(COLUMNS):
            batch.drop_column(name)
