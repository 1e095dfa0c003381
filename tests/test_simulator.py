"""The Ollama simulator speaks OLLAMA.md's wire format, faults included."""
import json
import math
import random
import re
import socket
import threading
import time

import pytest
import requests

from simulator import FAULTS, Simulator, generation, gojson, lengths
from simulator import __main__ as cli
from simulator.scheduler import Scheduler

GENERATE_KEYS = {"model", "created_at", "response", "done"}
FINAL_KEYS = {"model", "created_at", "response", "done", "done_reason", "context", "total_duration",
              "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration"}
DURATIONS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")
CREATED_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
JSON_TYPE = "application/json; charset=utf-8"
MIDSTREAM_ERROR = "an error was encountered while running the model: unexpected EOF"


@pytest.fixture
def ollama():
    """A fast simulator: tokens every half millisecond, no cold load."""
    with Simulator(tokens_per_second=2000.0, jitter=0.2, load_delay=0.0) as sim:
        yield sim


def post(sim, body, path="/api/generate", **kwargs):
    kwargs.setdefault("timeout", 5)
    return requests.post(sim.url + path, json=body, stream=True, **kwargs)


def raw_lines(response):
    return [line for line in response.iter_lines() if line]


def lines(response):
    return [json.loads(line) for line in raw_lines(response)]


def generate(sim, prompt="Why is the sky blue?", **fields):
    """Stream one generate request to its end; returns (response, parsed lines)."""
    with post(sim, {"model": "llama3.2", "prompt": prompt, **fields}) as response:
        return response, lines(response)


