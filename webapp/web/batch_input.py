"""A batch's items from what a client sends: JSON `items` with shared defaults (the API), or one
prompt per line, a JSONL file or a CSV file with a `prompt` column (the form). Every bad row is
refused by its number, before anything is queued."""
import csv
import io
import json

from webapp.batches.store import MAX_ITEMS
from webapp.web.validation import InvalidInput, generation_request

DEFAULTS = ("model", "system", "options")
SHOWN_PROBLEMS = 10  # rows named in one refusal; the count says how many more
MAX_STORED_CHARS = 16_000_000  # what one batch may write: a shared system prompt counts once per item


def from_json(body, default_model):
    """`{"items": [...], "model": ..., "system": ..., "options": {...}}`: the cleaned items."""
    if not isinstance(body, dict):
        raise InvalidInput("body", 'must be a JSON object such as {"items": [{"prompt": "Hello"}]}')
    unknown = sorted(set(body) - {"items", *DEFAULTS})
    if unknown:
        raise InvalidInput(unknown[0], "is not a batch field; use items, model, system, options, webhook, "
                                       "webhook_events_filter")
    items = body.get("items")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_ITEMS:
        raise InvalidInput("items", f"must be a list of 1 to {MAX_ITEMS:,} job requests such as "
                                    '{"prompt": "Hello"}')
    defaults = _defaults({key: body[key] for key in DEFAULTS if key in body}, default_model)
    return clean([(f"items[{index}]", item) for index, item in enumerate(items)], defaults, default_model)


def _defaults(defaults, default_model):
    """The shared fields, checked once (as a request with a stand-in prompt would be)."""
    generation_request({"prompt": "-", **defaults}, default_model)
    return defaults


def clean(rows, defaults, default_model):
    """[(label, item)] to cleaned requests, each item over the defaults (its options over theirs).
    Raises InvalidInput naming every bad row (the first few) by its label."""
    cleaned, problems = [], []
    for label, item in rows:
        try:
            cleaned.append(generation_request(_over(defaults, item), default_model))
        except InvalidInput as error:
            problems.append(f"{label}: {error}")
    if problems:
        more = len(problems) - SHOWN_PROBLEMS
        raise InvalidInput("items", "; ".join(problems[:SHOWN_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")
                           + ". Nothing was queued.")
    if not 1 <= len(cleaned) <= MAX_ITEMS:
        raise InvalidInput("items", f"a batch has 1 to {MAX_ITEMS:,} prompts, not {len(cleaned):,}")
    stored = sum(len(item["prompt"]) + len(item["system"] or "") for item in cleaned)
    if stored > MAX_STORED_CHARS:  # a shared system prompt is stored with every item
        raise InvalidInput("items", f"the prompts and system prompts come to {stored:,} characters once each "
                                    f"item has its own; the limit is {MAX_STORED_CHARS:,}. Nothing was queued.")
    return cleaned


def _over(defaults, item):
    if not isinstance(item, dict):
        return item  # generation_request says what it must be
    merged = {**defaults, **item}
    if isinstance(defaults.get("options"), dict) and isinstance(item.get("options"), dict):
        merged["options"] = {**defaults["options"], **item["options"]}
    return merged


def from_lines(text):
    """One prompt per line of a text box (blank lines skipped): [(label, item)]."""
    return [(f"line {number}", {"prompt": line.strip()})
            for number, line in enumerate(_lines(text), 1) if line.strip()]


def _lines(text):
    """Lines split at line feeds only: str.splitlines would also split at U+2028, U+2029 and
    U+0085, which a JSON string may hold as they are."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def from_file(name, data):
    """An uploaded JSONL (one job request per line) or CSV (a `prompt` column, and `model` and
    `system` if wanted) file: [(label, item)]."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput("file", "must be UTF-8 text") from None
    if name.lower().endswith(".csv"):
        return _from_csv(text)
    if name.lower().endswith((".jsonl", ".ndjson", ".json")):
        return _from_jsonl(text)
    raise InvalidInput("file", "must be a .jsonl or a .csv file")


def _from_jsonl(text):
    rows = []
    for number, line in enumerate(_lines(text), 1):
        if line.strip():
            try:
                rows.append((f"line {number}", json.loads(line)))
            except ValueError as error:
                raise InvalidInput("file", f"line {number} is not valid JSON ({error}). Nothing was queued.") from None
    return rows


def _from_csv(text):
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if "prompt" not in (reader.fieldnames or []):
        raise InvalidInput("file", "a CSV file needs a header row with a 'prompt' column")
    try:
        return [(f"line {reader.line_num}", {key: value for key, value in row.items()
                                             if key in ("prompt", "model", "system") and value})
                for row in reader]
    except csv.Error as error:
        raise InvalidInput("file", f"line {reader.line_num}: {error}. Nothing was queued.") from None
