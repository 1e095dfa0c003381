"""Live output: the text as the worker writes it, read back exactly from any position, on the
JSON stream (`?include=output`), the status route, and through retries, failures and cancels."""
import json
import threading

import requests
import sqlalchemy as sa

from webapp import output, queue
from webapp.extensions import db
from webapp.models import OutputPiece
from webapp.web.streams import parse_event_id
from webapp.web.transcripts import LiveText, Parts, missing

from helpers import both_backends, lowest, row, run_next
from servers import Gunicorn, read_events

API = "/api/v1/ai/generation"
# Chunks as Ollama may send them: an emoji family split between its code points (joined by
# ZWJs), a flag of two regional indicators split in two, CRLF and a lone CR, accents, CJK, HTML.
ODD = ["Family: 👩", "\u200d👩", "\u200d👧", " flag 🇫", "🇷 done.\r\n", "line two\r", "\nthree — ½ ",
       "日本語 ", "<b>not bold</b> & ", "café 🙂", "\r\n", "end"]


# --- pieces and positions (no server) ------------------------------------------------------------
def test_parts_read_any_range_across_pieces():
    parts = Parts()
    for piece in ("ab", "", "cde", "f"):
        parts.append(piece)
    text = "abcdef"
    for start in range(7):
        for end in range(start, 7):
            assert parts.between(start, end) == text[start:end]


def test_what_a_client_lacks_depends_only_on_where_it_stands():
    transcript = LiveText(attempt=2)
    transcript.extend({"text": "Hello, ", "thinking": "hm"})
    transcript.extend({"text": "world"})
    view = transcript.view()
    assert missing(view, None) == ({"text": (0, "Hello, world"), "thinking": (0, "hm")}, False, (2, 12, 2))
    assert missing(view, (2, 7, 2)) == ({"text": (7, "world"), "thinking": (2, "")}, False, (2, 12, 2))
    assert missing(view, (1, 30, 0))[1:] == (True, (2, 12, 2)), "an earlier attempt's text is replaced"
    assert missing(view, (2, 13, 2)) is None, "this copy is behind the client: nothing yet"
    assert missing(view, (3, 0, 0)) is None


def test_event_ids_carry_the_position():
    assert parse_event_id("41") == (41, None)
    assert parse_event_id("41-2-1830-7") == (41, (2, 1830, 7))
    for junk in ("", "x", "1-2", "1-2-3-4-5", "-1", "1--2-3", "9" * 20, "²", "1-²-3-4", "١"):
        assert parse_event_id(junk) == (None, None)


def test_a_reset_tells_each_kind_to_start_over():
    from webapp.web.events import text_events

    events = text_events({"text": (0, "new"), "thinking": (0, "")}, True, 2)
    assert [(name, data) for _kind, _end, name, data in events] == [
        ("thinking", {"offset": 0, "text": "", "attempt": 2, "reset": True}),
        ("output", {"offset": 0, "text": "new", "attempt": 2, "reset": True})]
    assert [name for *_rest, name, _data in text_events({"text": (4, "x"), "thinking": (2, "")}, False, 1)] == [
        "output"]


def test_cards_show_the_last_lines():
    assert output.last_lines("one\n\ntwo\nthree\n") == "two\nthree"
    assert output.last_lines("x" * 500) == "…" + "x" * 200


# --- the worker writes what is new, once -----------------------------------------------------------
def pieces_of(job_pk):
    query = sa.select(OutputPiece).where(OutputPiece.job_pk == job_pk).order_by(OutputPiece.id)
    return list(db.session.scalars(query))


@both_backends
def test_the_worker_appends_each_piece_once_and_the_row_keeps_the_whole(app, sim):
    sim.script, sim.tokens_per_second = ODD * 4, 40.0
    app.config.update(OLLAMA_URL=sim.url, PROGRESS_INTERVAL=0.1)
    job = queue.enqueue(prompt="odd text", model="llama3.2")
    done = run_next(app)
    expected = "".join(ODD * 4)
    assert done.result == expected and done.output_chars == len(expected)
    pieces = [p for p in pieces_of(done.id) if p.kind == "text"]
    assert len(pieces) >= 3, "written as it grew, not once at the end"
    assert [p.char_from for p in pieces] == [0] + [p.char_to for p in pieces[:-1]], "no gap, no overlap"
    assert "".join(p.content for p in pieces) == expected[:pieces[-1].char_to]
    assert output.text_of(row(job.job_id))["text"] == expected


