"""Request field rules: each checks a value (InvalidInput names the field) and gives its own JSON Schema."""
import re
from dataclasses import dataclass
from numbers import Real

MAX_PROMPT = 32_000
# Ollama model names: [namespace/]name[:tag], letters, digits, and . _ - (at most 200 chars).
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*(:[A-Za-z0-9._-]+)?")


class InvalidInput(ValueError):
    """A request field is missing, of the wrong type or out of range."""

    def __init__(self, field, message):
        super().__init__(f"{field}: {message}")
        self.field = field


def _storable(field, value):
    """A lone surrogate (\\ud800) is valid JSON but no database can store it as text."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(field, "contains a lone surrogate (\\ud800 to \\udfff), which is not valid Unicode; "
                                  "remove it or send the whole pair") from None
    return value


@dataclass(frozen=True)
class Number:
    """A number from `low` to `high` (an integer when `integer`), or the one value `unlimited`."""
    low: Real
    high: Real
    integer: bool = False
    unlimited: int | None = None  # num_predict's -1: as many tokens as the model writes

    def check(self, field, value):
        if self.unlimited is not None and value == self.unlimited:
            return self.unlimited
        kind = "an integer" if self.integer else "a number"
        if isinstance(value, bool) or not isinstance(value, int if self.integer else Real):
            raise InvalidInput(field, f"must be {kind} from {self.low} to {self.high}")
        if not self.low <= value <= self.high:
            raise InvalidInput(field, f"must be {kind} from {self.low} to {self.high}, not {value}")
        return value

    def schema(self):
        kind = "integer" if self.integer else "number"
        if self.unlimited is None:
            return {"type": kind, "minimum": self.low, "maximum": self.high}
        return {"type": kind, "anyOf": [{"const": self.unlimited}, {"minimum": self.low, "maximum": self.high}]}


@dataclass(frozen=True)
class Strings:
    """A list of at most `most` strings of 1 to `longest` characters (one string is a list of one)."""
    most: int
    longest: int

    def check(self, field, value):
        if isinstance(value, str):
            value = [value]
        if (not isinstance(value, list) or len(value) > self.most
                or not all(isinstance(s, str) and 0 < len(s) <= self.longest for s in value)):
            raise InvalidInput(field, f"must be a list of at most {self.most} strings of 1 to {self.longest} "
                                      "characters")
        return [_storable(field, s) for s in value]

    def schema(self):
        one = {"type": "string", "minLength": 1, "maxLength": self.longest}
        return {"anyOf": [one, {"type": "array", "maxItems": self.most, "items": one}]}


@dataclass(frozen=True)
class Text:
    """A string of at most `longest` characters; a `required` one must not be blank."""
    required: bool = False
    longest: int = MAX_PROMPT

    def check(self, field, value):
        if value is None and not self.required:
            return None
        if not isinstance(value, str):
            raise InvalidInput(field, "must be a string")
        if self.required and not value.strip():
            raise InvalidInput(field, "must not be empty")
        if len(value) > self.longest:
            raise InvalidInput(field, f"is {len(value)} characters; the limit is {self.longest}")
        return _storable(field, value)

    def schema(self):
        if self.required:  # not `"pattern": "\\S"`: with maxLength it makes the fuzz's strings slow to draw
            return {"type": "string", "minLength": 1, "maxLength": self.longest, "description": "Not blank."}
        return {"type": ["string", "null"], "maxLength": self.longest}


@dataclass(frozen=True)
class ModelName:
    """An Ollama model name, or None for "" and null (the server's default model)."""
    message: str
    longest: int = 200

    def check(self, field, value):
        if value is None or value == "":
            return None
        if not isinstance(value, str) or len(value) > self.longest or not MODEL_NAME.fullmatch(value):
            raise InvalidInput(field, self.message)
        return value

    def schema(self):
        return {"type": ["string", "null"], "maxLength": self.longest, "pattern": f"^(?:{MODEL_NAME.pattern})?$"}


@dataclass(frozen=True)
class Options:
    """An object of the options in `rules` (null or absent: none)."""
    rules: dict

    def check(self, field, value):
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise InvalidInput(field, "must be an object")
        unknown = sorted(set(value) - set(self.rules))
        if unknown:
            raise InvalidInput(f"{field}.{unknown[0]}", f"is not a supported option; use {', '.join(self.rules)}")
        return {key: self.rules[key].check(f"{field}.{key}", v) for key, v in value.items()}

    def schema(self):
        properties = {name: rule.schema() for name, rule in self.rules.items()}
        return {"type": ["object", "null"], "properties": properties, "additionalProperties": False}


def whole_numbers(value, count):
    """`count` whole numbers joined by '-' (ASCII digits only: int() would take '²' and fail), or None."""
    parts = value.split("-")
    if len(parts) != count or not all(re.fullmatch(r"[0-9]{1,11}", part) for part in parts):
        return None
    return tuple(int(part) for part in parts)


@dataclass(frozen=True)
class Count:
    """A query's whole number from `low` to `high`, `default` when absent (an empty one is refused)."""
    low: int
    high: int
    default: int

    def check(self, field, raw):
        number = whole_numbers(raw, 1) if raw is not None else (self.default,)
        if number is None or not self.low <= number[0] <= self.high:
            raise InvalidInput(field, f"must be a whole number from {self.low} to {self.high}")
        return number[0]

    def schema(self):
        return {"type": "integer", "minimum": self.low, "maximum": self.high, "default": self.default}


@dataclass(frozen=True)
class Choice:
    """A query's value among `values`; empty or absent: None (no filter)."""
    values: tuple

    def check(self, field, raw):
        if raw and raw not in self.values:
            raise InvalidInput(field, f"must be one of {', '.join(self.values)}")
        return raw or None

    def schema(self):
        return {"type": "string", "enum": list(self.values)}


class Cursor:
    """A query's id of the last row of the previous page (its route checks that it is one)."""

    def check(self, field, raw):
        return raw or None

    def schema(self):
        return {"type": "string"}
