"""Whatever a client sends to /api/, a real gunicorn answers a JSON 4xx: never a 5xx, HTML or a held request."""
import http.client
import json
import re
import shutil
import socket

import pytest
import requests

from helpers import both_backends
from servers import Gunicorn

API = "/api/v1/ai/generation"
LIMIT = 1024 * 1024  # MAX_CONTENT_LENGTH
BODY_TIMEOUT = 1  # REQUEST_BODY_TIMEOUT of the server below
WAIT = 15  # how long a test waits for an answer: far above BODY_TIMEOUT, so "no answer" means "held"


@pytest.fixture(scope="module")
def server(sqlite_template, tmp_path_factory):
    """One gunicorn for the module: these tests write no jobs, and each one opens its own connection."""
    path = tmp_path_factory.mktemp("hostile") / "livegen.sqlite3"
    shutil.copy(sqlite_template, path)
    with Gunicorn(f"sqlite:///{path}", REQUEST_BODY_TIMEOUT=str(BODY_TIMEOUT)) as gunicorn:
        yield gunicorn


def head(method, path, *headers):
    """A request's head, byte for byte as given (no client library tidies the address)."""
    return "\r\n".join([f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]).encode()


def chunked(body, end=True):
    """`body` in chunked encoding; without `end`, the last chunk never comes."""
    pieces = [body[i:i + 65536] for i in range(0, len(body), 65536)]
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + (b"0\r\n\r\n" if end else b"")


def send(server, data):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
    sock.sendall(data)
    return sock


def answer(sock):
    """The server's answer on `sock`, its body read; pytest.fail if none comes within WAIT seconds."""
    response = http.client.HTTPResponse(sock)
    try:
        response.begin()
        response.body = response.read()
    except TimeoutError:
        pytest.fail(f"no answer within {WAIT} s: the server holds the request")
    return response


def ask(server, data):
    with send(server, data) as sock:
        return answer(sock)


def json_error(response, status):
    """The JSON error body, after checking the status and that it is JSON (not HTML, not plain text)."""
    assert (response.status, response.getheader("Content-Type")) == (status, "application/json"), response.body
    error = json.loads(response.body)
    assert error["success"] is False
    return error


def test_malformed_chunked_body_is_400_json_naming_the_problem(server):
    response = ask(server, head("POST", API, "Content-Type: application/json", "Transfer-Encoding: chunked")
                   + b"zz\r\nabc\r\n0\r\n\r\n")
    error = json_error(response, 400)
    assert "malformed" in error["error"] and "chunked" in error["error"]


def test_malformed_chunked_form_is_400_not_500(server):
    # A real session and token, so the form's CSRF check cannot be what refuses it: the body read must.
    page = requests.get(server.url + "/", timeout=WAIT)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)[1]
    response = ask(server, head("POST", "/jobs", "Content-Type: application/x-www-form-urlencoded",
                                "Transfer-Encoding: chunked", f"Cookie: session={page.cookies['session']}",
                                f"X-CSRF-Token: {token}") + b"zz\r\nabc\r\n0\r\n\r\n")
    assert response.status == 400, response.body
    assert b"malformed" in response.body


@pytest.mark.parametrize(("extra", "end"), [(1, True), (LIMIT, False)], ids=["one-byte-over", "2-MB-unfinished"])
def test_chunked_body_past_the_limit_is_413(server, extra, end):
    # Unfinished: the last chunk never comes, so only a server that counts the bytes as they arrive
    # answers 413 (one that read to the end first would time out with a 408).
    body = b'{"prompt": "' + b"x" * (LIMIT + extra - 14) + b'"}'
    response = ask(server, head("POST", API, "Content-Type: application/json", "Transfer-Encoding: chunked")
                   + chunked(body, end))
    assert "too large" in json_error(response, 413)["error"]


def test_chunked_body_of_exactly_the_limit_is_read_whole(server):
    body = b'{"prompt": "' + b"x" * (LIMIT - 14) + b'"}'
    assert len(body) == LIMIT
    response = ask(server, head("POST", API, "Content-Type: application/json", "Transfer-Encoding: chunked")
                   + chunked(body))
    assert json_error(response, 400)["field"] == "prompt"  # parsed whole, then refused as too long a prompt


@both_backends
@pytest.mark.parametrize("stop", ["\ud800", ["ok", "a\udfffb"]])
def test_lone_surrogate_in_stop_is_400_naming_it(client, stop):
    # Valid JSON, but no database stores it as text (MariaDB's JSON check refused it: a 503, forever).
    response = client.post(API, data=json.dumps({"prompt": "hi", "options": {"stop": stop}}),
                           content_type="application/json")
    assert response.status_code == 400
    error = response.get_json()
    assert error["field"] == "options.stop" and error["error"].startswith("options.stop: ")


def test_empty_or_slashed_job_id_is_json_404_not_a_redirect(server):
    sent = [(method, f"{API}/{job_id}/{action}")
                 for method, action in [("GET", "status"), ("POST", "cancel"), ("GET", "progress")]
                 for job_id in ["", "a%2Fb", "a%2F", "%2Fa", "%2F"]]
    answers = {}
    for method, path in sent:
        response = ask(server, head(method, path, "Content-Length: 0"))
        answers[method, path] = (response.status, response.getheader("Content-Type"))
    assert answers == dict.fromkeys(sent, (404, "application/json"))


def test_overlong_address_is_json_414(server):
    response = ask(server, head("GET", f"{API}/{'a' * 5000}/status"))  # below gunicorn's own 8190
    assert "too long" in json_error(response, 414)["error"]


def test_oversized_header_is_json_431_naming_it(server):
    response = ask(server, head("GET", f"{API}/a/status", f"X-Big: {'a' * 9000}"))  # below gunicorn's 16380
    assert "'X-Big'" in json_error(response, 431)["error"]


@pytest.mark.parametrize(("path", "allowed"), [
    (API, {"GET", "HEAD", "POST"}),  # the caller's list, and create
    (f"{API}/a/status", {"GET", "HEAD"}),
    (f"{API}/a/cancel", {"POST"}),
    (f"{API}/a/progress", {"GET", "HEAD"}),
])
def test_options_is_json_405_with_allow(server, path, allowed):
    response = ask(server, head("OPTIONS", path))
    json_error(response, 405)
    assert {method.strip() for method in response.getheader("Allow").split(",")} == allowed


@pytest.mark.parametrize("framing", [
    ["Content-Length: 100"],
    ["Transfer-Encoding: chunked"],
])
def test_body_that_stops_arriving_is_dropped_with_408(server, framing):
    start = b'{"prompt":' if framing[0].startswith("Content-Length") else b'a\r\n{"prompt":'
    with send(server, head("POST", API, "Content-Type: application/json", *framing) + start) as sock:
        response = answer(sock)  # then silence: the server must give up after BODY_TIMEOUT, not WAIT
        assert "stopped arriving" in json_error(response, 408)["error"]
        assert sock.recv(1) == b""  # and close the connection: its greenlet is free again
