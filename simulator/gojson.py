"""Go encoding/json look-alike: compact HTML-safe output and Go-worded decode errors."""

import json

# json.Marshal escapes these even inside otherwise raw UTF-8 output.  They can only occur
# inside string literals, so translating the whole encoded text is safe.
_GO_ESCAPES = str.maketrans({
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
})

# strconv.Quote spellings Go uses when it names an offending character.
_GO_CHAR_NAMES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f", "\v": "\\v", "\a": "\\a"}

# Python's scanner messages -> the phrase Go's scanner uses at the same spot.
_CONTEXTS = {
    "Expecting value": "looking for beginning of value",
    "Expecting property name enclosed in double quotes": "looking for beginning of object key string",
    "Expecting ':' delimiter": "after object key",
    "Invalid control character at": "in string literal",
}

_WHITESPACE = " \t\r\n"


class RequestError(Exception):
    """An error Ollama reports before streaming: a real status and {"error": message}."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


class _Constant(ValueError):
    """Python accepts NaN/Infinity; Go does not."""


def dumps(obj):
    """Encode like json.Marshal: compact, raw UTF-8, HTML characters escaped."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).translate(_GO_ESCAPES)


def encode(obj):
    """Bytes of dumps(); lone surrogates cannot occur in Go strings, so replace them."""
    return dumps(obj).encode("utf-8", "replace")


def _reject_constant(name):
    raise _Constant(name)


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def decode_object(raw, struct):
    """Decode a request body as gin's ShouldBindJSON does, raising RequestError(400)."""
    text = raw.decode("utf-8", "replace")
    start = len(text) - len(text.lstrip(_WHITESPACE))
    if start == len(text):
        raise RequestError(400, "missing request body")
    try:
        # json.Decoder reads one value and never looks at what follows it.
        value, _ = _DECODER.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        raise RequestError(400, syntax_message(exc)) from None
    except _Constant as exc:
        raise RequestError(400, _constant_message(str(exc))) from None
    if value is None:
        return {}  # null leaves a Go struct at its zero value
    if not isinstance(value, dict):
        raise RequestError(400, f"json: cannot unmarshal {kind_of(value)} into Go value of type api.{struct}")
    return value


def kind_of(value):
    """The JSON kind name Go puts in UnmarshalTypeError messages."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def quote_char(ch):
    """Go's quoteChar: how the scanner names a bad character."""
    if ch == "'":
        return "'\\''"
    if ch == '"':
        return "'\"'"
    if ch.isprintable():
        return f"'{ch}'"
    return "'" + _GO_CHAR_NAMES.get(ch, f"\\x{ord(ch):02x}") + "'"


def syntax_message(exc):
    """Translate a Python JSONDecodeError into the text Go's decoder would give."""
    doc, pos, msg = exc.doc, exc.pos, exc.msg
    if msg.startswith("Unterminated string") or pos >= len(doc.rstrip(_WHITESPACE)):
        return "unexpected EOF"  # Go's Decoder hit the end of the body mid-value
    if msg == "Invalid \\escape":
        return f"invalid character {quote_char(doc[pos + 1])} in string escape code"
    if msg == "Invalid \\uXXXX escape":
        return _unicode_escape_message(doc, pos)
    if msg == "Expecting ',' delimiter":
        where = "after array element" if _innermost(doc, pos) == "[" else "after object key:value pair"
        return f"invalid character {quote_char(doc[pos])} {where}"
    return f"invalid character {quote_char(doc[pos])} {_CONTEXTS.get(msg, 'looking for beginning of value')}"


def _unicode_escape_message(doc, pos):
    start = doc.index("\\u", max(0, pos - 2)) + 2
    for ch in doc[start:start + 4]:
        if ch not in "0123456789abcdefABCDEF":
            return f"invalid character {quote_char(ch)} in \\u hexadecimal character escape"
    return "unexpected EOF"


def _constant_message(name):
    if name.startswith("-"):
        return "invalid character 'I' in numeric literal"
    return f"invalid character '{name[0]}' looking for beginning of value"


def _innermost(doc, pos):
    """The bracket that encloses pos, skipping brackets inside strings."""
    stack, in_string, escaped = [], False, False
    for ch in doc[:pos]:
        if in_string:
            escaped, in_string = (not escaped and ch == "\\"), (escaped or ch != '"')
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            stack.append(ch)
        elif ch in "]}" and stack:
            stack.pop()
    return stack[-1] if stack else ""