def raw_exchange(sim, body):
    """POST on a bare socket; returns (head, [chunk payloads], saw the terminating chunk)."""
    with socket.create_connection((sim.host, sim.port), timeout=5) as sock:
        sock.sendall(b"POST /api/generate HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        stream = sock.makefile("rb")
        head = b"".join(iter(stream.readline, b"\r\n"))
        chunks = []
        while size_line := stream.readline():
            size = int(size_line, 16)
            if size == 0:
                return head, chunks, True
            chunks.append(stream.read(size))
            assert stream.read(2) == b"\r\n"
        return head, chunks, False


def test_generate_stream_matches_ollama_shapes_and_headers(ollama):
    response, chunks = generate(ollama)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/x-ndjson"
    assert response.headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in response.headers
    *tokens, final = chunks
    for chunk in tokens:
        assert set(chunk) == GENERATE_KEYS
        assert chunk["model"] == "llama3.2" and chunk["done"] is False
        assert isinstance(chunk["response"], str) and chunk["response"]
        assert CREATED_AT.match(chunk["created_at"])
    assert set(final) == FINAL_KEYS
    assert final["done"] is True and final["done_reason"] == "stop" and final["response"] == ""
    assert all(isinstance(final[name], int) and final[name] > 0 for name in DURATIONS)
    assert final["total_duration"] >= final["load_duration"] + final["prompt_eval_duration"]
    assert all(isinstance(value, int) for value in final["context"])
    record = ollama.wait_for(lambda records: records[0].finished)[0]
    assert 20 <= record.tokens <= 80
    assert final["eval_count"] == record.tokens + 1  # the EOS token counts (OLLAMA.md section 6)
    assert record.text == "".join(chunk["response"] for chunk in chunks)
    assert record.chunks == chunks and record.final == final
    assert record.status == 200 and record.finished and not record.client_closed
    assert len(record.sent_at) == len(chunks) and record.sent_at == sorted(record.sent_at)
    assert record.body == {"model": "llama3.2", "prompt": "Why is the sky blue?"}


def test_each_ndjson_line_is_its_own_http_chunk(ollama):
    body = json.dumps({"model": "llama3.2", "prompt": "hi", "options": {"num_predict": 5}}).encode()
    head, chunks, terminated = raw_exchange(ollama, body)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Transfer-Encoding: chunked" in head
    assert terminated and len(chunks) == 6
    assert all(chunk.endswith(b"\n") and chunk.count(b"\n") == 1 for chunk in chunks)
    assert not any(chunk.startswith(b"data:") for chunk in chunks)


def test_num_predict_gives_exactly_that_many_tokens_and_length(ollama):
    _, chunks = generate(ollama, options={"num_predict": 7})
    assert len(chunks) == 8
    assert chunks[-1]["done_reason"] == "length" and chunks[-1]["eval_count"] == 7
    assert ollama.requests[0].tokens == 7


def test_text_is_deterministic_per_prompt_and_model_name_is_echoed(ollama):
    first = generate(ollama, prompt="otters")[1]
    again = generate(ollama, prompt="otters")[1]
    other = generate(ollama, prompt="beavers")[1]
    latest = generate(ollama, prompt="otters", model="llama3.2:latest")[1]

    def text(chunks):
        return "".join(chunk["response"] for chunk in chunks)

    assert text(first) == text(again) == text(latest) and text(first) != text(other)
    assert {chunk["model"] for chunk in latest} == {"llama3.2:latest"}
    assert first[0]["response"] == first[0]["response"].lstrip()  # "The", then " model", ...
    assert all(chunk["response"][0] in " ,." for chunk in first[1:-1])


def test_html_characters_are_go_escaped_and_utf8_stays_raw(ollama):
    with post(ollama, {"model": "llama3.2", "prompt": "x", "options": {"num_predict": 150}}) as response:
        blob = b"\n".join(raw_lines(response))
    assert b"\\u003c" in blob and b"\\u003e" in blob and b"\\u0026" in blob
    assert b"<" not in blob and b">" not in blob and b"&" not in blob
    assert not re.search(rb"\\u00[89a-f]", blob)  # no \u00e9 and friends: UTF-8 goes out raw
    text = ollama.requests[0].text
    assert "<b>" in text or "é" in text or "日本語" in text
    assert any(ord(ch) > 127 for ch in text)


def test_go_json_encoding():
    assert gojson.dumps({"a": "<x> & \u2028\u2029 é\n", "n": [1, 2]}) == \
        '{"a":"\\u003cx\\u003e \\u0026 \\u2028\\u2029 é\\n","n":[1,2]}'


def test_created_at_drops_trailing_zeros_like_go():
    assert generation.created_at(1_700_000_000_120_000_000) == "2023-11-14T22:13:20.12Z"
    assert generation.created_at(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"


def test_zero_metrics_are_omitted():
    stats = generation.metrics(1.0, 0.0, 0, 0.0, 5, 0.5)
    final = generation.reply("generate", "m", done=True, reason="stop", stats=stats)
    assert set(final) == {"model", "created_at", "response", "done", "done_reason", "total_duration",
                          "eval_count", "eval_duration"}


def test_missing_metrics_fault_omits_prompt_eval_fields(ollama):
    ollama.set_fault("missing_metrics")
    _, chunks = generate(ollama, options={"num_predict": 4})
    final = chunks[-1]
    assert "prompt_eval_count" not in final and "prompt_eval_duration" not in final
    assert final["eval_count"] == 4 and final["total_duration"] > 0


@pytest.mark.parametrize(("fault", "status", "message"), [
    ("unknown_model", 404, "model 'llama3.2' not found"),
    ("bad_request", 400,
     "json: cannot unmarshal number into Go struct field GenerateRequest.prompt of type string"),
    ("busy", 503, "server busy, please try again.  maximum pending requests exceeded"),
    ("load_fail", 500, "timed out waiting for llama runner to start - progress 0.00 - "),
])
def test_faults_before_streaming_send_a_real_status(ollama, fault, status, message):
    ollama.set_fault(fault)
    with post(ollama, {"model": "llama3.2", "prompt": "hi"}) as response:
        assert response.status_code == status
        assert response.headers["Content-Type"] == JSON_TYPE
        assert int(response.headers["Content-Length"]) == len(response.content)
        assert response.json() == {"error": message}
    record = ollama.requests[0]
    assert record.fault == fault and record.status == status and record.final is None


def test_load_fail_applies_to_a_warm_model_too(ollama):
    generate(ollama, options={"num_predict": 1})
    ollama.set_fault("load_fail", times=1)
    with post(ollama, {"model": "llama3.2", "prompt": "hi"}) as response:
        assert response.status_code == 500


def test_error_midstream_ends_with_an_error_line_and_no_done(ollama):
    ollama.set_fault("error_midstream")
    response, chunks = generate(ollama, options={"num_predict": 30})
    assert response.status_code == 200
    assert chunks[-1] == {"error": MIDSTREAM_ERROR}
    assert 1 <= len(chunks) - 1 < 30 and not any(chunk.get("done") for chunk in chunks)
    assert ollama.requests[0].final is None and ollama.requests[0].tokens == 10


def test_eof_ends_the_body_cleanly_without_done(ollama):
    ollama.set_fault("eof")
    response, chunks = generate(ollama, options={"num_predict": 30})
    assert response.status_code == 200 and len(chunks) == 10
    assert all(set(chunk) == GENERATE_KEYS and chunk["done"] is False for chunk in chunks)


def test_drop_cuts_the_connection_without_the_last_chunk(ollama):
    ollama.set_fault("drop")
    seen = []
    with post(ollama, {"model": "llama3.2", "prompt": "hi", "options": {"num_predict": 30}}) as response, \
            pytest.raises(requests.exceptions.ChunkedEncodingError):
        for line in response.iter_lines():
            seen.append(line)
    assert len([line for line in seen if line]) == 10
    record = ollama.wait_for(lambda records: records and records[0].finished)[0]
    assert record.final is None and record.status == 200


def test_stall_goes_quiet_until_the_client_gives_up(ollama):
    ollama.set_fault("stall")
    with post(ollama, {"model": "llama3.2", "prompt": "hi", "options": {"num_predict": 30}},
              timeout=(5, 0.3)) as response:
        started = time.monotonic()
        with pytest.raises(requests.exceptions.ConnectionError):
            for _ in response.iter_lines():
                pass
        assert time.monotonic() - started >= 0.3
    record = ollama.wait_for(lambda records: records[0].client_closed, timeout=3)[0]
    assert len(record.chunks) == 10 and record.final is None


def test_stall_resumes_after_stall_seconds():
    with Simulator(tokens_per_second=2000.0, stall_seconds=0.2) as sim:
        sim.set_fault("stall")
        chunks = generate(sim, options={"num_predict": 30})[1]
        record = sim.wait_for(lambda records: records[0].finished)[0]
    assert chunks[-1]["done"] is True and chunks[-1]["eval_count"] == 30
    assert record.sent_at[10] - record.sent_at[9] >= 0.2


def test_stop_ends_stalled_streams_promptly():
    sim = Simulator(tokens_per_second=2000.0, stall_seconds=3600.0).start()
    try:
        sim.set_fault("stall")
        with post(sim, {"model": "llama3.2", "prompt": "hi", "options": {"num_predict": 30}}) as response:
            iterator = response.iter_lines()  # dropping the generator would close the connection
            assert json.loads(next(iterator))["done"] is False
            sim.wait_for(lambda records: len(records[0].chunks) == 10)  # now stalled
            started = time.monotonic()
            sim.stop()
            assert time.monotonic() - started < 1.5
            with pytest.raises(requests.exceptions.ChunkedEncodingError):
                list(iterator)
    finally:
        sim.stop()
    assert sim.requests[0].finished


def test_thinking_chunks_come_first_with_empty_response(ollama):
    ollama.set_fault("thinking")
    _, chunks = generate(ollama)
    thinking = [chunk for chunk in chunks if "thinking" in chunk]
    assert thinking == chunks[:len(thinking)] and len(thinking) >= 3
    assert all(chunk["response"] == "" and chunk["thinking"] for chunk in thinking)
    record = ollama.requests[0]
    assert record.thinking == "".join(chunk["thinking"] for chunk in thinking)
    assert record.text and record.thinking not in record.text
    assert chunks[-1]["eval_count"] == record.tokens + 1 and record.tokens > len(chunks) - len(thinking) - 1


def test_merged_chunks_carry_several_tokens(ollama):
    plain = generate(ollama, prompt="merge me", options={"num_predict": 30})[1]
    ollama.set_fault("merged")
    merged = generate(ollama, prompt="merge me", options={"num_predict": 30})[1]
    assert len(merged) < len(plain)
    assert merged[-1]["eval_count"] == 30
    assert ollama.requests[1].text == ollama.requests[0].text


def test_stop_string_holds_back_and_ends_with_stop(ollama):
    _, chunks = generate(ollama, prompt="stops", options={"stop": ["."], "num_predict": 100})
    final = chunks[-1]
    record = ollama.requests[0]
    assert final["done_reason"] == "stop" and "." not in record.text and record.text
    assert final["eval_count"] == record.tokens < 100


def test_stream_false_sends_one_object_at_the_end(ollama):
    streamed = generate(ollama, prompt="whole", options={"num_predict": 12})[1]
    with post(ollama, {"model": "llama3.2", "prompt": "whole", "stream": False,
                       "options": {"num_predict": 12}}) as response:
        assert response.headers["Content-Type"] == JSON_TYPE
        assert int(response.headers["Content-Length"]) == len(response.content)
        assert not response.content.endswith(b"\n")
        whole = response.json()
    assert set(whole) == FINAL_KEYS and whole["done"] is True
    assert whole["response"] == "".join(chunk["response"] for chunk in streamed)
    assert whole["eval_count"] == 12 and ollama.requests[1].final == whole


def test_stream_false_with_a_midstream_error_is_a_500(ollama):
    ollama.set_fault("error_midstream")
    with post(ollama, {"model": "llama3.2", "prompt": "x", "stream": False}) as response:
        assert response.status_code == 500
        assert response.json() == {"error": MIDSTREAM_ERROR}


@pytest.mark.parametrize(("body", "reason"), [
    ({"model": "llama3.2", "prompt": ""}, "load"),
    ({"model": "llama3.2"}, "load"),
    ({"model": "llama3.2", "prompt": "", "keep_alive": 0}, "unload"),
])
def test_load_only_is_one_plain_json_object(ollama, body, reason):
    with post(ollama, body) as response:
        assert response.headers["Content-Type"] == JSON_TYPE
        reply = response.json()
    assert set(reply) == {"model", "created_at", "response", "done", "done_reason"}
    assert reply["done"] is True and reply["done_reason"] == reason and reply["response"] == ""


def test_chat_shapes(ollama):
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}],
            "options": {"num_predict": 5}}
    with post(ollama, body, path="/api/chat") as response:
        chunks = lines(response)
    *tokens, final = chunks
    assert len(tokens) == 5
    for chunk in tokens:
        assert set(chunk) == {"model", "created_at", "message", "done"}
        assert chunk["message"]["role"] == "assistant" and chunk["message"]["content"]
        assert set(chunk["message"]) == {"role", "content"}
    assert final["message"] == {"role": "assistant", "content": ""}
    assert "context" not in final and final["done_reason"] == "length" and final["eval_count"] == 5
    assert ollama.requests[0].text == "".join(chunk["message"]["content"] for chunk in tokens)


