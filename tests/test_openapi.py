"""The OpenAPI document is the code's: its routes, its validators' fields and edges, and real answers."""
import json
import re

import jsonschema_rs
import pytest
from conftest import app_in_context
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

from webapp.batches.store import MAX_ITEMS
from webapp.web import openapi, rules, validation, webhook_input
from webapp.web.batch_input import DEFAULTS

from helpers import both_backends, run_next

API = "/api/v1/ai/generation"
BATCHES = f"{API}/batches"
HOOK = "https://hooks.example/livegen"
HOOKED = {"WEBHOOK_SECRET": "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", "WEBHOOK_ALLOW_PRIVATE": True}


@pytest.fixture
def app(database_url):
    """The suite's app with webhooks on (private targets allowed: no DNS lookup for the test's URL)."""
    with app_in_context(database_url, **HOOKED) as app:
        yield app


@pytest.fixture
def doc(client):
    return client.get("/api/v1/openapi.json").get_json()


# --- checking an answer against the document -------------------------------------------------------
def strict(schema):
    """The schema with no undocumented field allowed anywhere: an answer that sends a field the
    document leaves out fails here, though the document itself stays open to additions."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    tightened = {key: strict(value) for key, value in schema.items()}
    if "properties" in schema and "additionalProperties" not in schema:
        tightened["additionalProperties"] = False
    return tightened


def validate(doc, schema, instance):
    """jsonschema_rs against `schema`, its $refs resolved in the document's components."""
    validator = jsonschema_rs.validator_for(strict({**schema, "components": doc["components"]}), validate_formats=True)
    errors = [f"{error.instance_path}: {error.message}" for error in validator.iter_errors(instance)]
    assert not errors, (errors[:5], instance)


def resolve(doc, item):
    while "$ref" in item:
        section, name = item["$ref"].split("/")[-2:]
        item = doc["components"][section][name]
    return item


def conforms(doc, method, template, response):
    """The answer is one the document gives: its status, required headers, content type and body."""
    operation = doc["paths"][template][method.lower()]
    answer = operation["responses"].get(str(response.status_code))
    assert answer is not None, f"{method} {template}: {response.status_code} is not in the document"
    answer = resolve(doc, answer)
    missing = [name for name, head in answer.get("headers", {}).items()
               if head["required"] and name not in response.headers]
    assert not missing, f"{method} {template} {response.status_code}: no {missing}"
    content = answer.get("content", {})
    assert not content or response.mimetype in content, (response.mimetype, list(content))
    if response.mimetype == "application/json":
        validate(doc, content[response.mimetype]["schema"], response.get_json())
    if response.mimetype == "text/event-stream":
        for event in events_of(response):
            event_conforms(doc, content[response.mimetype]["schema"], event)
    response.get_data()  # a download's generator runs to its end, in this request's context
    return response


def events_of(response):
    """The stream's events as schemathesis reads them: {event, data, id} (a `retry:` block is none)."""
    text = b"".join(response.response).decode()
    blocks = [dict(line.split(": ", 1) for line in block.splitlines()) for block in text.strip().split("\n\n")]
    return [block for block in blocks if "data" in block]


def event_conforms(doc, schema, event):
    """An event matches its branch of the stream's schema, and its JSON data the branch's contentSchema."""
    branches = {branch["properties"]["event"]["const"]: branch for branch in resolve(doc, schema)["oneOf"]}
    assert event["event"] in branches, f"event {event['event']!r} is not in the document"
    branch = branches[event["event"]]
    validate(doc, branch, event)
    validate(doc, branch["properties"]["data"]["contentSchema"], json.loads(event["data"]))


def call(client, doc, method, path, template, **kwargs):
    return conforms(doc, method, template, client.open(path, method=method, **kwargs))


