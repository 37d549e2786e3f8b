"""The forgetting check: did fine-tuning cost the model what it knew before? Two measures, each taken
on the base weights and on the fine-tuned ones: the share of shipped probes answered correctly
(general knowledge and instruction following, each with a checkable answer) and perplexity on shipped
general prose. Fine-tuning on narrow company data typically keeps the first and raises the second a
little; a large drop means the model was pushed too far, and replay mixing (training on general
examples alongside the company's) is the usual cure."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from ..text import normalize
from .metrics import as_json

PROBE_SYSTEM = "You are a helpful assistant."


@dataclass(frozen=True)
class Probe:
    id: str
    kind: str
    question: str
    check: dict[str, Any]

    def prompt(self) -> list[dict[str, str]]:
        return [{"role": "system", "content": PROBE_SYSTEM}, {"role": "user", "content": self.question}]


def load_probes() -> list[Probe]:
    text = (files("buxiban.eval.probes") / "probes.jsonl").read_text(encoding="utf-8")
    return [Probe(**json.loads(line)) for line in text.splitlines() if line.strip()]


def general_text() -> str:
    return (files("buxiban.eval.probes") / "general_text.txt").read_text(encoding="utf-8")


def _unfenced(answer: str) -> str:
    """Small models like to wrap JSON in a Markdown code fence; the content is what counts."""
    match = re.fullmatch(r"\s*```[a-zA-Z]*\s*(.*?)\s*```\s*", answer, re.DOTALL)
    return match.group(1) if match else answer


def without_echo(answer: str, question: str) -> str:
    """The answer without repetitions of the question: sentences that end in a question mark or
    begin with the question's first three words (cut off at the token limit, they end in neither).
    A base model asked "Is 9 an odd number or an even number?" tends to repeat the question, or a
    variant of it ("Is the North Pole cold or hot?"), and the repeat must not pass for the answer."""
    opening = normalize(question).split()[:3]

    def unless_echo(sentence: re.Match) -> str:
        text = sentence.group(0)
        repeats = len(opening) == 3 and normalize(text).split()[:3] == opening
        return "" if text.rstrip().endswith("?") or repeats else text

    return re.sub(r"[^.!?\n]*[.!?]*", unless_echo, answer).strip()


def _named(said: str, phrase: str) -> re.Match | None:
    """Where the normalized answer names the phrase as whole words."""
    return re.search(rf"\b{re.escape(normalize(phrase))}\b", said)


def _first_named(said: str, options: list[str]) -> str | None:
    """Which of the options the normalized answer names first."""
    found = [(m.start(), o) for o in options if (m := _named(said, o))]
    return min(found)[1] if found else None


def passes(answer: str, check: dict[str, Any], question: str = "") -> bool:
    """Every condition in `check` must hold, on the answer without repetitions of the question:
    any: one of the phrases appears as whole words (after normalization); first: of the listed
    options, the answer names the first one before any other (a choice question: "9 is even, not
    odd" fails); regex: the pattern is found (case-insensitive); exact: equal after normalization;
    json: the answer is exactly this JSON value; upper/lower: every letter is upper/lower case;
    max_words: 1 to N words; lines: exactly N non-empty lines; starts_with: the normalized answer
    begins with the phrase."""
    answer = without_echo(answer, question)
    said = normalize(answer)
    conditions = {
        "any": lambda v: any(_named(said, p) for p in v),
        "first": lambda v: _first_named(said, v) == v[0],
        "regex": lambda v: re.search(v, answer.strip(), re.IGNORECASE) is not None,
        "exact": lambda v: said == normalize(v),
        "json": lambda v: as_json(_unfenced(answer)) == v,
        "upper": lambda v: any(c.isalpha() for c in answer) and all(c.isupper() for c in answer if c.isalpha()) == v,
        "lower": lambda v: any(c.isalpha() for c in answer) and all(c.islower() for c in answer if c.isalpha()) == v,
        "max_words": lambda v: 1 <= len(answer.split()) <= v,
        "lines": lambda v: len([line for line in answer.splitlines() if line.strip()]) == v,
        "starts_with": lambda v: said.startswith(normalize(v)),
    }
    unknown = set(check) - set(conditions)
    if unknown:
        raise ValueError(f"unknown probe check(s) {sorted(unknown)}; known: {sorted(conditions)}")
    return all(conditions[name](value) for name, value in check.items())


def perplexity(model, tokenizer, text: str, window: int = 512) -> float:
    """exp(mean next-token loss) over the text, read in consecutive windows of `window` tokens (each
    window predicts all but its first token, so windows are independent and memory stays flat)."""
    import torch

    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    device = next(model.parameters()).device
    total_loss, total_tokens = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(ids) - 1, window):
            chunk = torch.tensor([ids[start : start + window]], device=device)
            if chunk.shape[1] < 2:
                break
            logits = model(input_ids=chunk).logits.float()
            loss = torch.nn.functional.cross_entropy(logits[0, :-1], chunk[0, 1:], reduction="sum")
            total_loss += loss.item()
            total_tokens += chunk.shape[1] - 1
    return math.exp(total_loss / max(total_tokens, 1))


SMALLEST_MEANINGFUL_DROP = 0.1  # of the probes' share: 11 of 113, the change the set is sized to detect


def nothing_to_lose(base_score: float, max_drop: float | None) -> bool:
    """Whether the base model passes so few probes that the fine-tuned model could not lose a
    meaningful share (nor fail the gate): a base model without chat training (Gemma 3 270M base passes
    none) answers every probe with a continuation of the prompt. Its fine-tuned probes are then not
    asked, which saved about a minute of a 72-question Chinese evaluation; perplexity still is."""
    floor = SMALLEST_MEANINGFUL_DROP if max_drop is None else min(SMALLEST_MEANINGFUL_DROP, max_drop)
    return base_score < floor


@dataclass
class ForgettingResult:
    probe_scores: dict[str, float]  # weights ("base", "fine-tuned") -> share of probes passed
    perplexity: dict[str, float]
    per_probe: list[dict[str, Any]]
    max_drop: float | None = None

    @property
    def probes_skipped(self) -> bool:
        """The fine-tuned model was not asked: the base passed too few probes to lose any (nothing_to_lose)."""
        return "fine-tuned" not in self.probe_scores

    @property
    def drop(self) -> float | None:
        """Probe accuracy lost by fine-tuning, in share of probes (0.1 = ten points)."""
        if self.probes_skipped:
            return None
        return self.probe_scores["base"] - self.probe_scores["fine-tuned"]

    @property
    def perplexity_change(self) -> float:
        return self.perplexity["fine-tuned"] / self.perplexity["base"] - 1

    @property
    def failed(self) -> bool:
        return self.max_drop is not None and self.drop is not None and self.drop > self.max_drop

    def to_dict(self) -> dict[str, Any]:
        return {
            "probe_scores": {k: round(v, 4) for k, v in self.probe_scores.items()},
            "perplexity": {k: round(v, 3) for k, v in self.perplexity.items()},
            "drop": None if self.drop is None else round(self.drop, 4),
            "probes_skipped": self.probes_skipped,
            "perplexity_change": round(self.perplexity_change, 4),
            "max_drop": self.max_drop,
            "failed": self.failed,
            "probes": self.per_probe,
        }


def score_probes(probes: list[Probe], answers: dict[str, list[str]]) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Per weights, the share of probes passed; and one row per probe with both answers."""
    rows = []
    for index, probe in enumerate(probes):
        row: dict[str, Any] = {"id": probe.id, "kind": probe.kind, "question": probe.question}
        for weights, said in answers.items():
            row[weights] = {"answer": said[index], "passed": passes(said[index], probe.check, probe.question)}
        rows.append(row)
    scores = {weights: sum(r[weights]["passed"] for r in rows) / len(rows) for weights in answers}
    return scores, rows
