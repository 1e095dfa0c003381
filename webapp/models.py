"""The `ai_generation_jobs` table: one row per generation, the only channel between worker and web."""
import secrets
from datetime import UTC, datetime

import sqlalchemy as sa
import sqlalchemy.orm as so
from sqlalchemy.dialects import mysql

from webapp import statuses
from webapp.extensions import db

# Milliseconds on MySQL too (its DATETIME drops fractions by default).
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=3), "mysql", "mariadb")
# TEXT stops at 64 KB on MySQL; a long generation can pass that.
LongText = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
# Public ids are compared byte for byte: a case-insensitive collation would match 'aB' to 'Ab'.
PublicId = sa.String(43).with_variant(mysql.VARCHAR(43, collation="utf8mb4_bin"), "mysql", "mariadb")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER only


def utcnow():
    """Naive UTC with milliseconds: what both databases store."""
    now = datetime.now(UTC).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def new_job_id():
    """Public id: 192 random bits, URL-safe."""
    return secrets.token_urlsafe(24)


class Job(db.Model):
    __tablename__ = "ai_generation_jobs"
    __table_args__ = (
        # The queue in order, covering what the claim filters on: the oldest runnable job is
        # the first entries of it, not a walk past every ended job (bench/claim_bench.py).
        sa.Index("ix_jobs_queue_head", "status", "id", "owner", "run_after", "cancel_requested"),
        sa.Index("ix_jobs_lease", "status", "lease_until"),
        sa.Index("ix_jobs_model_done", "model", "status", "completed_at"),
        # An owner's single jobs (not batch items), newest first; and each owner's line in the
        # queue (fair turns).
        sa.Index("ix_jobs_owner", "owner", "batch_pk", "id"),
        sa.Index("ix_jobs_turns", "status", "owner", "id"),
        sa.Index("ix_jobs_batch_items", "batch_pk", "batch_index"),
        sa.Index("ix_jobs_batch_log", "batch_pk", "batch_seq"),
        {"mysql_charset": "utf8mb4", "mariadb_charset": "utf8mb4"},
    )

    id: so.Mapped[int] = so.mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: so.Mapped[str] = so.mapped_column(PublicId, unique=True, default=new_job_id)
    # Who made it (`webapp.owners`): a browser session, an API key, or the open API's anonymous.
    owner: so.Mapped[str] = so.mapped_column(sa.String(80), default="anonymous", server_default="anonymous")
    # A batch's item: its batch, its place in it (from 0), and when it ended among the batch's
    # items (the batch's log sequence, set in the transaction that ended it).
    batch_pk: so.Mapped[int | None] = so.mapped_column(
        BigId, sa.ForeignKey("ai_generation_batches.id", ondelete="CASCADE"))
    batch_index: so.Mapped[int | None] = so.mapped_column(sa.Integer)
    batch_seq: so.Mapped[int | None] = so.mapped_column(sa.Integer)
    status: so.Mapped[str] = so.mapped_column(sa.String(16), default=statuses.QUEUED)
    # Where to tell of its changes (a webhook URL), and which events ("start,output,completed").
    webhook: so.Mapped[str | None] = so.mapped_column(sa.String(2000))
    webhook_events: so.Mapped[str | None] = so.mapped_column(sa.String(40))
    phase: so.Mapped[str | None] = so.mapped_column(sa.String(16))
    prompt: so.Mapped[str] = so.mapped_column(LongText)
    system: so.Mapped[str | None] = so.mapped_column(LongText)
    model: so.Mapped[str] = so.mapped_column(sa.String(200))
    options: so.Mapped[dict] = so.mapped_column(sa.JSON, default=dict)
    result: so.Mapped[str | None] = so.mapped_column(LongText)

    progress_percentage: so.Mapped[float] = so.mapped_column(sa.Float, default=0.0)
    progress_is_estimate: so.Mapped[bool] = so.mapped_column(sa.Boolean, default=True)
    expected_tokens: so.Mapped[int | None] = so.mapped_column(sa.Integer)
    current_tokens: so.Mapped[int] = so.mapped_column(sa.Integer, default=0)
    tokens_per_second: so.Mapped[float] = so.mapped_column(sa.Float, default=0.0)
    elapsed_time: so.Mapped[int] = so.mapped_column(sa.Integer, default=0)  # ms
    estimated_time_remaining: so.Mapped[int | None] = so.mapped_column(sa.Integer)  # ms
    # The estimate's range (ms): its 20th and 80th percentiles, learned from earlier jobs.
    estimated_time_remaining_low: so.Mapped[int | None] = so.mapped_column(sa.Integer)
    estimated_time_remaining_high: so.Mapped[int | None] = so.mapped_column(sa.Integer)
    prompt_tokens: so.Mapped[int | None] = so.mapped_column(sa.Integer)
    completion_tokens: so.Mapped[int | None] = so.mapped_column(sa.Integer)
    total_tokens: so.Mapped[int | None] = so.mapped_column(sa.Integer)
    # The text of the current attempt, as the worker has written it so far (its pieces are in
    # ai_generation_output until the job ends; then `result` and `thinking` hold it whole).
    output_chars: so.Mapped[int] = so.mapped_column(sa.Integer, default=0, server_default="0")  # code points
    thinking: so.Mapped[str | None] = so.mapped_column(LongText)
    thinking_chars: so.Mapped[int] = so.mapped_column(sa.Integer, default=0, server_default="0")
    thinking_tokens: so.Mapped[int] = so.mapped_column(sa.Integer, default=0, server_default="0")
    # What the latest progress write added, {kind: [offset, text]}: a reader that followed the
    # job gets the new text with the row, without a second query.
    output_latest: so.Mapped[dict | None] = so.mapped_column(sa.JSON)
    error_message: so.Mapped[str | None] = so.mapped_column(sa.Text)  # the job's state now
    # Why the previous attempt failed: shown as such while the next one runs.
    last_error: so.Mapped[str | None] = so.mapped_column(sa.Text)

    # What later estimates learn from: the kind of answer the prompt asks for, and Ollama's own
    # figures (a run cut by num_predict, done_reason "length", only says "at least N tokens").
    prompt_kind: so.Mapped[str | None] = so.mapped_column(sa.String(40))
    done_reason: so.Mapped[str | None] = so.mapped_column(sa.String(16))
    load_ms: so.Mapped[int | None] = so.mapped_column(sa.Integer)
    prompt_eval_ms: so.Mapped[int | None] = so.mapped_column(sa.Integer)
    cold_start: so.Mapped[bool | None] = so.mapped_column(sa.Boolean)  # the model was not loaded

    # Queue bookkeeping: attempts, lease (the worker's heartbeat), fencing, cancel, back-off.
    attempts: so.Mapped[int] = so.mapped_column(sa.Integer, default=0)
    # Every start, never refunded (a job given back at shutdown keeps its attempt, not its run):
    # the text of each run is its own, so a rerun never mixes with what an earlier run wrote.
    runs: so.Mapped[int] = so.mapped_column(sa.Integer, default=0, server_default="0")
    worker_id: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    lease_until: so.Mapped[datetime | None] = so.mapped_column(Timestamp)
    run_after: so.Mapped[datetime] = so.mapped_column(Timestamp, default=utcnow)
    cancel_requested: so.Mapped[bool] = so.mapped_column(sa.Boolean, default=False)
    # Change counter: every write bumps it; it is also the SSE event id.
    version: so.Mapped[int] = so.mapped_column(sa.Integer, default=1)

    created_at: so.Mapped[datetime] = so.mapped_column(Timestamp, default=utcnow)
    started_at: so.Mapped[datetime | None] = so.mapped_column(Timestamp)
    completed_at: so.Mapped[datetime | None] = so.mapped_column(Timestamp)
    last_update_at: so.Mapped[datetime] = so.mapped_column(Timestamp, default=utcnow)

    def __repr__(self):
        return f"<Job {self.job_id} {self.status} v{self.version}>"