def test_chat_thinking_and_load_only(ollama):
    body = {"model": "deepseek-r1:1.5b", "messages": [{"role": "user", "content": "hi"}], "think": True}
    with post(ollama, body, path="/api/chat") as response:
        chunks = lines(response)
    assert chunks[0]["message"]["content"] == "" and chunks[0]["message"]["thinking"]
    with post(ollama, {"model": "llama3.2", "messages": []}, path="/api/chat") as response:
        reply = response.json()
    assert reply["message"] == {"role": "assistant", "content": ""} and reply["done_reason"] == "load"


@pytest.mark.parametrize(("path", "body", "status", "message"), [
    ("/api/generate", {"model": "", "prompt": "hi"}, 404, "model '' not found"),
    ("/api/chat", {"model": "", "messages": []}, 400, "model is required"),
    ("/api/generate", {"model": "nope", "prompt": "hi"}, 404, "model 'nope' not found"),
    ("/api/chat", {"model": "Nope:7b", "messages": []}, 404, "model 'Nope:7b' not found"),
    ("/api/generate", {"model": "llama3.2", "prompt": 5}, 400,
     "json: cannot unmarshal number into Go struct field GenerateRequest.prompt of type string"),
    ("/api/generate", {"model": "llama3.2", "prompt": "hi", "keep_alive": "soon"}, 400,
     'time: invalid duration "soon"'),
    ("/api/generate", {"model": "llama3.2", "prompt": "hi", "options": {"temperature": "hot"}}, 500,
     'option "temperature" must be of type float32'),
    ("/api/generate", {"model": "llama3.2", "prompt": "hi", "think": True}, 400,
     '"llama3.2" does not support thinking'),
])
def test_request_errors_match_ollama(ollama, path, body, status, message):
    with post(ollama, body, path=path) as response:
        assert response.status_code == status
        assert response.headers["Content-Type"] == JSON_TYPE
        assert response.json() == {"error": message}


