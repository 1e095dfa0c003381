"""Checks a generation request field by field; every refusal names the field and the fix."""
import re
from numbers import Real

from flask import request

from webapp import statuses

MAX_PROMPT = 32_000
FIELDS = ("prompt", "model", "system", "options")
# Ollama model names: [namespace/]name[:tag], letters, digits, and . _ - (at most 200 chars).
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*(:[A-Za-z0-9._-]+)?")


class InvalidInput(ValueError):
    """A request field is missing, of the wrong type or out of range."""

    def __init__(self, field, message):
        super().__init__(f"{field}: {message}")
        self.field = field


def _number(field, value, low, high, integer):
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int if integer else Real):
        raise InvalidInput(field, f"must be {kind} from {low} to {high}")
    if not low <= value <= high:
        raise InvalidInput(field, f"must be {kind} from {low} to {high}, not {value}")
    return value


def _storable(field, value):
    """A lone surrogate (\\ud800) is valid JSON but no database can store it as text."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(field, "contains a lone surrogate (\\ud800 to \\udfff), which is not valid Unicode; "
                                  "remove it or send the whole pair") from None
    return value


def _stop(field, value):
    if isinstance(value, str):
        value = [value]
    if (not isinstance(value, list) or len(value) > 8
            or not all(isinstance(s, str) and 0 < len(s) <= 100 for s in value)):
        raise InvalidInput(field, "must be a list of at most 8 strings of 1 to 100 characters")
    return [_storable(field, s) for s in value]


OPTIONS = {
    "num_predict": lambda f, v: -1 if v == -1 else _number(f, v, 1, 32_768, True),
    "temperature": lambda f, v: _number(f, v, 0, 2, False),
    "top_p": lambda f, v: _number(f, v, 0, 1, False),
    "top_k": lambda f, v: _number(f, v, 1, 1000, True),
    "seed": lambda f, v: _number(f, v, -1, 2**31 - 1, True),
    "stop": _stop,
}


def _text(field, value, required):
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string")
    if required and not value.strip():
        raise InvalidInput(field, "must not be empty")
    if len(value) > MAX_PROMPT:
        raise InvalidInput(field, f"is {len(value)} characters; the limit is {MAX_PROMPT}")
    return _storable(field, value)


def _model(value, default):
    if value is None or value == "":
        return default
    if not isinstance(value, str) or len(value) > 200 or not MODEL_NAME.fullmatch(value):
        raise InvalidInput("model", "must be an Ollama model name such as 'llama3.2' or 'qwen2.5:0.5b'")
    return value


def _options(value):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput("options", "must be an object")
    unknown = sorted(set(value) - set(OPTIONS))
    if unknown:
        raise InvalidInput(f"options.{unknown[0]}",
                           f"is not a supported option; use {', '.join(OPTIONS)}")
    return {key: OPTIONS[key](f"options.{key}", v) for key, v in value.items()}


def generation_request(body, default_model):
    """The cleaned request: prompt, model, system, options. Raises InvalidInput."""
    if not isinstance(body, dict):
        raise InvalidInput("body", "must be a JSON object such as {\"prompt\": \"Hello\"}")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise InvalidInput(unknown[0], f"is not a known field; use {', '.join(FIELDS)}")
    return {
        "prompt": _text("prompt", body.get("prompt"), required=True),
        "model": _model(body.get("model"), default_model),
        "system": _text("system", body.get("system"), required=False),
        "options": _options(body.get("options")),
    }


def whole_numbers(value, count):
    """`count` whole numbers joined by '-' (ASCII digits only: int() would take '²' and fail), or None."""
    parts = value.split("-")
    if len(parts) != count or not all(re.fullmatch(r"[0-9]{1,11}", part) for part in parts):
        return None
    return tuple(int(part) for part in parts)


INCLUDES = ("output",)


def include_output():
    """`?include=output` (comma-separated, for later additions): True when the text is wanted."""
    asked = [part.strip() for part in request.args.get("include", "").split(",") if part.strip()]
    unknown = [part for part in asked if part not in INCLUDES]
    if unknown:
        raise InvalidInput("include", f"can only be {', '.join(INCLUDES)}, not {unknown[0]!r}")
    return "output" in asked


MAX_LIST = 100


def list_filters(args, default_limit=20):
    """A list request's query: `limit` (1 to 100), `after` (a job id from the previous page),
    `status` and `model`. Raises InvalidInput."""
    unknown = sorted(set(args) - {"limit", "after", "status", "model"})
    if unknown:
        raise InvalidInput(unknown[0], "is not a list parameter; use limit, after, status, model")
    limit = whole_numbers(args.get("limit", str(default_limit)), 1)
    if limit is None or not 1 <= limit[0] <= MAX_LIST:
        raise InvalidInput("limit", f"must be a whole number from 1 to {MAX_LIST}")
    status = args.get("status") or None
    if status is not None and status not in statuses.ALL:
        raise InvalidInput("status", f"must be one of {', '.join(statuses.ALL)}")
    model = args.get("model") or None
    if model is not None and (len(model) > 200 or not MODEL_NAME.fullmatch(model)):
        raise InvalidInput("model", "must be an Ollama model name such as 'llama3.2'")
    return {"limit": limit[0], "after": args.get("after") or None, "status": status, "model": model}


def form_defaults(form):
    """A form's model and Max tokens fields as request fields (the job form's and the batch form's)."""
    fields = {"model": form["model"] or None}
    if form["num_predict"]:
        try:
            fields["options"] = {"num_predict": int(form["num_predict"])}
        except ValueError:
            raise InvalidInput("num_predict", "must be a whole number") from None
    return fields