class Batch(db.Model):
    """Many prompts as one piece of work. Its items are jobs; its counters are kept as items end,
    in the item's own transaction, so reading a batch costs the same at 10 items or 10,000."""
    __tablename__ = "ai_generation_batches"
    __table_args__ = (
        sa.Index("ix_batches_owner", "owner", "id"),
        {"mysql_charset": "utf8mb4", "mariadb_charset": "utf8mb4"},
    )

    id: so.Mapped[int] = so.mapped_column(BigId, primary_key=True, autoincrement=True)
    batch_id: so.Mapped[str] = so.mapped_column(PublicId, unique=True, default=new_job_id)
    owner: so.Mapped[str] = so.mapped_column(sa.String(80))
    status: so.Mapped[str] = so.mapped_column(sa.String(16), default=statuses.PROCESSING)  # then an ended one
    model: so.Mapped[str] = so.mapped_column(sa.String(200))  # the default of its items
    total: so.Mapped[int] = so.mapped_column(sa.Integer)
    completed: so.Mapped[int] = so.mapped_column(sa.Integer, default=0)
    failed: so.Mapped[int] = so.mapped_column(sa.Integer, default=0)
    cancelled: so.Mapped[int] = so.mapped_column(sa.Integer, default=0)
    tokens: so.Mapped[int] = so.mapped_column(sa.BigInteger, default=0)  # output tokens of ended items
    item_ms: so.Mapped[int] = so.mapped_column(sa.BigInteger, default=0)  # their generation time, summed
    # Every item's end takes the next number (the batch row's lock orders them): the log is read
    # in this order, and a stream resumes from the last number it sent.
    log_seq: so.Mapped[int] = so.mapped_column(sa.Integer, default=0)
    # When the latest item ended: an item's end time is at least this, so the log's times never
    # run backwards where an end waited for the row lock of another.
    last_ended_at: so.Mapped[datetime | None] = so.mapped_column(Timestamp)
    cancel_requested: so.Mapped[bool] = so.mapped_column(sa.Boolean, default=False)
    version: so.Mapped[int] = so.mapped_column(sa.Integer, default=1)
    # Where to tell of its changes (a webhook URL), and which events ("start,output,completed").
    webhook: so.Mapped[str | None] = so.mapped_column(sa.String(2000))
    webhook_events: so.Mapped[str | None] = so.mapped_column(sa.String(40))
    created_at: so.Mapped[datetime] = so.mapped_column(Timestamp, default=utcnow)
    completed_at: so.Mapped[datetime | None] = so.mapped_column(Timestamp)
    last_update_at: so.Mapped[datetime] = so.mapped_column(Timestamp, default=utcnow)

    @property
    def ended(self):
        return self.completed + self.failed + self.cancelled


