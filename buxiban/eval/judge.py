"""LLM-as-judge: a stronger model behind an OpenAI-compatible endpoint grades each answer against the
reference with a fixed rubric. Optional (`--judge URL`), because it sends the test questions and
answers to that endpoint; point it at a local server to keep the data on the machine."""

from __future__ import annotations

import json
import re
from typing import Any

from .endpoint import Endpoint, chat_completion

RUBRIC = """You grade a customer assistant's answer against the reference answer written by the company.
Score from 1 to 5:
5 = says everything the reference says, with the same facts and figures (wording may differ); in the requested format
4 = correct and complete for the customer, small omissions or extra words that do no harm
3 = partly correct: some required facts or fields are missing or vague
2 = mostly wrong, or a wrong figure, team or priority
1 = wrong, off-topic, empty, or a refusal where the reference answers
Reply with JSON only: {"score": <1-5>, "reason": "<one short sentence>"}"""


def judge_prompt(question: str, reference: str, answer: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": RUBRIC},
        {
            "role": "user",
            "content": f"Question:\n{question}\n\nReference answer:\n{reference}\n\nAnswer to grade:\n{answer}",
        },
    ]


def parse_verdict(text: str) -> tuple[int | None, str]:
    """The score (1–5) and reason from the judge's reply: the JSON object if it wrote one, else the
    first digit 1–5 it wrote; None when it gave no score (counted as missing, not as a fail)."""
    match = re.search(r"\{.*\}", text, re.DOTALL)
    if match:
        try:
            verdict = json.loads(match.group(0))
            score = int(verdict.get("score"))
            if 1 <= score <= 5:
                return score, str(verdict.get("reason", ""))
        except (ValueError, TypeError, AttributeError):
            pass
    digit = re.search(r"\b([1-5])\b", text)
    return (int(digit.group(1)), text.strip()[:200]) if digit else (None, text.strip()[:200])


def judge_answers(judge: Endpoint, rows: list[dict[str, Any]], system: str) -> None:
    """Adds row[system]["judge"] = {"score": 1–5 or None, "reason": …, "value": (score − 1) / 4} in place."""
    for row in rows:
        reply, _ = chat_completion(judge, judge_prompt(row["question"], row["reference"], row[system]["answer"]), 120)
        score, reason = parse_verdict(reply)
        row[system]["judge"] = {"score": score, "reason": reason, "value": None if score is None else (score - 1) / 4}
