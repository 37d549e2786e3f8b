"""Text normalization shared by every stage that compares texts: deduplication of the training data
(data/dedup.py), answer scoring (eval/metrics.py) and DPO's guard of the SFT answers (train/dpo_guard.py)
must agree on when two texts say the same thing."""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

# CJK ideographs (Extension A, the unified block and the compatibility block), the body of a regex
# character class: Chinese has no spaces between words, so callers split these one by one.
CJK_CHARACTERS = r"\u3400-\u9fff\uf900-\ufaff"

_PUNCTUATION = re.compile(r"[^\w\s]", re.UNICODE)
_THOUSANDS_SEPARATOR = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_SPACE_BESIDE_CJK = re.compile(rf" (?=[{CJK_CHARACTERS}])|(?<=[{CJK_CHARACTERS}]) ")


def normalize(text: str) -> str:
    """Case, width, punctuation and spacing do not change what an answer says.

    In order: NFKC folds full-width letters, digits, punctuation and spaces to their half-width forms
    (３，８００ → 3,800); thousands separators go (3,800 → 3800, so "1,190" and "1190" agree);
    punctuation becomes a space; runs of spaces become one; and a space beside a CJK character goes,
    because Chinese is written without spaces and house styles differ on spacing around numbers and
    Latin words: 新台幣 3,800 元, 新台幣3,800元 and 新台幣３，８００元 all read 新台幣3800元.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = _PUNCTUATION.sub(" ", _THOUSANDS_SEPARATOR.sub("", text))
    return _SPACE_BESIDE_CJK.sub("", " ".join(text.split()))


def as_json(text: str) -> Any:
    """The parsed value when the text is a JSON object or array, else None."""
    text = text.strip()
    if not text.startswith(("{", "[")):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def exact_match(prediction: str, reference: str) -> bool:
    expected = as_json(reference)
    if expected is not None:  # structured answers: key order and spacing are irrelevant
        return as_json(prediction) == expected
    return normalize(prediction) == normalize(reference)