@both_backends
def test_a_live_job_reads_back_from_its_pieces_from_any_offset(app):
    job = queue.enqueue(prompt="hi", model="llama3.2")
    queue.claim("w1", 30)
    written = ""
    for piece in ("Hé", "llo 🙂\r\n", "wörld"):
        assert queue.heartbeat(job.id, "w1", 30, pieces=output.pieces(job.id, 1, {"text": (len(written), piece)}),
                               output_chars=len(written) + len(piece))
        written += piece
    live = row(job.job_id)
    for start in range(len(written) + 1):
        assert output.text_of(live, start)["text"] == written[start:]


@both_backends
def test_a_job_no_longer_ours_gets_no_text(app):
    job = queue.enqueue(prompt="hi", model="llama3.2")
    queue.claim("w1", 30)
    assert not queue.heartbeat(job.id, "someone-else", 30, pieces=output.pieces(job.id, 1, {"text": (0, "x")}),
                               output_chars=1)
    assert pieces_of(job.id) == [] and row(job.job_id).output_chars == 0


@both_backends
def test_pieces_the_row_now_holds_are_pruned_later(app, sim):
    from datetime import timedelta

    from webapp.models import utcnow

    app.config.update(OLLAMA_URL=sim.url, PROGRESS_INTERVAL=0.05)
    sim.script, sim.tokens_per_second = ["a", "b", "c"], 20.0
    job = queue.enqueue(prompt="prune me", model="llama3.2")
    run_next(app)
    assert pieces_of(row(job.job_id).id), "the run wrote pieces as it went"
    assert output.prune() == 0, "kept a minute for readers of an older row"
    assert output.prune(now=utcnow() + timedelta(minutes=2)) >= 1
    assert pieces_of(row(job.job_id).id) == []
    assert output.text_of(row(job.job_id))["text"] == "abc"


# --- the JSON stream ---------------------------------------------------------------------------------
def stream(server, job_id, last_id=None, timeout=30):
    headers = {"Last-Event-ID": last_id} if last_id else {}
    response = requests.get(f"{server.url}{API}/{job_id}/progress?include=output", stream=True,
                            timeout=timeout, headers=headers)
    assert response.status_code == 200
    return read_events(response)


class Assembled:
    """The text a client builds from output events, checking each lands where its text ends."""

    def __init__(self):
        self.text, self.attempt, self.last_id, self.resets = "", None, None, 0

    def take(self, event):
        self.last_id = event.get("id", self.last_id)
        if event.get("event") != "output":
            return
        data = json.loads(event["data"])
        if data.get("reset"):
            self.text, self.resets = "", self.resets + 1
        assert data["offset"] == len(self.text), f"gap or repeat at {data['offset']} (have {len(self.text)})"
        self.text += data["text"]
        self.attempt = data["attempt"]


def run_in_thread(app, times=1):
    def work():
        with app.app_context():
            for _ in range(times):
                run_next(app, rand=lowest)
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


@both_backends
def test_output_events_rebuild_the_result_exactly_across_a_reconnect(app, sim, database_url):
    sim.script, sim.tokens_per_second = ODD * 6, 60.0
    app.config.update(OLLAMA_URL=sim.url, PROGRESS_INTERVAL=0.2)
    job = queue.enqueue(prompt="odd text", model="llama3.2")
    client = Assembled()
    with Gunicorn(database_url, SSE_POLL_INTERVAL="0.1", SSE_MAX_DURATION="20") as web:
        thread = run_in_thread(app)
        events = stream(web, job.job_id)
        for event in events:
            client.take(event)
            if client.text and len(client.text) > 40:
                break  # the connection drops mid-way
        events.close()
        for event in stream(web, job.job_id, last_id=client.last_id):
            client.take(event)
        thread.join(30)
        result = requests.get(f"{web.url}{API}/{job.job_id}/status").json()["job"]["result"]
    assert result == "".join(ODD * 6) and client.text == result and client.resets == 0


@both_backends
def test_a_forty_kilobyte_answer_arrives_whole(app, sim, database_url):
    sim.script, sim.tokens_per_second = [f"w{n:04d} " for n in range(7000)], 4000.0
    app.config.update(OLLAMA_URL=sim.url, PROGRESS_INTERVAL=0.1)
    job = queue.enqueue(prompt="long", model="llama3.2")
    client = Assembled()
    with Gunicorn(database_url, SSE_POLL_INTERVAL="0.1", SSE_MAX_DURATION="20") as web:
        thread = run_in_thread(app)
        kinds = []
        for event in stream(web, job.job_id):
            client.take(event)
            kinds.append(event.get("event"))
        thread.join(30)
    assert len(client.text) == 42_000 and client.text == "".join(sim.script)
    assert kinds[-1] == "complete"