# --- the document is the code's ----------------------------------------------------------------------
def test_every_api_route_is_in_the_document_and_nothing_else(app, doc):
    routes = {(method.lower(), openapi.openapi_path(rule.rule)) for rule in app.url_map.iter_rules()
              if rule.rule.startswith("/api/") for method in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(method, path) for path, item in doc["paths"].items() for method in item}
    assert documented == routes
    assert openapi.undescribed(app) == ([], []), "a route without a description, or one without a route"


def test_the_document_is_valid_openapi_3_1_and_every_reference_resolves(doc):
    OPENAPI_31_VALIDATOR.validate(doc)
    text = json.dumps(doc)
    for section, name in re.findall(r'"#/components/(\w+)/(\w+)"', text):
        assert name in doc["components"][section], name
    operation_ids = {op["operationId"] for item in doc["paths"].values() for op in item.values()}
    linked = set(re.findall(r'"operationId": "([\w.]+)", "parameters"', text))
    assert linked <= operation_ids, linked - operation_ids


def test_every_field_and_option_the_validators_take_is_in_the_request_schemas(doc):
    schemas = doc["components"]["schemas"]
    create = schemas["GenerationRequest"]["properties"]
    assert set(create) == {*validation.FIELDS, *webhook_input.FIELDS}
    assert set(create["options"]["properties"]) == set(validation.OPTIONS)
    assert set(schemas["BatchRequest"]["properties"]) == {"items", *DEFAULTS, *webhook_input.FIELDS}
    assert schemas["BatchRequest"]["properties"]["items"]["maxItems"] == MAX_ITEMS
    listing = doc["paths"][API]["get"]["parameters"]
    assert [p["name"] for p in listing] == list(validation.LIST_FILTERS)
    status = doc["paths"][f"{API}/{{job_id}}/status"]["get"]["parameters"]
    assert status[1]["schema"]["enum"] == list(validation.INCLUDES)


def edges(rule):
    """Values at and just past each edge of a rule, and values of the wrong type."""
    wrong = [None, True, "1", [1], {"a": 1}]
    if isinstance(rule, rules.Number):
        step = 1 if rule.integer else 0.001
        inside = [rule.low, rule.high, 1.5] + ([rule.unlimited] if rule.unlimited is not None else [])
        return inside + [rule.low - step, rule.high + step] + wrong
    if isinstance(rule, rules.Strings):
        return ["a", "", "x" * rule.longest, "x" * (rule.longest + 1), ["a"] * rule.most,
                ["a"] * (rule.most + 1), [""], [1], 5, None]
    if isinstance(rule, rules.Text):  # not " ": the document says "not blank" in words only
        return ["Hi", "", "x" * rule.longest, "x" * (rule.longest + 1), None, 5, ["Hi"]]
    if isinstance(rule, rules.ModelName):
        return ["llama3.2", "qwen2.5:0.5b", "library/llama3.2:latest", "", None, "bad name", "a" * rule.longest,
                "a" * (rule.longest + 1), ":x", "llama3.2\n", 5]
    return [None, {}, [], "x", {"nope": 1}]  # Options


def bodies():
    """(label, body) for every field's and every option's edges."""
    for name, rule in validation.FIELDS.items():
        for value in edges(rule):
            yield f"{name}={value!r:.40}", {"prompt": "Hi", name: value}
    for name, rule in validation.OPTIONS.items():
        for value in edges(rule):
            yield f"options.{name}={value!r:.40}", {"prompt": "Hi", "options": {name: value}}


def test_the_request_schema_and_the_validator_agree_at_every_edge(doc):
    validator = jsonschema_rs.validator_for({"$ref": "#/components/schemas/GenerationRequest",
                                             "components": doc["components"]})
    disagree = []
    for label, body in bodies():
        try:
            accepted = validation.generation_request(body, "llama3.2") is not None
        except rules.InvalidInput:
            accepted = False
        if validator.is_valid(body) != accepted:
            disagree.append((label, "the validator " + ("takes" if accepted else "refuses") + " it"))
    assert not disagree