@pytest.mark.parametrize(("data", "message"), [
    (b"", "missing request body"),
    (b"  \n", "missing request body"),
    (b"x", "invalid character 'x' looking for beginning of value"),
    (b"{bad", "invalid character 'b' looking for beginning of object key string"),
    (b'{"model":', "unexpected EOF"),
    (b'{"model" "x"}', "invalid character '\"' after object key"),
    (b'{"model":"x" 1}', "invalid character '1' after object key:value pair"),
    (b"[]", "json: cannot unmarshal array into Go value of type api.GenerateRequest"),
])
def test_bad_json_bodies_get_go_messages(ollama, data, message):
    response = requests.post(ollama.url + "/api/generate", data=data, timeout=5)
    assert response.status_code == 400 and response.json() == {"error": message}
    assert ollama.requests[0].body is None


def test_keep_alive_connection_carries_several_streams(ollama):
    with requests.Session() as session:
        for prompt in ("one", "two", "three"):
            body = {"model": "llama3.2", "prompt": prompt, "options": {"num_predict": 3}}
            with session.post(ollama.url + "/api/generate", json=body, stream=True, timeout=5) as response:
                assert lines(response)[-1]["done"] is True
    assert [record.body["prompt"] for record in ollama.requests] == ["one", "two", "three"]