@both_backends
def test_a_stale_id_gets_exactly_the_missing_text(app, sim, database_url):
    sim.script = ODD * 3
    app.config["OLLAMA_URL"] = sim.url
    job = queue.enqueue(prompt="odd text", model="llama3.2")
    done = run_next(app)
    with Gunicorn(database_url, SSE_MAX_DURATION="20") as web:
        events = list(stream(web, job.job_id, last_id=f"{done.version - 5}-1-17-0"))
        fresh = list(stream(web, job.job_id))
    outputs = [json.loads(e["data"]) for e in events if e.get("event") == "output"]
    assert outputs == [{"offset": 17, "text": done.result[17:], "attempt": 1}]
    assert events[-1]["event"] == "complete" and events[-1]["id"] == f"{done.version}-1-{len(done.result)}-0"
    whole = [json.loads(e["data"]) for e in fresh if e.get("event") == "output"]
    assert whole == [{"offset": 0, "text": done.result, "attempt": 1}], "a fresh connect gets it in one event"


@both_backends
def test_a_retry_starts_the_text_over_and_says_so(app, sim, database_url):
    sim.script, sim.tokens_per_second = [f"t{n} " for n in range(60)], 40.0
    sim.set_fault("error_midstream", times=1)  # attempt 1 writes a third of it, then Ollama fails
    app.config.update(OLLAMA_URL=sim.url, PROGRESS_INTERVAL=0.1)
    job = queue.enqueue(prompt="retry me", model="llama3.2")
    client = Assembled()
    with Gunicorn(database_url, SSE_POLL_INTERVAL="0.05", SSE_MAX_DURATION="20") as web:
        thread = run_in_thread(app, times=2)
        attempts = []
        for event in stream(web, job.job_id):
            client.take(event)
            attempts.append(client.attempt)
        thread.join(30)
    assert 1 in attempts and client.resets == 1 and client.attempt == 2
    assert client.text == "".join(sim.script) == row(job.job_id).result


@both_backends
def test_status_includes_the_text_so_far_and_refuses_unknown_includes(app, sim, client):
    sim.script, sim.tokens_per_second = ODD, 40.0
    app.config.update(OLLAMA_URL=sim.url, PROGRESS_INTERVAL=0.1)
    job = queue.enqueue(prompt="odd text", model="llama3.2")
    plain = client.get(f"{API}/{job.job_id}/status").get_json()["job"]
    assert "output" not in plain and plain["output_chars"] == 0
    run_next(app)
    body = client.get(f"{API}/{job.job_id}/status?include=output").get_json()["job"]
    assert body["output"] == body["result"] == "".join(ODD) and body["thinking"] is None
    refused = client.get(f"{API}/{job.job_id}/status?include=logs")
    assert refused.status_code == 400 and "include" in refused.get_json()["error"]


@both_backends
def test_thinking_is_kept_apart(app, sim, database_url):
    sim.set_fault("thinking")
    app.config["OLLAMA_URL"] = sim.url
    job = queue.enqueue(prompt="think first", model="llama3.2", options={"num_predict": 40})
    done = run_next(app)
    assert done.thinking and done.thinking not in done.result and done.thinking_tokens > 0
    with Gunicorn(database_url, SSE_MAX_DURATION="20") as web:
        events = list(stream(web, job.job_id))
    thought = [json.loads(e["data"]) for e in events if e.get("event") == "thinking"]
    said = [json.loads(e["data"]) for e in events if e.get("event") == "output"]
    assert [t["text"] for t in thought] == [done.thinking] and [s["text"] for s in said] == [done.result]
    assert json.loads(events[-1]["data"])["thinking_tokens"] == done.thinking_tokens


@both_backends
def test_a_failed_job_keeps_its_text_and_the_stream_sends_it_before_the_end(app, sim, database_url):
    sim.script, sim.tokens_per_second = [f"t{n} " for n in range(60)], 40.0
    sim.set_fault("error_midstream")
    app.config.update(OLLAMA_URL=sim.url, PROGRESS_INTERVAL=0.1, MAX_ATTEMPTS=1)
    job = queue.enqueue(prompt="fail me", model="llama3.2")
    done = run_next(app)
    assert done.status == "failed" and done.result and "".join(sim.script).startswith(done.result)
    with Gunicorn(database_url, SSE_MAX_DURATION="20") as web:
        events = list(stream(web, job.job_id))
        status = requests.get(f"{web.url}{API}/{job.job_id}/status?include=output").json()["job"]
    assert [e.get("event") for e in events] == [None, "output", "error"]
    assert json.loads(events[1]["data"])["text"] == done.result == status["output"]


@both_backends
def test_progress_events_leave_out_nulls(app, database_url):
    job = queue.enqueue(prompt="Nobody runs me", model="llama3.2")
    with Gunicorn(database_url, SSE_MAX_DURATION="20") as web:
        events = read_events(requests.get(f"{web.url}{API}/{job.job_id}/progress", stream=True, timeout=10))
        next(events)
        progress = next(events)
        events.close()
    data = json.loads(progress["data"])
    assert progress["event"] == "progress" and None not in data.values() and "updated_at" not in data
    assert data["status"] == "queued" and data["queue_position"] == 1