# --- real answers match it ---------------------------------------------------------------------------
def create(client, doc, **body):
    response = call(client, doc, "POST", API, API, json={"prompt": "Hello", **body})
    assert response.status_code == 202
    return response.get_json()["job_id"]


@both_backends
def test_a_jobs_answers_match_the_document(client, doc):
    job_id = create(client, doc, model="qwen2.5:0.5b", system="Be brief.", webhook=HOOK,
                    webhook_events_filter=["start", "completed"], options={"num_predict": 64, "stop": ["\n"]})
    status = f"{API}/{{job_id}}/status"
    call(client, doc, "GET", f"{API}/{job_id}/status", status)
    call(client, doc, "GET", f"{API}/{job_id}/status?include=output", status)
    call(client, doc, "GET", f"{API}?limit=1", API)
    call(client, doc, "GET", f"{API}/{job_id}/webhooks", f"{API}/{{job_id}}/webhooks")
    cancel = f"{API}/{{job_id}}/cancel"
    assert call(client, doc, "POST", f"{API}/{job_id}/cancel", cancel).status_code == 202
    assert call(client, doc, "POST", f"{API}/{job_id}/cancel", cancel).status_code == 409
    assert call(client, doc, "GET", f"{API}/{job_id}/progress", f"{API}/{{job_id}}/progress",
                buffered=False).status_code == 200


@both_backends
def test_a_completed_jobs_status_and_streams_match_the_document(app, client, doc, sim):
    app.config["OLLAMA_URL"] = sim.url
    job_id = create(client, doc)
    assert run_next(app).job_id == job_id
    job = call(client, doc, "GET", f"{API}/{job_id}/status?include=output", f"{API}/{{job_id}}/status")
    assert job.get_json()["job"]["result"]
    for query in ("", "?include=output"):
        stream = call(client, doc, "GET", f"{API}/{job_id}/progress{query}", f"{API}/{{job_id}}/progress",
                      buffered=False)
        assert stream.status_code == 200


@both_backends
def test_a_batchs_answers_match_the_document(client, doc):
    created = call(client, doc, "POST", BATCHES, BATCHES, json={
        "items": [{"prompt": "One"}, {"prompt": "Two", "options": {"temperature": 0.5}}], "model": "llama3.2",
        "options": {"num_predict": 20}, "webhook": HOOK})
    assert created.status_code == 202
    batch_id = created.get_json()["batch_id"]
    one = f"{BATCHES}/{{batch_id}}"
    for tail in ("", "/items?limit=1", "/results.jsonl", "/results.csv", "/log.txt", "/webhooks"):
        response = call(client, doc, "GET", f"{BATCHES}/{batch_id}{tail}", one + tail.split("?")[0])
        assert response.status_code == 200
    call(client, doc, "GET", f"{BATCHES}?limit=5", BATCHES)
    assert call(client, doc, "POST", f"{BATCHES}/{batch_id}/cancel", f"{one}/cancel").status_code == 202
    assert call(client, doc, "POST", f"{BATCHES}/{batch_id}/cancel", f"{one}/cancel").status_code == 409
    assert call(client, doc, "POST", f"{BATCHES}/{batch_id}/retry", f"{one}/retry").status_code == 202
    assert call(client, doc, "GET", f"{BATCHES}/{batch_id}/progress", f"{one}/progress",
                buffered=False).status_code == 200