def test_chunked_request_bodies_and_trailing_data_are_accepted(ollama):
    body = json.dumps({"model": "llama3.2", "prompt": "hi", "stream": False}).encode()
    response = requests.post(ollama.url + "/api/generate", data=iter([body[:10], body[10:], b" trailing"]),
                             timeout=5)
    assert response.status_code == 200 and response.json()["done"] is True


def test_cold_load_delays_headers_then_the_model_stays_warm():
    with Simulator(tokens_per_second=2000.0, load_delay=0.3) as sim:
        started = time.monotonic()
        with post(sim, {"model": "llama3.2", "prompt": "hi", "options": {"num_predict": 3}}) as response:
            assert time.monotonic() - started >= 0.3  # no status line or headers before the first token
            cold = lines(response)[-1]
        warm = generate(sim, options={"num_predict": 3}, keep_alive=0)[1][-1]
        again = generate(sim, options={"num_predict": 3})[1][-1]
    assert cold["load_duration"] >= 0.3e9
    assert warm["load_duration"] < 0.1e9  # still loaded from the first request
    assert again["load_duration"] >= 0.3e9  # keep_alive 0 unloaded it


def test_token_pacing_follows_tokens_per_second():
    with Simulator(tokens_per_second=200.0, jitter=0.2) as sim:
        final = generate(sim, options={"num_predict": 20})[1][-1]
    assert final["eval_duration"] >= 20 * 0.005 * 0.8 * 1e9


def test_client_close_is_detected(ollama):
    ollama.tokens_per_second = 500.0
    with post(ollama, {"model": "llama3.2", "prompt": "hi", "options": {"num_predict": 5000}}) as response:
        iterator = response.iter_lines()
        first_lines = [next(iterator) for _ in range(3)]
    assert all(json.loads(line)["done"] is False for line in first_lines)
    record = ollama.wait_for(lambda records: records[0].client_closed and records[0].finished, timeout=3)[0]
    assert record.tokens < 5000 and record.final is None


def test_set_fault_times_reverts_after_that_many_requests(ollama):
    ollama.set_fault("busy", times=1)
    statuses = [requests.post(ollama.url + "/api/generate", json={"model": "llama3.2", "prompt": "hi"},
                              timeout=5).status_code for _ in range(2)]
    assert statuses == [503, 200]
    assert [record.fault for record in ollama.requests] == ["busy", "none"]
    with pytest.raises(ValueError):
        ollama.set_fault("gremlins")
    assert set(FAULTS) >= {"none", "eof", "drop", "stall", "thinking", "merged", "missing_metrics"}


