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


def normalize(text: str) -> str:
    """Case, width, punctuation and spacing do not change what an answer says."""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(_PUNCTUATION.sub(" ", text).split())


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
