"""Answer scoring: exact match (after normalization, or as JSON when both sides are JSON) and
token F1 for free text."""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter

_PUNCTUATION = re.compile(r"[^\w\s]", re.UNICODE)


def normalize(text: str) -> str:
    """Case, width, punctuation and spacing do not change what an answer says."""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(_PUNCTUATION.sub(" ", text).split())


def _as_json(text: str):
    text = text.strip()
    if not text.startswith(("{", "[")):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def exact_match(prediction: str, reference: str) -> bool:
    expected = _as_json(reference)
    if expected is not None:  # structured answers: key order and spacing are irrelevant
        return _as_json(prediction) == expected
    return normalize(prediction) == normalize(reference)


def tokens(text: str) -> list[str]:
    """Words, with each CJK character as its own token (Chinese has no spaces between words)."""
    out = []
    for word in normalize(text).split():
        out.extend(re.findall(r"[\u3400-\u9fff\uf900-\ufaff]|[^\u3400-\u9fff\uf900-\ufaff]+", word))
    return out


def token_f1(prediction: str, reference: str) -> float:
    predicted, expected = tokens(prediction), tokens(reference)
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)
