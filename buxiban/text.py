"""Text normalization shared by every stage that compares texts: deduplication of the training data
(data/dedup.py) and answer scoring (eval/metrics.py) must agree on when two texts say the same thing."""

from __future__ import annotations

import re
import unicodedata

# CJK ideographs (Extension A, the unified block and the compatibility block), the body of a regex
# character class: Chinese has no spaces between words, so callers split these one by one.
CJK_CHARACTERS = r"\u3400-\u9fff\uf900-\ufaff"

_PUNCTUATION = re.compile(r"[^\w\s]", re.UNICODE)


def normalize(text: str) -> str:
    """Case, width, punctuation and spacing do not change what an answer says."""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(_PUNCTUATION.sub(" ", text).split())