def test_control_api_over_http(ollama):
    reply = requests.post(ollama.url + "/_sim/fault", json={"fault": "unknown_model", "times": 1}, timeout=5)
    assert reply.status_code == 200 and reply.json() == {"ok": True}
    assert requests.post(ollama.url + "/_sim/fault", json={"fault": "gremlins"}, timeout=5).status_code == 400
    assert requests.post(ollama.url + "/api/generate", json={"model": "llama3.2", "prompt": "hi"},
                         timeout=5).status_code == 404
    records = requests.get(ollama.url + "/_sim/requests", timeout=5).json()
    assert [(r["fault"], r["status"], r["path"]) for r in records] == \
        [("unknown_model", 404, "/api/generate")]
    assert records[0]["body"] == {"model": "llama3.2", "prompt": "hi"}


def test_wait_for_requests_blocks_until_a_request_arrives(ollama):
    with pytest.raises(TimeoutError):
        ollama.wait_for_requests(1, timeout=0.05)
    thread = threading.Thread(target=generate, args=(ollama,), daemon=True)
    thread.start()
    records = ollama.wait_for_requests(1, timeout=5)
    thread.join(5)
    assert len(records) >= 1 and records[0].path == "/api/generate"


def test_health_tags_version_ps_and_router_errors(ollama):
    root = requests.get(ollama.url + "/", timeout=5)
    assert root.status_code == 200 and root.text == "Ollama is running"
    assert root.headers["Content-Type"].startswith("text/plain")
    head = requests.head(ollama.url + "/", timeout=5)
    assert head.status_code == 200 and head.content == b""
    assert requests.get(ollama.url + "/api/version", timeout=5).json() == {"version": "0.12.6"}
    models = requests.get(ollama.url + "/api/tags", timeout=5).json()["models"]
    assert [model["name"] for model in models] == ["llama3.2:latest", "qwen2.5:0.5b", "deepseek-r1:1.5b"]
    assert set(models[0]) == {"name", "model", "modified_at", "size", "digest", "details"}
    assert set(models[0]["details"]) == {"parent_model", "format", "family", "families", "parameter_size",
                                         "quantization_level"}
    assert models[0]["details"]["format"] == "gguf" and len(models[0]["digest"]) == 64
    assert requests.get(ollama.url + "/api/ps", timeout=5).json() == {"models": []}
    generate(ollama, options={"num_predict": 1})
    assert [m["name"] for m in requests.get(ollama.url + "/api/ps", timeout=5).json()["models"]] == \
        ["llama3.2:latest"]
    missing = requests.get(ollama.url + "/api/nope", timeout=5)
    assert (missing.status_code, missing.text, missing.headers["Content-Type"]) == \
        (404, "404 page not found", "text/plain")
    wrong = requests.get(ollama.url + "/api/generate", timeout=5)
    assert (wrong.status_code, wrong.text) == (405, "405 method not allowed")
    assert ollama.requests == [ollama.requests[0]]  # only the one generate is recorded


# Realistic lengths and timings, for ETA estimators.

PLAIN = "Why is the sky blue?"
ONE_WORD = "Answer in one word: what colour is the sky?"
ESSAY = "Write an essay on why the sky is blue."


@pytest.fixture
def realistic():
    """Realistic lengths with no pacing at all (infinite speeds), so many long answers are quick."""
    with Simulator(tokens_per_second=math.inf, prompt_eval_rate=math.inf, lengths="realistic") as sim:
        yield sim


def whole(sim, prompt, model="qwen2.5:0.5b", **fields):
    """One stream:false generate; returns its final object."""
    body = {"model": model, "prompt": prompt, "stream": False, **fields}
    response = requests.post(sim.url + "/api/generate", json=body, timeout=10)
    assert response.status_code == 200
    return response.json()


def natural_lengths(sim, prompt, n, model="qwen2.5:0.5b"):
    """The answer lengths of n requests that ended by themselves (eval_count counts the EOS)."""
    finals = [whole(sim, prompt, model) for _ in range(n)]
    assert {final["done_reason"] for final in finals} == {"stop"}
    return sorted(final["eval_count"] - 1 for final in finals)


