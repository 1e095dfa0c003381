"""Checks a generation request and a list's query by tables of rules that also make the OpenAPI schemas."""
from flask import request

from webapp import statuses
from webapp.web.rules import (  # noqa: F401 (the routes import whole_numbers from here)
    Choice,
    Count,
    Cursor,
    InvalidInput,
    ModelName,
    Number,
    Options,
    Strings,
    Text,
    whole_numbers,
)

OPTIONS = {
    "num_predict": Number(1, 32_768, integer=True, unlimited=-1),
    "temperature": Number(0, 2),
    "top_p": Number(0, 1),
    "top_k": Number(1, 1000, integer=True),
    "seed": Number(-1, 2**31 - 1, integer=True),
    "stop": Strings(most=8, longest=100),
}
FIELDS = {  # checked in this order: the first bad field is the one named
    "prompt": Text(required=True),
    "model": ModelName("must be an Ollama model name such as 'llama3.2' or 'qwen2.5:0.5b'"),
    "system": Text(),
    "options": Options(OPTIONS),
}


def generation_request(body, default_model):
    """The cleaned request: prompt, model, system, options. Raises InvalidInput."""
    if not isinstance(body, dict):
        raise InvalidInput("body", "must be a JSON object such as {\"prompt\": \"Hello\"}")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise InvalidInput(unknown[0], f"is not a known field; use {', '.join(FIELDS)}")
    fields = {name: rule.check(name, body.get(name)) for name, rule in FIELDS.items()}
    fields["model"] = fields["model"] or default_model
    return fields


INCLUDES = ("output",)


def include_output():
    """`?include=output` (comma-separated, for later additions): True when the text is wanted."""
    asked = [part.strip() for part in request.args.get("include", "").split(",") if part.strip()]
    unknown = [part for part in asked if part not in INCLUDES]
    if unknown:
        raise InvalidInput("include", f"can only be {', '.join(INCLUDES)}, not {unknown[0]!r}")
    return "output" in asked


MAX_LIST = 100
LIST_FILTERS = {
    "limit": Count(1, MAX_LIST, default=20),
    "after": Cursor(),
    "status": Choice(statuses.ALL),
    "model": ModelName("must be an Ollama model name such as 'llama3.2'"),
}


def list_filters(args):
    """A list request's query: `limit` (1 to 100), `after` (a job id from the previous page),
    `status` and `model`. Raises InvalidInput."""
    unknown = sorted(set(args) - set(LIST_FILTERS))
    if unknown:
        raise InvalidInput(unknown[0], f"is not a list parameter; use {', '.join(LIST_FILTERS)}")
    return {name: rule.check(name, args.get(name)) for name, rule in LIST_FILTERS.items()}


def form_defaults(form):
    """A form's model and Max tokens fields as request fields (the job form's and the batch form's)."""
    fields = {"model": form["model"] or None}
    if form["num_predict"]:
        try:
            fields["options"] = {"num_predict": int(form["num_predict"])}
        except ValueError:
            raise InvalidInput("num_predict", "must be a whole number") from None
    return fields
