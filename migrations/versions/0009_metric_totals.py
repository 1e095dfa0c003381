"""Metric totals: what /metrics counts (jobs completed and their tokens per model, failures per
reason, histogram buckets), kept as jobs end; seeded from the jobs already there.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# webapp/telemetry/reasons.py as it was when this ran: the first match wins.
REASONS = (
    ("worker_lost", ("worker was lost", "worker running this job was lost")),
    ("model_not_found", ("answered 404",)),
    ("bad_request", ("answered 400",)),
    ("ollama_unreachable", ("is not reachable", "did not accept a connection", "talking to ollama failed")),
    ("ollama_stalled", ("sent nothing for",)),
    ("ollama_disconnected", ("was cut", "ended the stream before")),
    ("ollama_error", ("ollama answered", "stopped with an error", "not a json object")),
)

jobs = sa.table("ai_generation_jobs", sa.column("status"), sa.column("model"), sa.column("completion_tokens"),
                sa.column("error_message"))


def upgrade():
    totals = op.create_table(
        "ai_metric_totals",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("label", sa.String(40), primary_key=True),
        sa.Column("value", sa.BigInteger(), nullable=False),
        mysql_charset="utf8mb4", mariadb_charset="utf8mb4",
    )
    # The counters start where the jobs table stands; the histograms start now (their figures
    # were not all kept).
    seed = [sa.select(sa.literal("jobs_completed"), jobs.c.model, sa.literal(""), sa.func.count()),
            sa.select(sa.literal("tokens"), jobs.c.model, sa.literal(""),
                      sa.func.coalesce(sa.func.sum(jobs.c.completion_tokens), 0))]
    for query in seed:
        op.execute(totals.insert().from_select(["name", "model", "label", "value"],
                                               query.where(jobs.c.status == "completed").group_by(jobs.c.model)))
    reason = sa.case(*((sa.or_(*(sa.func.lower(jobs.c.error_message).like(f"%{phrase}%") for phrase in phrases)), name)
                       for name, phrases in REASONS), else_="other")
    failed = sa.select(sa.literal("jobs_failed"), sa.literal(""), reason, sa.func.count()).where(
        jobs.c.status == "failed").group_by(reason)
    op.execute(totals.insert().from_select(["name", "model", "label", "value"], failed))
    cancelled = sa.select(sa.literal("jobs_cancelled"), sa.literal(""), sa.literal(""), sa.func.count()).where(
        jobs.c.status == "cancelled")
    op.execute(totals.insert().from_select(["name", "model", "label", "value"], cancelled))


def downgrade():
    op.drop_table("ai_metric_totals")
