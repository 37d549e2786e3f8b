"""From answers to numbers: per-example scores, per-system means with bootstrap intervals, and the
paired test of the fine-tuned system against every other. Pure functions on answers, so the
statistics are tested without any model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .metrics import score_answer
from .refusal import is_refusal
from .stats import RESAMPLES, interval_of, mcnemar_exact

# metrics averaged over every example; field_match only over examples whose reference is a JSON object,
# traditional_script only over those whose reference is written in Traditional Chinese
TEXT_METRICS = ("exact_match", "token_f1", "rouge_l", "chrf")
BINARY_METRICS = ("exact_match", "traditional_script", "false_refusal_rate")  # 0/1 per example: Wilson intervals


def example_rows(tests: Sequence[dict[str, Any]], answers: dict[str, list[str]]) -> list[dict[str, Any]]:
    """`tests`: one dict per test example with index, where, question, reference (and category);
    `answers`: system name -> answers in test order. One row per example with every system's scores."""
    rows = []
    for position, test in enumerate(tests):
        row = dict(test)
        for system, said in answers.items():
            row[system] = {
                "answer": said[position],
                **score_answer(said[position], test["reference"]),
                "refusal": is_refusal(said[position]),
            }
        rows.append(row)
    return rows


def metric_values(rows: Sequence[dict[str, Any]], system: str, metric: str) -> list[float]:
    if metric == "false_refusal_rate":
        return [float(r[system]["refusal"]) for r in rows]
    if metric == "judge":
        return [r[system]["judge"]["value"] for r in rows if r[system].get("judge", {}).get("value") is not None]
    return [float(r[system][metric]) for r in rows if metric in r[system]]


def summarize(
    rows: Sequence[dict[str, Any]], systems: Sequence[str], resamples: int = RESAMPLES, seed: int = 0
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, dict[str, float]]]]:
    """Per system: the mean of each metric (plus n) and its interval: Wilson for 0/1 metrics, the
    bootstrap otherwise, with the same seed for every system and metric, so two systems are resampled
    on the same example draws."""
    summary: dict[str, dict[str, Any]] = {}
    intervals: dict[str, dict[str, dict[str, float]]] = {}
    metrics = TEXT_METRICS + ("field_match", "traditional_script", "false_refusal_rate", "judge")
    for system in systems:
        summary[system], intervals[system] = {}, {}
        for metric in metrics:
            values = metric_values(rows, system, metric)
            if not values:
                continue
            interval = interval_of(values, metric in BINARY_METRICS, resamples=resamples, seed=seed)
            summary[system][metric] = round(interval.mean, 4)
            intervals[system][metric] = interval.to_dict()
        summary[system]["n"] = len(rows)
    return summary, intervals


def paired_tests(rows: Sequence[dict[str, Any]], reference_system: str, others: Sequence[str]) -> list[dict[str, Any]]:
    """Exact McNemar on exact match: `reference_system` (the fine-tuned model) against each other."""
    out = []
    mine = [bool(r[reference_system]["exact_match"]) for r in rows]
    for other in others:
        if other == reference_system:
            continue
        test = mcnemar_exact(mine, [bool(r[other]["exact_match"]) for r in rows])
        out.append({"a": reference_system, "b": other, "metric": "exact_match", **test.to_dict()})
    return out


def refusal_summary(
    answers: dict[str, list[str]], resamples: int = RESAMPLES, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """Per system: the share of out-of-scope questions it declined (higher is better), with its interval."""
    out = {}
    for system, said in answers.items():
        flags = [float(is_refusal(a)) for a in said]
        interval = interval_of(flags, True)
        out[system] = {"refusal_rate": round(interval.mean, 4), "interval": interval.to_dict(), "n": len(flags)}
    return out


def cost_summary(prompt_tokens: Sequence[int], new_tokens: Sequence[int], seconds: float) -> dict[str, float]:
    n = max(len(prompt_tokens), 1)
    return {
        "prompt_tokens_per_request": round(sum(prompt_tokens) / n, 1),
        "new_tokens_per_request": round(sum(new_tokens) / n, 1),
        "seconds": round(seconds, 2),
        "seconds_per_request_batched": round(seconds / n, 3),
    }


def savings(costs: dict[str, dict[str, float]], fine_tuned: str, instead: str) -> dict[str, float] | None:
    """What the fine-tuned model with the short prompt saves against `instead` (the base model with
    the few-shot prompt it would otherwise need), per request."""
    if fine_tuned not in costs or instead not in costs:
        return None
    mine, theirs = costs[fine_tuned], costs[instead]
    out = {
        "against": instead,
        "prompt_tokens": mine["prompt_tokens_per_request"],
        "prompt_tokens_instead": theirs["prompt_tokens_per_request"],
        "prompt_tokens_saved_share": round(
            1 - mine["prompt_tokens_per_request"] / max(theirs["prompt_tokens_per_request"], 1e-9), 4
        ),
    }
    if "latency_s" in mine and "latency_s" in theirs:
        out.update(
            latency_s=mine["latency_s"],
            latency_s_instead=theirs["latency_s"],
            speedup=round(theirs["latency_s"] / max(mine["latency_s"], 1e-9), 2),
        )
    return out
