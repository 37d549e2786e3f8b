"""Error analysis: group a system's failures (by metadata category, prompt length and error kind)
and say what data to add next. This is the "find where it is still wrong, add data, retrain" step."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from .metrics import as_json, exact_match, token_f1, tokens
from .refusal import is_refusal

LENGTH_BUCKETS = ((64, "up to 64"), (128, "65-128"), (256, "129-256"), (None, "over 256"))  # prompt tokens
_NUMBER = re.compile(r"\d(?:[\d,.:]*\d)?")


def figures(text: str) -> set[str]:
    """Numbers as written (1,190 and 1190 are the same figure; 08:00 keeps its colon)."""
    return {n.replace(",", "") for n in _NUMBER.findall(text)}


def error_kind(answer: str, reference: str) -> str | None:
    """None for a correct answer, else the first kind that applies, in this order: empty;
    for JSON-object references: invalid JSON (not a JSON object), wrong field (other keys), wrong
    value; for text: refused, too long (over twice the reference's tokens plus 5), wrong figure (a
    number of the reference is missing), different wording (token F1 at least 0.8), wrong answer."""
    if exact_match(answer, reference):
        return None
    if not answer.strip():
        return "empty"
    expected = as_json(reference)
    if isinstance(expected, dict):
        said = as_json(answer)
        if not isinstance(said, dict):
            return "invalid JSON"
        return "wrong field" if set(said) != set(expected) else "wrong value"
    if is_refusal(answer) and not is_refusal(reference):
        return "refused"
    if len(tokens(answer)) > 2 * len(tokens(reference)) + 5:
        return "too long"
    if figures(reference) - figures(answer):
        return "wrong figure"
    return "different wording" if token_f1(answer, reference) >= 0.8 else "wrong answer"


def length_bucket(prompt_tokens: int) -> str:
    return next(name for limit, name in LENGTH_BUCKETS if limit is None or prompt_tokens <= limit)


def _groups(rows: Sequence[dict[str, Any]], key, system: str) -> list[dict[str, Any]]:
    totals, failed = Counter(), Counter()
    for row in rows:
        group = key(row)
        totals[group] += 1
        failed[group] += not row[system]["exact_match"]
    return sorted(
        ({"group": g, "n": totals[g], "failed": failed[g], "rate": round(failed[g] / totals[g], 4)} for g in totals),
        key=lambda item: (-item["failed"], str(item["group"])),
    )


def wrong_values(rows: Sequence[dict[str, Any]], system: str) -> Counter:
    """For JSON answers with the right keys: 'field: expected -> said' and how often."""
    confusions: Counter = Counter()
    for row in rows:
        if row[system].get("error_kind") != "wrong value":
            continue
        expected, said = as_json(row["reference"]), as_json(row[system]["answer"])
        for key, value in expected.items():
            if said.get(key) != value:
                confusions[f"{key}: {value} -> {said.get(key)}"] += 1
    return confusions


def analyze(rows: Sequence[dict[str, Any]], system: str) -> dict[str, Any]:
    """Marks each row's error kind for `system` and returns the groups and the advice."""
    for row in rows:
        row[system]["error_kind"] = error_kind(row[system]["answer"], row["reference"])
    failures = [r for r in rows if not r[system]["exact_match"]]
    result: dict[str, Any] = {
        "system": system,
        "n": len(rows),
        "failed": len(failures),
        "by_kind": dict(Counter(r[system]["error_kind"] for r in failures).most_common()),
    }
    if any(r.get("category") for r in rows):
        result["by_category"] = _groups(rows, lambda r: r.get("category") or "(none)", system)
    if all(system in r.get("prompt_tokens", {}) for r in rows):
        result["by_length"] = _groups(rows, lambda r: length_bucket(r["prompt_tokens"][system]), system)
    result["wrong_values"] = dict(wrong_values(rows, system).most_common(10))
    result["advice"] = advice(result, failures, system)
    return result


def advice(result: dict[str, Any], failures: Sequence[dict[str, Any]], system: str) -> list[str]:
    """What data to add, from the largest failure groups. The counts are a rule of thumb (about five new
    examples per failure, in phrasings unlike the test's), not a guarantee."""
    if not failures:
        return ["Every test answer is exact. Add harder or more varied test examples before adding training data."]
    out = []
    overall = result["failed"] / result["n"]
    for group in result.get("by_category", [])[:3]:
        if group["failed"] and group["rate"] >= overall:
            out.append(
                f"Category '{group['group']}' fails {group['failed']} of {group['n']} ({group['rate']:.0%}): "
                f"add about {5 * group['failed']} training examples of this category, in new phrasings."
            )
    worst_length = max(result.get("by_length", []), key=lambda g: g["rate"], default=None)
    if worst_length and worst_length["failed"] >= 2 and worst_length["rate"] >= 2 * overall:
        out.append(
            f"Prompts of {worst_length['group']} tokens fail most ({worst_length['rate']:.0%}): "
            "add training examples with prompts that long."
        )
    kinds = result["by_kind"]
    examples = {kind: [r for r in failures if r[system]["error_kind"] == kind] for kind in kinds}

    def questions(kind: str) -> str:
        return "; ".join(repr(r["question"][:60]) for r in examples.get(kind, [])[:3])

    lines = {
        "invalid JSON": "the answer is not a JSON object; add examples whose whole answer is the bare JSON object "
        "(no prose, no code fence) and check the task's training answers are valid JSON",
        "wrong field": "the answer uses other keys than the reference; make every training answer of the task use exactly the same keys",
        "wrong value": "a field has the wrong value ("
        + ", ".join(f"{k} ×{v}" for k, v in list(result["wrong_values"].items())[:3])
        + "); add examples whose correct value is the expected one, especially ones that look like the wrong one",
        "refused": "an in-scope question was declined (e.g. "
        + questions("refused")
        + "); add examples that answer such questions",
        "too long": "the answer runs far past the reference; add examples in the house length and check that training "
        "answers end with the end-of-turn token",
        "wrong figure": "a figure of the reference is wrong or missing (e.g. "
        + questions("wrong figure")
        + "); add more phrasings of these questions with their figures",
        "different wording": "close (token F1 ≥ 0.8) but worded differently; add examples in the exact house wording, "
        "or judge this task by token F1, chrF or the LLM judge",
        "wrong answer": "the answer says something else (e.g. "
        + questions("wrong answer")
        + "); add examples covering these questions",
        "empty": "nothing was said; check the chat template's end-of-turn token and that no training answer is empty",
    }
    out += [f"{kind} ({count} of {len(failures)} failures): {lines[kind]}." for kind, count in kinds.items()]
    return out
