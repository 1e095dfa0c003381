"""An OpenAPI document in plain words for the API docs page: operations, fields, types and ranges."""
import json
import re

from markupsafe import Markup, escape


def ref_name(schema):
    """`Job` for `{"$ref": "#/components/schemas/Job"}`, else None."""
    target = schema.get("$ref", "") if isinstance(schema, dict) else ""
    return target.rsplit("/", 1)[-1] or None


def resolve(schema, doc):
    name = ref_name(schema)
    return doc["components"]["schemas"][name] if name else schema


def kind(schema, doc):
    """A schema in a few words, e.g. "integer, 1 to 32768, or -1"."""
    if ref_name(schema):
        return ref_name(schema)
    if "const" in schema:
        return _literal(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join(_literal(value) for value in schema["enum"])
    alternatives = schema.get("anyOf") or schema.get("oneOf")
    if alternatives:
        base = {key: value for key, value in schema.items() if key not in ("anyOf", "oneOf", "description")}
        return " or ".join(kind({**base, **choice}, doc) for choice in alternatives)
    types = schema.get("type", "any")
    types = [types] if isinstance(types, str) else types
    return " or ".join(_one_type(name, schema, doc) for name in types)


def _one_type(name, schema, doc):
    if name in ("integer", "number"):
        return _joined(name, _range(schema.get("minimum"), schema.get("maximum"), ""))
    if name == "string":
        length = _range(schema.get("minLength"), schema.get("maxLength"), " characters")
        shape = schema.get("format") or (f"matching {schema['pattern']}" if "pattern" in schema else "")
        return _joined("string", length, shape)
    if name == "array":
        items = kind(schema.get("items", {}), doc)
        size = _range(schema.get("minItems"), schema.get("maxItems"), " items")
        return _joined(f"list of {items}", size, "no repeats" if schema.get("uniqueItems") else "")
    return name


def _range(low, high, unit):
    if low is not None and high is not None:
        return f"{low} to {high}{unit}"
    if high is not None:
        return f"at most {high}{unit}"
    return f"at least {low}{unit}" if low else ""


def _joined(*parts):
    return ", ".join(part for part in parts if part)


def _literal(value):
    return value if isinstance(value, str) else json.dumps(value)


def inline_code(text):
    """Text with its `backquoted` parts as <code>, the rest escaped."""
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


def fields(schema, doc, prefix=""):
    """Rows (name, kind, ref, required, description) of an object's fields; the fields of an
    inline object field follow it, as `options.top_k`."""
    schema = resolve(schema, doc)
    rows = []
    required = set(schema.get("required", ()))
    for name, field in schema.get("properties", {}).items():
        rows.append({"name": prefix + name, "kind": kind(field, doc), "ref": ref_name(field),
                     "required": name in required, "description": _description(field)})
        if "properties" in field:
            rows.extend(fields(field, doc, f"{prefix}{name}."))
    return rows


def _description(field):
    default = f" Default: {_literal(field['default'])}." if "default" in field else ""
    return (field.get("description", "") + default).strip()


def parameters(operation, doc):
    return [{"name": p["name"], "where": p["in"], "kind": kind(p["schema"], doc), "required": p.get("required"),
             "description": _description({**p["schema"], **p})} for p in operation.get("parameters", ())]


def answers(operation, doc):
    rows = []
    for code, answer in operation["responses"].items():
        if "$ref" in answer:
            answer = doc["components"]["responses"][ref_name(answer)]
        media, content = next(iter(answer.get("content", {}).items()), (None, {}))
        rows.append({"code": code, "description": answer["description"], "media": media,
                     "ref": ref_name(content.get("schema")), "headers": sorted(answer.get("headers", {}))})
    return rows


def groups(doc):
    """[(tag, [operation views])], in the document's order."""
    found = {tag["name"]: [] for tag in doc.get("tags", ())}
    for path, methods in doc["paths"].items():
        for method, operation in methods.items():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            found.setdefault(operation["tags"][0], []).append({
                "method": method.upper(), "path": path, "id": operation["operationId"],
                "summary": operation["summary"], "description": operation.get("description", ""),
                "public": operation.get("security") == [], "parameters": parameters(operation, doc),
                "body": ref_name(body) if body else None, "body_fields": fields(body, doc) if body else [],
                "answers": answers(operation, doc)})
    return [(tag, views) for tag, views in found.items() if views]
