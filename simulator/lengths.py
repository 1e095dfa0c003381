"""Realistic answer lengths: a per-model lognormal spread, shifted by what the prompt asks for."""

import math
import re
import zlib

from simulator import catalog

SIGMA = math.log(1.6)  # answers to the same kind of prompt vary by a factor of about 1.6 either way

# Median answer tokens of a plain question, per model: small models answer shorter.
_MEDIANS = {"llama3.2:latest": 250, "qwen2.5:0.5b": 60, "deepseek-r1:1.5b": 180}
_OTHER_MEDIANS = (60, 300)  # any other model: a stable value in this range from its name

_TOKENS_PER_WORD = 1.3
_TOKENS_PER_SENTENCE = 25
_TOKENS_PER_ITEM = 20

_NUMBER_WORDS = {
    "a": 1, "an": 1, "a single": 1, "single": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15,
    "twenty": 20, "fifty": 50, "a hundred": 100, "hundred": 100,
}
_COUNT = r"(\d{1,4}|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|fifty|a hundred)"
_ONE = r"(a single|single|an|a)"

# Hints that fix the length outright, whatever the model's habit: first match wins.
_WORDS = re.compile(rf"\b{_COUNT}[- ]words?\b|\b(?:a single|single|in a) word\b")
_YES_NO = re.compile(r"\byes or no\b")
_SENTENCES = re.compile(rf"\b(?:{_COUNT}|{_ONE})(?: short)? sentences?\b")
# Lists: about _TOKENS_PER_ITEM per item, still shifted by brief/detailed.
_LIST = re.compile(
    rf"\b(?:a list of|list|top|name|give me|suggest) {_COUNT}\b"
    rf"|\b{_COUNT} (?:[a-z-]+ ){{0,2}}?(?:ideas|tips|ways|reasons|examples|items|things|steps|points|facts"
    r"|names|questions|suggestions|options|benefits|books|places|titles)\b"
)
# Hints that scale whatever length the answer would have had; each counts once.
_SCALES = (
    (re.compile(r"\bessays?\b|(?<!how )(?<!as )\blong\b|\blengthy\b|\bcomprehensive\b|\bin[- ]depth\b"
                r"|\bthorough(?:ly)?\b"), 3.5),
    (re.compile(r"\bin detail\b|\bdetailed\b|\bstep[- ]by[- ]step\b|\belaborate\b"), 2.0),
    (re.compile(r"\bbrief(?:ly)?\b|\bshort\b|\bconcise(?:ly)?\b|\bsuccinct(?:ly)?\b|\bin a few words\b"
                r"|\btl;?dr\b"), 0.35),
)


def model_median(model):
    """A plain question's median answer length for this model."""
    key = catalog.key(model)
    if key in _MEDIANS:
        return _MEDIANS[key]
    low, high = _OTHER_MEDIANS
    return low + zlib.crc32(key.encode()) % (high - low + 1)


def median(model, text):
    """The median answer length for this prompt: the model's habit shifted by the prompt's hints."""
    text = text.casefold()
    if fixed := _fixed(text):
        return fixed
    listed = _LIST.search(text)
    base = _count(listed) * _TOKENS_PER_ITEM if listed else model_median(model)
    return base * math.prod(scale for pattern, scale in _SCALES if pattern.search(text))


def draw(model, text, rng):
    """One natural answer length (tokens before the EOS): lognormal around the median."""
    return max(1, round(rng.lognormvariate(math.log(median(model, text)), SIGMA)))


def _fixed(text):
    """Tokens for "one word", "yes or no" and "in N sentences" (the word and a full stop), else None."""
    if words := _WORDS.search(text):
        return 1 + _count(words) * _TOKENS_PER_WORD
    if _YES_NO.search(text):
        return 2
    if sentences := _SENTENCES.search(text):
        return _count(sentences) * _TOKENS_PER_SENTENCE
    return None


def _count(match):
    """The number a hint names, from digits or words; at least 1."""
    number = next((group for group in match.groups() if group), "one")
    return max(1, int(number) if number.isdigit() else _NUMBER_WORDS[number])
