"""Answer scoring. Exact match (after normalization, or as data when the reference is JSON);
field-level match for JSON answers; token F1, ROUGE-L and chrF for free text. Every function takes
one prediction and one reference and returns a number in [0, 1] (or a bool), so that a system's score
is a plain mean and bootstrap intervals can resample per-example values."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from ..script import is_traditional_text
from ..text import CJK_CHARACTERS, as_json, exact_match, normalize

_CJK_OR_RUN = re.compile(rf"[{CJK_CHARACTERS}]|[^{CJK_CHARACTERS}]+")


def field_match(prediction: str, reference: str) -> dict[str, bool] | None:
    """For a JSON-object reference: which of its top-level fields the prediction got right (same
    key, equal value as data). None when the reference is not a JSON object. A prediction that is
    not a JSON object matches no field."""
    expected = as_json(reference)
    if not isinstance(expected, dict) or not expected:
        return None
    said = as_json(prediction)
    said = said if isinstance(said, dict) else {}
    return {key: key in said and said[key] == value for key, value in expected.items()}


def tokens(text: str) -> list[str]:
    """Words, with each CJK character as its own token (Chinese has no spaces between words)."""
    out = []
    for word in normalize(text).split():
        out.extend(_CJK_OR_RUN.findall(word))
    return out


def _f_score(precision: float, recall: float, beta: float = 1.0) -> float:
    if precision + recall == 0:
        return 0.0
    factor = beta * beta
    return (1 + factor) * precision * recall / (factor * precision + recall)


def token_f1(prediction: str, reference: str) -> float:
    predicted, expected = tokens(prediction), tokens(reference)
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    return _f_score(common / len(predicted), common / len(expected))


def longest_common_subsequence(a: list[str], b: list[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1: the longest common subsequence of tokens (the same CJK-aware tokens as token F1),
    as a share of the prediction (precision) and of the reference (recall)."""
    predicted, expected = tokens(prediction), tokens(reference)
    if not predicted or not expected:
        return float(predicted == expected)
    common = longest_common_subsequence(predicted, expected)
    return _f_score(common / len(predicted), common / len(expected))


def _char_ngrams(text: str, n: int) -> Counter:
    return Counter(text[i : i + n] for i in range(len(text) - n + 1))


def chrf(prediction: str, reference: str, order: int = 6, beta: float = 2.0) -> float:
    """chrF as sacrebleu computes it for one sentence with its defaults (character n-grams up to 6,
    β = 2, whitespace removed, case kept), on a 0–1 scale instead of 0–100: precision and recall
    are averaged over the n-gram orders both sides have, then combined into an F-β score, so recall
    weighs β² = 4 times as much as precision."""
    hypothesis, target = "".join(prediction.split()), "".join(reference.split())
    if not hypothesis and not target:
        return 1.0
    precision_sum = recall_sum = 0.0
    effective_orders = 0
    for n in range(1, order + 1):
        said, wanted = _char_ngrams(hypothesis, n), _char_ngrams(target, n)
        if not said or not wanted:
            continue  # sacrebleu adds a negligible epsilon here; the order does not count
        matched = sum((said & wanted).values())
        precision_sum += matched / sum(said.values())
        recall_sum += matched / sum(wanted.values())
        effective_orders += 1
    if effective_orders == 0:
        return 0.0
    return _f_score(precision_sum / effective_orders, recall_sum / effective_orders, beta)


def score_answer(prediction: str, reference: str) -> dict[str, Any]:
    """Every automatic metric for one answer, rounded for the report."""
    scores: dict[str, Any] = {
        "exact_match": exact_match(prediction, reference),
        "token_f1": round(token_f1(prediction, reference), 4),
        "rouge_l": round(rouge_l(prediction, reference), 4),
        "chrf": round(chrf(prediction, reference), 4),
    }
    if is_traditional_text(reference):  # a Taiwanese brand voice: Simplified characters are a miss
        scores["traditional_script"] = is_traditional_text(prediction)
    fields = field_match(prediction, reference)
    if fields is not None:
        scores["fields"] = fields
        scores["field_match"] = round(sum(fields.values()) / len(fields), 4)
    return scores