# --- one read per tick, one rendering per piece ----------------------------------------------------
def write(job, written, piece):
    new = {"text": (len(written), piece)}
    assert queue.heartbeat(job.id, "w1", 30, pieces=output.pieces(job.id, 1, new), output_latest=output.latest(new),
                           output_chars=len(written) + len(piece))
    return written + piece


@both_backends
def test_the_watcher_reads_new_text_with_the_row_and_renders_it_once(app):
    from webapp.snapshots import snapshot_of
    from webapp.web.streams import emit_with_text
    from webapp.web.watch import Watcher

    watcher = Watcher(app, interval=0.01)
    watcher._ensure_running = lambda: None  # the test ticks by hand
    job = queue.enqueue(prompt="hi", model="llama3.2")
    queue.claim("w1", 30)
    snap = snapshot_of(queue.get(job.job_id))
    subs = [watcher.subscribe([snap], positions={job.job_id: (1, 0, 0)}) for _ in range(200)]
    written = write(job, "", "Hello")
    watcher.tick()
    assert watcher.reads == 1, "the new text came with the row"
    frames = {id(emit_with_text(sub.take(0)[0], sub)) for sub in subs}
    assert len(frames) == 1, "rendered once for every client at the same place"
    written = write(job, write(job, written, ", wor"), "ld 🙂")  # two writes between ticks
    watcher.tick()
    assert watcher.reads == 3, "a missed write is read from the pieces, once for everyone"
    [latest] = subs[0].take(0)
    assert '"offset":5,"text":", world 🙂"' in emit_with_text(latest, subs[0])


def test_a_lone_surrogate_is_stored_as_a_question_mark():
    assert output.storable("a\ud83db 🙂") == "a?b 🙂"
    assert output.storable("plain") == "plain"


@both_backends
def test_a_job_given_back_at_shutdown_starts_its_text_over_without_mixing(app):
    """The release refunds the attempt, not the run: the rerun's pieces are its own."""
    job = queue.enqueue(prompt="hi", model="llama3.2")
    queue.claim("w1", 30)
    write(job, "", "OLDOLDOLD")
    assert queue.release(job.id, "w1")
    assert output.position(row(job.job_id)) == (2, 0, 0), "queued: the next run's (empty) text"
    queue.claim("w1", 30)
    new = {"text": (0, "new")}
    assert queue.heartbeat(job.id, "w1", 30, pieces=output.pieces(job.id, 2, new), output_chars=3)
    rerun = row(job.job_id)
    assert (rerun.attempts, output.attempt_of(rerun)) == (1, 2)
    assert output.text_of(rerun)["text"] == "new"


@both_backends
def test_pieces_are_read_with_a_cursor_overlaps_skipped_and_a_gap_stops(app):
    job = queue.enqueue(prompt="hi", model="llama3.2")
    queue.claim("w1", 30)
    written = write(job, "", "Hello, ")
    # A write whose commit landed but reported an error is sent again, with what came since.
    again = {"text": (0, "Hello, world")}
    assert queue.heartbeat(job.id, "w1", 30, pieces=output.pieces(job.id, 1, again), output_chars=12)
    assert output.text_of(row(job.job_id))["text"] == "Hello, world"
    written = write(job, "Hello, world", "!!")
    db.session.execute(sa.delete(OutputPiece).where(OutputPiece.char_from == 0, OutputPiece.char_to == 12))
    db.session.commit()
    assert written == "Hello, world!!"
    assert output.text_of(row(job.job_id))["text"] == "Hello, ", "the text stops where a piece is missing"


def test_odd_positions_get_a_clear_400_never_a_500(app, client):
    job = queue.enqueue(prompt="hi", model="llama3.2")
    for path in (f"/jobs/{job.job_id}/output?from=%C2%B2", f"/jobs/{job.job_id}/output?attempt=-1",
                 f"/jobs/{job.job_id}/output?from=99999999999999", f"/jobs/stream?jobs={job.job_id}&output=1-%C2%B2-0",
                 f"/jobs/stream?jobs={job.job_id},{job.job_id}x&output=1-0-0", f"{API}/{job.job_id}/status?include=²"):
        assert client.get(path).status_code == 400, path
    assert client.get(f"/jobs/{job.job_id}/output?attempt=1&from=0&thinking_from=0").get_json()["output"] == {
        "offset": 0, "text": "", "attempt": 1}
    response = client.get(f"{API}/{job.job_id}/progress?include=output", headers={"Last-Event-ID": "²"},
                          buffered=False)
    assert response.status_code == 200
    response.close()