def median(values):
    return sorted(values)[len(values) // 2]


def test_fixed_lengths_and_steady_speed_are_the_default():
    sim = Simulator()
    assert sim.lengths == "fixed" and sim.speed_spread == 0.0 and sim.keep_alive == 300.0
    assert Simulator(lengths="realistic").speed_spread == 0.2
    with pytest.raises(ValueError):
        Simulator(lengths="random")


def test_realistic_lengths_follow_prompt_hints(realistic):
    one_word = natural_lengths(realistic, ONE_WORD, 40)
    plain = natural_lengths(realistic, PLAIN, 40)
    essay = natural_lengths(realistic, ESSAY, 40)
    assert median(one_word) <= 4 and 40 <= median(plain) <= 90 and 150 <= median(essay) <= 320
    assert 10 * median(one_word) < median(plain) and 2.5 * median(plain) < median(essay)
    assert 1.6 <= plain[32] / plain[8] <= 3.5  # p80/p20 of a lognormal with sigma ln 1.6 is about 2.2


@pytest.mark.parametrize(("prompt", "expected"), [
    (PLAIN, 250),
    (ONE_WORD, 2),
    ("Yes or no: is water wet?", 2),
    ("In one sentence, why is the sky blue?", 25),
    ("Briefly, why is the sky blue?", 88),
    ("Describe Rust in a few words.", 88),
    ("tl;dr of general relativity", 88),
    ("Give me a list of 5 startup ideas.", 100),
    ("Five ideas for a birthday party", 100),
    ("Top 10 films of 2020", 200),
    ("Explain in detail why the sky is blue.", 500),
    ("Step by step, how do I bake bread?", 500),
    (ESSAY, 875),
    ("A long, comprehensive guide to Rust", 875),
    ("How long is a day on Mars?", 250),  # "how long" asks nothing of the answer's length
])
def test_each_hint_moves_the_median(prompt, expected):
    assert lengths.median("llama3.2", prompt) == pytest.approx(expected, rel=0.1, abs=0.5)
    rng = random.Random(5)
    draws = sorted(lengths.draw("llama3.2", prompt, rng) for _ in range(200))
    assert median(draws) == pytest.approx(expected, rel=0.2, abs=1)
    assert 1.8 <= draws[160] / draws[40] <= 2.8 or expected < 5  # few-token answers round coarsely


def test_each_model_has_its_own_habit():
    assert [lengths.model_median(name) for name in ("llama3.2", "llama3.2:latest", "qwen2.5:0.5b",
                                                     "deepseek-r1:1.5b")] == [250, 250, 60, 180]
    other = lengths.model_median("mistral:7b")
    assert 60 <= other <= 300 and other == lengths.model_median("Mistral:7b")
    assert lengths.median("qwen2.5:0.5b", ESSAY) == pytest.approx(3.5 * 60)


def test_realistic_draws_repeat_per_run_and_options_seed_fixes_them():
    def run(sim_seed, options=None):
        with Simulator(tokens_per_second=math.inf, prompt_eval_rate=math.inf, lengths="realistic",
                       seed=sim_seed) as sim:
            return [whole(sim, PLAIN, options=options or {})["eval_count"] for _ in range(6)]

    first = run(0)
    assert run(0) == first  # reproducible run
    assert len(set(first)) > 3  # yet a repeated prompt varies, like sampling with temperature
    assert run(1) != first
    fixed = run(0, {"seed": 7})
    assert len(set(fixed)) == 1 and run(1, {"seed": 7}) == fixed
    assert len(set(run(0, {"seed": -1}))) > 3  # -1 means "no seed"


def test_num_predict_cuts_a_long_realistic_answer(realistic):
    response, chunks = generate(realistic, prompt=ESSAY, options={"num_predict": 30})
    final = chunks[-1]
    assert final["done_reason"] == "length" and final["eval_count"] == 30 and len(chunks) == 31
    assert realistic.requests[0].tokens == 30


def test_a_realistic_answer_below_num_predict_stops_by_itself(realistic):
    final = whole(realistic, ONE_WORD, options={"num_predict": 50})
    record = realistic.requests[0]
    assert final["done_reason"] == "stop" and final["eval_count"] == record.tokens + 1 <= 50
    thinking = whole(realistic, ONE_WORD, "deepseek-r1:1.5b", think=True, options={"num_predict": 50})
    record = realistic.requests[1]
    assert thinking["done_reason"] == "stop" and thinking["eval_count"] == record.tokens + 1 < 20
    assert record.thinking and record.text


def test_realistic_speed_differs_between_requests():
    with Simulator(tokens_per_second=400.0, jitter=0.0, lengths="realistic") as sim:
        finals = [generate(sim, prompt=ESSAY, options={"num_predict": 25})[1][-1] for _ in range(5)]
        short = generate(sim, prompt=ONE_WORD)[1][-1]
        drawn = [record.tokens_per_second for record in sim.requests]
    # Sampling the EOS takes its step too, so even a two-token answer shows its true speed.
    assert short["done_reason"] == "stop" and short["eval_count"] / short["eval_duration"] * 1e9 <= drawn.pop()
    rates = [final["eval_count"] / final["eval_duration"] * 1e9 for final in finals]
    assert all(320 <= speed <= 480 for speed in drawn) and len(set(drawn)) == 5
    assert max(drawn) / min(drawn) > 1.15
    assert all(rate <= speed * 1.02 for rate, speed in zip(rates, drawn, strict=True))  # paced, never faster
    assert max(rates) / min(rates) > 1.1


def test_fixed_mode_keeps_a_steady_speed(ollama):
    for _ in range(3):
        generate(ollama, options={"num_predict": 3})
    assert {record.tokens_per_second for record in ollama.requests} == {2000.0}


def test_keep_alive_expiry_makes_the_next_request_cold():
    with Simulator(tokens_per_second=2000.0, load_delay=0.05, keep_alive=60) as sim:
        later = 0.0
        sim.scheduler.clock = lambda: time.monotonic() + later  # jump ahead instead of sleeping

        def load_duration(**fields):
            return generate(sim, options={"num_predict": 2}, **fields)[1][-1].get("load_duration", 0)

        assert load_duration() >= 0.05e9  # first use
        assert load_duration() < 0.04e9  # warm
        left = sim.scheduler.loaded()["llama3.2:latest"]
        assert 59 < left <= 60  # the simulator's keep_alive, as the request sent none
        later = 61.0
        assert load_duration(keep_alive="10m") >= 0.05e9  # expired: cold again
        later = 122.0
        assert load_duration() < 0.04e9  # the request's 10m outlives the server default


def test_load_delay_range_draws_each_cold_load():
    def loads(seed):
        scheduler = Scheduler(load_delay=(0.0, 3.0), keep_alive=0, seed=seed)
        waits = []
        for _ in range(20):
            scheduler.acquire("m", waits.append)
            scheduler.release("m", None)  # keep_alive 0: the next acquire loads again
        return waits

    waits = loads(0)
    assert len(waits) == 20 and all(0.0 <= wait <= 3.0 for wait in waits)
    assert max(waits) - min(waits) > 1.5 and len(set(waits)) == 20
    assert loads(0) == waits and loads(1) != waits
    warm = Scheduler(load_delay=(1.0, 2.0), keep_alive=-1)
    pauses = []
    for _ in range(3):
        warm.acquire("m", pauses.append)
        warm.release("m", None)
    assert len(pauses) == 1 and math.isinf(warm.loaded()["m"])  # negative keep_alive: forever


def test_simulator_accepts_a_load_delay_range():
    with Simulator(tokens_per_second=2000.0, load_delay=(0.02, 0.04)) as sim:
        final = generate(sim, options={"num_predict": 2})[1][-1]
    assert 0.02e9 <= final["load_duration"] < 0.5e9


def test_cli_defaults_to_realistic_lengths_and_parses_ranges():
    args = cli.parse_args([])
    assert (args.lengths, args.speed_spread, args.keep_alive, args.load_delay) == ("realistic", 0.2, 300.0, 1.5)
    args = cli.parse_args(["--lengths", "fixed", "--load-delay", "0-3", "--keep-alive", "1h30m",
                           "--speed-spread", "0"])
    assert (args.lengths, args.load_delay, args.keep_alive, args.speed_spread) == ("fixed", (0.0, 3.0), 5400.0, 0)
    assert cli.parse_args(["--keep-alive", "-1"]).keep_alive == -1
    for bad in (["--load-delay", "soon"], ["--keep-alive", "soon"], ["--lengths", "random"]):
        with pytest.raises(SystemExit):
            cli.parse_args(bad)
