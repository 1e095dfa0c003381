"""Turns generate/chat bodies into an Ask, failing the way Ollama's Go handlers fail."""

import dataclasses
import math
import re

from simulator.gojson import RequestError, kind_of

# Top-level request fields whose JSON type Go checks while decoding: name -> (python type, Go type).
_FIELDS = {
    "generate": {
        "model": (str, "string"),
        "prompt": (str, "string"),
        "system": (str, "string"),
        "template": (str, "string"),
        "suffix": (str, "string"),
        "stream": (bool, "bool"),
        "raw": (bool, "bool"),
        "options": (dict, "map[string]interface {}"),
        "context": (list, "[]int"),
        "images": (list, "[]api.ImageData"),
    },
    "chat": {
        "model": (str, "string"),
        "messages": (list, "[]api.Message"),
        "stream": (bool, "bool"),
        "options": (dict, "map[string]interface {}"),
        "tools": (list, "api.Tools"),
    },
}
STRUCTS = {"generate": "GenerateRequest", "chat": "ChatRequest"}

# Option kinds as api.Options.FromMap checks them (unknown keys are ignored).
_INT_OPTIONS = {"num_keep", "seed", "num_predict", "top_k", "repeat_last_n", "mirostat", "num_ctx",
                "num_batch", "num_gpu", "main_gpu", "num_thread"}
_FLOAT_OPTIONS = {"temperature", "top_p", "min_p", "typical_p", "tfs_z", "repeat_penalty",
                  "presence_penalty", "frequency_penalty", "mirostat_tau", "mirostat_eta"}
_BOOL_OPTIONS = {"numa", "low_vram", "f16_kv", "logits_all", "vocab_only", "use_mmap", "use_mlock",
                 "penalize_newline"}

_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3,
                   "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_THINK_LEVELS = ("high", "medium", "low")


@dataclasses.dataclass
class Ask:
    """The parts of a generate/chat request the simulator acts on."""

    kind: str
    model: str
    text: str  # everything the prompt template would see, for prompt counting and determinism
    segments: list  # system/prompt or message contents, for prompt token counting
    load_only: bool
    stream: bool
    raw: bool
    think: bool
    keep_alive: float | None  # seconds; None = keep the model's previous setting; inf = forever
    options: dict


def parse(kind, body):
    """Validate a decoded body (dict) and build an Ask, raising RequestError(400) on bad input."""
    fields = _canonical(kind, body)
    keep_alive = parse_keep_alive(fields["keep_alive"]) if "keep_alive" in fields else None
    think = parse_think(fields["think"]) if "think" in fields else False
    if kind == "generate":
        segments = [fields.get("system", ""), fields.get("prompt", "")]
        if fields.get("raw") and (fields.get("system") or fields.get("template") or fields.get("context")):
            raise RequestError(400, "raw mode does not support template, system, or context")
        load_only = not fields.get("prompt")
    else:
        segments = [_content(message) for message in fields.get("messages", [])]
        load_only = not fields.get("messages")
    return Ask(kind=kind, model=fields.get("model", ""), text="\n".join(segments), segments=segments,
               load_only=load_only, stream=fields.get("stream", True), raw=bool(fields.get("raw")),
               think=think, keep_alive=keep_alive, options=fields.get("options", {}))


def _canonical(kind, body):
    """Match keys like Go does (case-insensitively), drop nulls, and type-check known fields."""
    known = _FIELDS[kind]
    names = {name.casefold(): name for name in (*known, "keep_alive", "think")}
    fields = {}
    for key, value in body.items():
        name = key if key in names.values() else names.get(key.casefold())
        if name is None or value is None:
            continue  # unknown fields are dropped; null leaves the Go zero value
        expected = known.get(name)
        if expected and not isinstance(value, expected[0]):
            raise RequestError(400, f"json: cannot unmarshal {kind_of(value)} into Go struct field "
                                    f"{STRUCTS[kind]}.{name} of type {expected[1]}")
        fields[name] = value
    return fields


def _content(message):
    if not isinstance(message, dict):
        raise RequestError(400, f"json: cannot unmarshal {kind_of(message)} into Go struct field "
                                "ChatRequest.messages of type api.Message")
    content = message.get("content") or ""
    if not isinstance(content, str):
        raise RequestError(400, f"json: cannot unmarshal {kind_of(content)} into Go struct field "
                                "Message.messages.content of type string")
    return content


def parse_keep_alive(value):
    """api.Duration: a number is seconds, a string a Go duration; negative means forever."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        go_type = {bool: "bool", list: "[]interface {}", dict: "map[string]interface {}"}[type(value)]
        raise RequestError(400, f"Unsupported type: '{go_type}'")
    seconds = parse_go_duration(value) if isinstance(value, str) else float(value)
    return math.inf if seconds < 0 else seconds


def parse_go_duration(text):
    """time.ParseDuration, returning seconds; raises RequestError(400) with Go's wording."""
    sign, body = (-1.0 if text[:1] == "-" else 1.0), text.lstrip("+-")
    if body == "0":
        return 0.0
    if re.fullmatch(r"[\d.]+", body):
        raise RequestError(400, f'time: missing unit in duration "{text}"')
    if not body or not re.fullmatch(f"(?:{_DURATION_PART.pattern})+", body):
        raise RequestError(400, f'time: invalid duration "{text}"')
    return sign * sum(float(number) * _DURATION_UNITS[unit] for number, unit in _DURATION_PART.findall(body))


def parse_think(value):
    """api.ThinkValue: a bool or a level string; any level means thinking is on."""
    if isinstance(value, bool):
        return value
    if value in _THINK_LEVELS:
        return True
    if isinstance(value, str):
        raise RequestError(400, f'invalid think value: "{value}" '
                                '(must be "high", "medium", "low", true, or false)')
    raise RequestError(400, 'think must be a boolean or string ("high", "medium", "low", true, or false)')


def check_options(options):
    """api.Options.FromMap: a wrongly typed option is an HTTP 500, after the model is found."""
    for name, value in options.items():
        if value is None:
            continue
        problem = _option_problem(name, value)
        if problem:
            raise RequestError(500, f'option "{name}" must be {problem}')


def _option_problem(name, value):
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if name in _INT_OPTIONS and not is_number:
        return "of type integer"
    if name in _FLOAT_OPTIONS and not is_number:
        return "of type float32"
    if name in _BOOL_OPTIONS and not isinstance(value, bool):
        return "of type boolean"
    if name == "stop" and not isinstance(value, list):
        return "of type array"
    if name == "stop" and not all(isinstance(item, str) for item in value):
        return "of an array of strings"
    return ""