class WebhookDelivery(db.Model):
    """One webhook to send (the outbox): written in the transaction of the change it tells of,
    sent by a worker, retried with back-off until it is delivered or its tries run out. Its
    public id is the `webhook-id` of every try, so a receiver can drop a repeat; its body is
    fixed when it is recorded, so every try carries the same bytes."""
    __tablename__ = "ai_webhook_deliveries"
    __table_args__ = (
        sa.Index("ix_deliveries_due", "status", "next_attempt_at"),
        sa.Index("ix_deliveries_job", "job_pk", "id"),
        sa.Index("ix_deliveries_batch", "batch_pk", "id"),
        {"mysql_charset": "utf8mb4", "mariadb_charset": "utf8mb4"},
    )

    id: so.Mapped[int] = so.mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_id: so.Mapped[str] = so.mapped_column(PublicId, unique=True)
    job_pk: so.Mapped[int | None] = so.mapped_column(
        BigId, sa.ForeignKey("ai_generation_jobs.id", ondelete="CASCADE"))
    batch_pk: so.Mapped[int | None] = so.mapped_column(
        BigId, sa.ForeignKey("ai_generation_batches.id", ondelete="CASCADE"))
    event: so.Mapped[str] = so.mapped_column(sa.String(16))  # start, output or completed
    url: so.Mapped[str] = so.mapped_column(sa.String(2000))
    body: so.Mapped[str] = so.mapped_column(LongText)  # the JSON sent, signed as it is
    status: so.Mapped[str] = so.mapped_column(sa.String(16), default="pending")  # then delivered or failed
    attempts: so.Mapped[int] = so.mapped_column(sa.Integer, default=0)
    next_attempt_at: so.Mapped[datetime] = so.mapped_column(Timestamp, default=utcnow)
    lease_until: so.Mapped[datetime | None] = so.mapped_column(Timestamp)  # a sender has it until then
    last_status_code: so.Mapped[int | None] = so.mapped_column(sa.Integer)
    last_error: so.Mapped[str | None] = so.mapped_column(sa.Text)
    created_at: so.Mapped[datetime] = so.mapped_column(Timestamp, default=utcnow)
    delivered_at: so.Mapped[datetime | None] = so.mapped_column(Timestamp)