@pytest.mark.parametrize(("method", "path", "template", "kwargs", "code"), [
    ("POST", API, API, {"json": {"prompt": "Hi", "options": {"top_k": 0}}}, 400),
    ("POST", API, API, {"data": "{nope", "content_type": "application/json"}, 400),
    ("POST", API, API, {"data": "prompt=Hi", "content_type": "text/plain"}, 415),
    ("POST", API, API, {"data": b"x" * (2 * 2**20), "content_type": "application/json"}, 413),
    ("POST", API, API, {"json": {"prompt": "Hi"}, "headers": {"Origin": "https://elsewhere.example"}}, 403),
    ("GET", f"{API}?limit=0", API, {}, 400),
    ("GET", f"{API}/nope/status", f"{API}/{{job_id}}/status", {}, 404),
    ("GET", f"{API}/nope/status?include=text", f"{API}/{{job_id}}/status", {}, 400),
    ("POST", f"{API}/nope/cancel", f"{API}/{{job_id}}/cancel", {}, 404),
    ("GET", f"{API}/nope/progress", f"{API}/{{job_id}}/progress", {}, 404),
    ("GET", f"{BATCHES}/nope/items", f"{BATCHES}/{{batch_id}}/items", {}, 404),
    ("GET", f"{BATCHES}/nope/progress?after=x", f"{BATCHES}/{{batch_id}}/progress", {}, 400),
    ("POST", BATCHES, BATCHES, {"json": {"items": []}}, 400),
    ("GET", f"{API}/nope/status?pad={'x' * 4100}", f"{API}/{{job_id}}/status", {}, 414),
    ("GET", f"{API}/nope/status", f"{API}/{{job_id}}/status", {"headers": {"X-Big": "x" * 8200}}, 431),
])
def test_error_answers_match_the_document(client, doc, method, path, template, kwargs, code):
    assert call(client, doc, method, path, template, **kwargs).status_code == code


def test_401_and_429_match_the_document(app, client, doc):
    app.config["API_TOKEN"] = "the-token"
    assert call(client, doc, "POST", API, API, json={"prompt": "Hi"}).status_code == 401
    assert call(client, doc, "GET", BATCHES, BATCHES).status_code == 401
    app.config.update(API_TOKEN=None, RATE_LIMIT_PER_MINUTE=1)
    create(client, doc)
    limited = call(client, doc, "POST", API, API, json={"prompt": "Hi"})
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0


def test_every_documented_integer_bound_of_a_query_is_the_routes_own(client, doc):
    """Each integer query parameter: its documented minimum and maximum are taken, one past is a 400."""
    job_id = create(client, doc)
    batch_id = client.post(BATCHES, json={"items": [{"prompt": "Hi"}]}).get_json()["batch_id"]
    for template, item in doc["paths"].items():
        path = template.format(job_id=job_id, batch_id=batch_id)
        for parameter in item.get("get", {}).get("parameters", ()):
            schema = parameter["schema"]
            if parameter["in"] != "query" or schema.get("type") != "integer":
                continue
            low, high = schema["minimum"], schema["maximum"]
            for value, ok in ((low, True), (high, True), (low - 1, False), (high + 1, False)):
                response = client.get(path, query_string={parameter["name"]: value}, buffered=False)
                assert (response.status_code == 200) == ok, (template, parameter["name"], value)
                response.close()


# --- served well -------------------------------------------------------------------------------------
def test_the_json_is_cacheable_and_revalidates_with_its_etag(client):
    first = client.get("/api/v1/openapi.json")
    assert first.status_code == 200 and first.mimetype == "application/json"
    assert first.headers["ETag"] and "public" in first.headers["Cache-Control"]
    again = client.get("/api/v1/openapi.json", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""


def test_the_docs_page_shows_every_operation_its_fields_and_answers(client, doc):
    page = client.get("/api/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    html = page.get_data(as_text=True)
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "an inline script: the CSP would block it"
    for path, item in doc["paths"].items():
        for operation in item.values():
            assert f'id="{operation["operationId"]}"' in html and path in html
    for text in ("options.num_predict", "1 to 32768", "webhook_events_filter", "event: complete",
                 "Retry-After", 'href="#schema-Job"'):
        assert text in html, text
    assert client.get("/").get_data(as_text=True).count('href="/api/docs"') == 1


def test_the_document_is_made_once_per_app(app):
    first = openapi.cached(app)
    assert openapi.cached(app) is first and json.loads(first[1]) == first[0]
