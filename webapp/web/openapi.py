"""The JSON API's OpenAPI 3.1 document, built from its routes, rules and `operations`; served as JSON and a page."""
import hashlib
import json
import re
from http import HTTPStatus

from flask import Blueprint, Response, current_app, render_template, request

from webapp.web import schema_text, schemas
from webapp.web.operations import ERRORS, JSON, OPERATIONS, reply

bp = Blueprint("openapi", __name__)
HIDDEN_METHODS = {"HEAD", "OPTIONS"}  # HEAD is GET without a body; OPTIONS is a 405 here
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
SECURITY = {"bearer": {"type": "http", "scheme": "bearer", "description": (
    "An API key (`flask keys create NAME`, or API_TOKEN). Optional while the server has none; once one "
    "exists, creating, listing and cancelling need it, and with PRIVATE_JOBS reading does too.")}}
INFO = {"title": "livegen API", "version": "1", "description": (
    "Start LLM generations and batches, and follow their progress live. Errors are JSON "
    "`{\"success\": false, \"error\": ...}`; a refused field is named in `field`. Generated from the "
    "routes and validators of the server that serves it.")}


def openapi_path(rule):
    """`/jobs/<job_id>` (any converter) as OpenAPI writes it: `/jobs/{job_id}`."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def api_routes(app):
    """(method, path, endpoint) of every route under /api/."""
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            for method in sorted(rule.methods - HIDDEN_METHODS):
                yield method, openapi_path(rule.rule), rule.endpoint


def undescribed(app):
    """Routes without a description, and descriptions without a route (both should be empty)."""
    routes = {f"{method} {path}" for method, path, _endpoint in api_routes(app)}
    return sorted(routes - set(OPERATIONS)), sorted(set(OPERATIONS) - routes)


def error_codes(method, described):
    codes = {414, 431, *described.get("errors", ())}
    if not described.get("public"):
        codes.add(503)
    if method in UNSAFE_METHODS:
        codes.add(403)
    return sorted(codes)


def error_name(code):
    """`RequestEntityTooLarge` for 413: the name of its answer in the document's components."""
    return HTTPStatus(code).phrase.title().replace(" ", "").replace("-", "")


def error_replies():
    return {error_name(code): reply(text, schemas.ref("Error"), headers=headers)
            for code, (text, headers) in ERRORS.items()}


def operation(method, endpoint, described):
    """One operation object: the description, its errors, its body, its security."""
    op = {"operationId": endpoint, "tags": described.get("tags", ["Other"]),
          "summary": described.get("summary", endpoint)}
    for key in ("description", "parameters"):
        if key in described:
            op[key] = described[key]
    if "body" in described:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": schemas.ref(described["body"])}}}
    responses = dict(described.get("responses", {}))
    for code in error_codes(method, described):
        responses[code] = {"$ref": f"#/components/responses/{error_name(code)}"}
    op["responses"] = {str(code): responses[code] for code in sorted(responses)}
    if described.get("public"):
        op["security"] = []
    return op


def paths(app):
    """Every route under /api/, described ones in the order `operations` gives them; a route
    with no description still appears (with just its errors), so the document never omits one."""
    order = {key: index for index, key in enumerate(OPERATIONS)}
    found = sorted(api_routes(app), key=lambda route: order.get(f"{route[0]} {route[1]}", len(order)))
    result = {}
    for method, path, endpoint in found:
        described = OPERATIONS.get(f"{method} {path}", {"summary": f"{endpoint} (not described yet)"})
        result.setdefault(path, {})[method.lower()] = operation(method, endpoint, described)
    return result


def document(app):
    """The OpenAPI 3.1 document of `app`'s API."""
    tags = dict.fromkeys(tag for described in OPERATIONS.values() for tag in described.get("tags", ()))
    return {
        "openapi": "3.1.0",
        "info": INFO,
        "servers": [{"url": "/"}],
        "security": [{}, {"bearer": []}],  # a key is optional until the server has one
        "tags": [{"name": tag} for tag in tags],
        "paths": paths(app),
        "components": {"schemas": schemas.components(app.config.get("WEBHOOK_ALLOW_HTTP", False)),
                       "responses": error_replies(), "securitySchemes": SECURITY},
    }


def cached(app):
    """(the document, its JSON, its ETag), made once per app: routes and rules do not change."""
    if "openapi" not in app.extensions:
        doc = document(app)
        body = json.dumps(doc, ensure_ascii=False, indent=1).encode()
        app.extensions["openapi"] = doc, body, hashlib.sha256(body).hexdigest()[:32]
    return app.extensions["openapi"]


@bp.get("/api/v1/openapi.json")
def openapi_json():
    _doc, body, etag = cached(current_app)
    response = Response(body, mimetype="application/json")
    response.set_etag(etag)
    response.cache_control.public = True
    response.cache_control.max_age = 300  # it changes only with a deploy; the ETag revalidates cheaply
    return response.make_conditional(request)


@bp.get("/api/docs")
def docs():
    doc = cached(current_app)[0]
    return render_template("api_docs.html", doc=doc, groups=schema_text.groups(doc),
                           fields=lambda schema: schema_text.fields(schema, doc),
                           kind=lambda schema: schema_text.kind(schema, doc), code=schema_text.inline_code)