class OutputPiece(db.Model):
    """What one progress write added to a job's text (or its thinking): append-only, so writing
    and reading cost what is new, not the whole text. `char_from`/`char_to` count code points
    from the start of that attempt's text."""
    __tablename__ = "ai_generation_output"
    __table_args__ = (
        sa.Index("ix_output_read", "job_pk", "attempt", "kind", "char_to"),
        {"mysql_charset": "utf8mb4", "mariadb_charset": "utf8mb4"},
    )

    id: so.Mapped[int] = so.mapped_column(BigId, primary_key=True, autoincrement=True)
    job_pk: so.Mapped[int] = so.mapped_column(BigId, sa.ForeignKey("ai_generation_jobs.id", ondelete="CASCADE"))
    attempt: so.Mapped[int] = so.mapped_column(sa.Integer)
    kind: so.Mapped[str] = so.mapped_column(sa.String(8))  # "text" or "thinking"
    char_from: so.Mapped[int] = so.mapped_column(sa.Integer)
    char_to: so.Mapped[int] = so.mapped_column(sa.Integer)
    content: so.Mapped[str] = so.mapped_column(LongText)
    created_at: so.Mapped[datetime] = so.mapped_column(Timestamp, default=utcnow)


class RateWindow(db.Model):
    """New jobs counted per client and minute, in the database: every web process shares the
    count, so the limit is the same whatever WEB_CONCURRENCY is."""
    __tablename__ = "ai_rate_windows"
    __table_args__ = ({"mysql_charset": "utf8mb4", "mariadb_charset": "utf8mb4"},)

    key: so.Mapped[str] = so.mapped_column(sa.String(100), primary_key=True)
    window: so.Mapped[datetime] = so.mapped_column(Timestamp, primary_key=True)  # the minute it counts
    hits: so.Mapped[int] = so.mapped_column(sa.Integer, default=0)


class ApiKey(db.Model):
    """A named key for the JSON API. Only the SHA-256 of the secret is kept: the secret is 256
    random bits, so a fast hash is as safe as a slow one, and a lookup is one indexed read."""
    __tablename__ = "ai_api_keys"
    __table_args__ = ({"mysql_charset": "utf8mb4", "mariadb_charset": "utf8mb4"},)

    id: so.Mapped[int] = so.mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(100), unique=True)
    secret_hash: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    # The secret's first characters, which `flask keys list` shows to tell keys apart.
    hint: so.Mapped[str] = so.mapped_column(sa.String(12))
    # An operator's key opens /admin, which shows every owner's jobs; a client's key does not.
    admin: so.Mapped[bool] = so.mapped_column(sa.Boolean, default=False, server_default=sa.false())
    created_at: so.Mapped[datetime] = so.mapped_column(Timestamp, default=utcnow)


class MetricTotal(db.Model):
    """A running total that /metrics shows (`webapp.telemetry`): jobs completed and their tokens
    per model, failures per reason, histogram buckets. Each is added to in the transaction of the
    event it counts (a job's end, a webhook's try), so it agrees with the jobs table, costs a
    scrape a few hundred rows however many jobs there are, and never goes down when retention
    deletes jobs (a Prometheus counter that went down would read as a restart)."""
    __tablename__ = "ai_metric_totals"
    __table_args__ = ({"mysql_charset": "utf8mb4", "mariadb_charset": "utf8mb4"},)

    name: so.Mapped[str] = so.mapped_column(sa.String(40), primary_key=True)
    model: so.Mapped[str] = so.mapped_column(sa.String(200), primary_key=True)  # "" where none applies
    label: so.Mapped[str] = so.mapped_column(sa.String(40), primary_key=True)   # a reason, a bucket's bound, or ""
    value: so.Mapped[int] = so.mapped_column(sa.BigInteger, default=0)
