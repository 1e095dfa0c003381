"""Deterministic tokens, chunk grouping and the JSON shapes of generate/chat replies."""

import dataclasses
import random
import re
import time
import zlib

_SENTENCES = (
    "The model answers the question one token at a time.",
    "Streaming lets the reader see progress while the reply is still being written.",
    "Every chunk carries a small piece of text, and the last one carries the timings.",
    "A slow network can delay a line, but it never changes the order of the words.",
    "Light from the sun is scattered by the air, so the sky looks blue.",
    "Good tests check the shape of every message, not only the happy path.",
    "When the model finishes, it reports how many tokens it produced.",
    "Short answers arrive quickly, while long ones take a little longer.",
)
# Multi-byte UTF-8 and HTML characters, so clients meet raw UTF-8 and Go's \u003c escapes.
_SPICY = (
    "A naïve café in Zürich serves crème brûlée 🙂.",
    "Markup like <b>bold</b> & <i>italic</i> -> HTML.",
    "日本語 text and emoji 🚀 travel as raw UTF-8 — ½ the fun.",
)
_SPICY_EVERY = 3  # sentences 2, 5, 8, ... are spicy
_TOKEN = re.compile(r"[^\s.,!?]+|[.,!?]")
_THOUGHTS = (
    "Okay", ",", " the", " user", " wants", " a", " short", " answer", ".", " Let", " me",
    " think", " it", " through", " first", ".",
)
_THINKING_TOKENS = 8
_MERGE_SIZES = (2, 3, 4)
_PIECES = re.compile(r"\w+|[^\w\s]")
_TEMPLATE_TOKENS = 10  # what a chat template adds around the prompt
_MESSAGE_TOKENS = 4  # role markers per chat message
_VOCAB = 128_000


@dataclasses.dataclass
class Plan:
    """The tokens a request will sample, in order, as (channel, text) pairs."""

    tokens: list
    natural_end: bool  # True: an EOS follows ("stop"); False: num_predict cut it ("length")


def prompt_count(ask):
    """A deterministic prompt token count: words and punctuation plus template overhead."""
    count = sum(len(_PIECES.findall(segment)) for segment in ask.segments)
    if ask.kind == "chat":
        count += _MESSAGE_TOKENS * len(ask.segments)
    return count + (0 if ask.raw else _TEMPLATE_TOKENS)


def num_predict(options):
    """options.num_predict when it limits the output (> 0), else None."""
    value = options.get("num_predict")
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return int(value) if is_number and value > 0 else None


def fixed_length(ask, default_tokens):
    """The "fixed" lengths mode: None (run until num_predict) when it is set, else
    default_tokens, else 20-80 tokens from the prompt."""
    if num_predict(ask.options):
        return None
    return default_tokens or 20 + zlib.crc32(ask.text.encode()) % 61


def plan(ask, seed, answer, think):
    """Choose the tokens for a request; same prompt and seed, same tokens.

    answer is the natural answer length, which an EOS follows; num_predict cuts it short when the
    thinking and the answer reach the limit. None means "until num_predict", which must then be set.
    """
    rng = random.Random(f"text\x00{seed}\x00{ask.text}")
    limit = num_predict(ask.options)
    thoughts = _THINKING_TOKENS if think else 0
    # The EOS would be sampled after the answer, so an answer that fills the limit is a cut too.
    natural_end = answer is not None and not (limit and thoughts + answer >= limit)
    if not natural_end:
        thoughts = min(thoughts, limit // 2)
        answer = limit - thoughts
    tokens = [("thinking", _THOUGHTS[i % len(_THOUGHTS)]) for i in range(thoughts)]
    tokens += [("response", text) for text in _words(rng, answer)]
    return Plan(tokens=tokens, natural_end=natural_end)


def _words(rng, count):
    """Sentence tokens with leading spaces ("The", " model", ","), a spicy sentence every third."""
    tokens, sentence, spicy = [], 0, rng.randrange(len(_SPICY))
    while len(tokens) < count:
        if sentence % _SPICY_EVERY == 1:
            text = _SPICY[(spicy + sentence // _SPICY_EVERY) % len(_SPICY)]
        else:
            text = rng.choice(_SENTENCES)
        for match in _TOKEN.finditer(text):
            space = " " if tokens and text[match.start() - 1:match.start()] in (" ", "") else ""
            tokens.append(space + match.group())
        sentence += 1
    return tokens[:count]


def context_ids(ask, prompt_tokens, answer):
    """Stand-in token ids for the prompt and the answer, as generate's `context` carries."""
    ids = [zlib.crc32(f"{i}\x00{ask.text}".encode()) % _VOCAB for i in range(prompt_tokens)]
    return ids + [zlib.crc32(text.encode()) % _VOCAB for text in answer]


class Emitter:
    """Groups response tokens into chunk texts like the runner: held back near a stop string,
    and (for the "merged" fault) several tokens per chunk."""

    def __init__(self, stops, merge):
        self.stops = [stop for stop in stops if stop]
        self.merge = merge
        self.pending = ""
        self.held = 0
        self.groups = 0

    def feed(self, text):
        """Add one token; return (texts to send now, whether a stop string ended the answer)."""
        self.pending += text
        self.held += 1
        for stop in self.stops:
            at = self.pending.find(stop)
            if at >= 0:
                head, self.pending = self.pending[:at], ""
                return ([head] if head else []), True
        if self._may_start_stop() or (self.merge and self.held < _MERGE_SIZES[self.groups % 3]):
            return [], False
        return self.flush(), False

    def flush(self):
        """Release whatever is held back."""
        text, self.pending, self.held = self.pending, "", 0
        self.groups += 1
        return [text] if text else []

    def _may_start_stop(self):
        return any(self.pending.endswith(stop[:i]) for stop in self.stops for i in range(1, len(stop)))


def created_at(ns=None):
    """Go's RFC3339Nano in UTC: up to 9 fractional digits, trailing zeros dropped."""
    seconds, fraction = divmod(time.time_ns() if ns is None else ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    digits = f"{fraction:09d}".rstrip("0")
    return f"{stamp}.{digits}Z" if digits else f"{stamp}Z"


def metrics(total, load, prompt_tokens, prompt_eval, eval_count, eval_time):
    """The Metrics block; durations in seconds become int nanoseconds."""
    return {
        "total_duration": _ns(total),
        "load_duration": _ns(load),
        "prompt_eval_count": prompt_tokens,
        "prompt_eval_duration": _ns(prompt_eval),
        "eval_count": eval_count,
        "eval_duration": _ns(eval_time),
    }


def _ns(seconds):
    return int(seconds * 1e9)


def reply(kind, model, text="", thinking="", *, done=False, reason="", context=None, stats=None):
    """A GenerateResponse or ChatResponse, fields in Go struct order, omitempty applied."""
    obj = {"model": model, "created_at": created_at()}
    if kind == "generate":
        obj["response"] = text
        if thinking:
            obj["thinking"] = thinking
        obj["done"] = done
        if reason:
            obj["done_reason"] = reason
        if context:
            obj["context"] = context
    else:
        message = {"role": "assistant", "content": text}
        if thinking:
            message["thinking"] = thinking
        obj["message"] = message
        if reason:
            obj["done_reason"] = reason
        obj["done"] = done
    obj.update((name, value) for name, value in (stats or {}).items() if value)
    return obj
