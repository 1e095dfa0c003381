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
    """The run the job's text belongs to (the events' `attempt`): a queued job's text is the next
    run's (empty). Runs, not attempts: a job given back at shutdown is refunded its attempt, but
    its rerun's text must not be taken for the text the first run wrote."""
    return job.runs + 1 if job.status == statuses.QUEUED else job.runs


def position(job):
    """(attempt, characters of text, characters of thinking) as the row says."""
    return attempt_of(job), job.output_chars or 0, job.thinking_chars or 0


def follows(have, position):
    """True when a reader that has `have` of a text ((attempt, text chars, thinking chars)) goes
    on from there to `position`: the same run, and not past it."""
    return have[0] == position[0] and all(mine <= theirs for mine, theirs in zip(have[1:], position[1:], strict=True))


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
    """`found` (what the rows answered) with what was read from the pieces added."""
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
    reached = {key: start for key, (start, _end) in ranges.items()}
    for pk, kind, char_from, content in db.session.execute(query):
        key = (pk, kind)
        # A cursor, not a blind join: a write whose commit landed but reported an error is sent
        # again (an overlap: skipped), and a piece may be gone (a gap: the text stops there).
        if char_from > reached[key]:
            continue
        piece = content[reached[key] - char_from:ranges[key][1] - char_from]
        parts[key].append(piece)
        reached[key] += len(piece)
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
    """Drop the pieces of jobs whose text nobody reads from them any more: ended jobs whose row
    holds the text, and jobs back in the queue (their next run starts over). A minute after the
    row changed, so a reader that read the row before still finds them. (Pieces of a run that
    was started over while the job kept running go when the job ends.)"""
    before = (now or utcnow()) - KEEP_PIECES
    done = sa.select(Job.id).where(Job.status.in_(statuses.ENDED), Job.result.is_not(None),
                                   Job.completed_at < before)
    requeued = sa.select(Job.id).where(Job.status == statuses.QUEUED, Job.last_update_at < before)
    deleted = sum(db.session.execute(sa.delete(OutputPiece).where(OutputPiece.job_pk.in_(jobs))).rowcount
                  for jobs in (done, requeued))
    db.session.commit()
    return deleted
