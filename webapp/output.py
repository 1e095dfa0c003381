"""A job's text as it is written: pieces the worker appends, read back from any character offset."""
from datetime import timedelta

import sqlalchemy as sa

from webapp import statuses
from webapp.extensions import db
from webapp.models import Job, OutputPiece, utcnow

KINDS = ("text", "thinking")  # the answer, and a reasoning model's thinking, kept apart
KEEP_PIECES = timedelta(seconds=60)  # a reader that read the row a moment ago still finds them
TAIL_LINES, TAIL_CHARS = 2, 200  # what an index card shows of a job's text


def storable(text):
    """The text with any lone surrogate (JSON can carry one, e.g. "\\ud83d"; Ollama never sends
    one) replaced by "?": utf8mb4 cannot store it, and a progress write refused for good would
    hold back all the text after it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def attempt_of(job):
    """The attempt the job's text belongs to: a queued job's text is the next attempt's (empty)."""
    return job.attempts + 1 if job.status == statuses.QUEUED else job.attempts


def position(job):
    """(attempt, characters of text, characters of thinking) as the row says."""
    return attempt_of(job), job.output_chars or 0, job.thinking_chars or 0


def pieces(job_pk, attempt, new):
    """The rows one progress write adds, as an INSERT (None when there is no new text): `new`
    is {kind: (offset, text)}. A Core INSERT, not ORM objects: the worker sends a hundred of
    these a second, and the ORM's unit of work would cost more than the statement."""
    now = utcnow()
    rows = [{"job_pk": job_pk, "attempt": attempt, "kind": kind, "char_from": start,
             "char_to": start + len(text), "content": text, "created_at": now}
            for kind, (start, text) in new.items() if text]
    return sa.insert(OutputPiece).values(rows) if rows else None


def _stored(job, kind, start=0):
    """The text from `start`, from the row itself: the worker writes it there whole when the job
    ends. None while it lives in pieces (a live job, or one the sweep ended)."""
    if job.status not in statuses.ENDED or job.result is None:
        return None
    return (job.result if kind == "text" else (job.thinking or ""))[start:]


def since(jobs, starts):
    """{job_pk: {kind: text from its start up to what the row says}} for these rows, in one
    query however many jobs. `starts` is {job_pk: {kind: offset}} (missing: from 0). Reads are
    capped at the row's own count, so a write that lands meanwhile is left for the next read."""
    found, wants = plan(jobs, starts)
    return merge(found, read(wants))


def plan(jobs, starts):
    """What the rows themselves answer ({job_pk: {kind: text}}), and the piece ranges to read."""
    found, wants = {}, []
    for job in jobs:
        ends = {"text": job.output_chars or 0, "thinking": job.thinking_chars or 0}
        for kind in KINDS:
            start = starts.get(job.id, {}).get(kind, 0)
            known = _stored(job, kind, start)
            if known is None:
                known = _latest(job, kind, start, ends[kind])
            if known is not None:
                found.setdefault(job.id, {})[kind] = known
            elif start < ends[kind]:
                wants.append((job.id, attempt_of(job), kind, start, ends[kind]))
            else:
                found.setdefault(job.id, {})[kind] = ""
    return found, wants


def _latest(job, kind, start, end):
    """The text from `start` to `end` when the row's latest piece covers it, else None."""
    offset, text = (job.output_latest or {}).get(kind) or (0, None)
    if text is None or not offset <= start <= end == offset + len(text):
        return None
    return text[start - offset:]


def latest(new):
    """The row's copy of what this write adds ({kind: [offset, text]}), or None."""
    return {kind: [start, text] for kind, (start, text) in new.items() if text} or None


def merge(found, read_texts):
    for (pk, kind), text in read_texts.items():
        found.setdefault(pk, {})[kind] = text
    return found


def read(wants):
    """{(job_pk, kind): text} for (job_pk, attempt, kind, start, end) ranges, in one query."""
    if not wants:
        return {}
    ranges = {(pk, kind): (start, end) for pk, _attempt, kind, start, end in wants}
    query = (sa.select(OutputPiece.job_pk, OutputPiece.kind, OutputPiece.char_from, OutputPiece.content)
             .where(sa.or_(*(sa.and_(OutputPiece.job_pk == pk, OutputPiece.attempt == attempt,
                                     OutputPiece.kind == kind, OutputPiece.char_to > start,
                                     OutputPiece.char_from < end)
                             for pk, attempt, kind, start, end in wants)))
             .order_by(OutputPiece.job_pk, OutputPiece.kind, OutputPiece.char_from))
    parts = {key: [] for key in ranges}
    for pk, kind, char_from, content in db.session.execute(query):
        start, end = ranges[(pk, kind)]
        parts[(pk, kind)].append(content[max(0, start - char_from):end - char_from])
    return {key: "".join(texts) for key, texts in parts.items()}


def text_of(job, start=0):
    """{"text": ..., "thinking": ...} of one job, from `start` characters of its text."""
    found = since([job], {job.id: {"text": start}})
    return {kind: found.get(job.id, {}).get(kind, "") for kind in KINDS}


def tails(jobs):
    """{job_pk: the last line or two of its text} for cards, reading only the newest pieces."""
    starts = {job.id: {"text": max(0, (job.output_chars or 0) - TAIL_CHARS * 2), "thinking": job.thinking_chars or 0}
              for job in jobs}
    return {pk: last_lines(texts.get("text", "")) for pk, texts in since(jobs, starts).items()}


def last_lines(text, lines=TAIL_LINES, chars=TAIL_CHARS):
    """The end of a text as a card shows it: its last non-empty lines, at most `chars` long."""
    kept = [line for line in text.splitlines() if line.strip()][-lines:]
    tail = "\n".join(kept)
    return tail if len(tail) <= chars else "…" + tail[-chars:]


def prune(now=None):
    """Drop pieces nobody reads any more: those of ended jobs whose text the row now holds, and
    those of attempts that were started over. Left a minute, for readers of an older row."""
    before = (now or utcnow()) - KEEP_PIECES
    old = OutputPiece.created_at < before
    ended = sa.select(Job.id).where(Job.status.in_(statuses.ENDED), Job.result.is_not(None))
    requeued = sa.select(Job.id).where(Job.status == statuses.QUEUED)
    current = sa.select(Job.attempts).where(Job.id == OutputPiece.job_pk).scalar_subquery()
    deleted = 0
    for where in (OutputPiece.job_pk.in_(ended), OutputPiece.job_pk.in_(requeued), OutputPiece.attempt < current):
        deleted += db.session.execute(sa.delete(OutputPiece).where(old, where)).rowcount
    db.session.commit()
    return deleted
