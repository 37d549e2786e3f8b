"""The measured baseline: the base model, untrained, on the held-out test set, asked zero-shot and
with k training conversations in the prompt (the "better prompt" a user could ship instead of
fine-tuning). Fine-tuning has to beat the better of the two to be worth it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError, Problem


@dataclass
class Baseline:
    test_file: str
    used: int  # test questions answered
    available: int  # test questions in the file
    shots: int
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # "zero-shot" / "k-shot" → metrics
    prompt_tokens: dict[str, float] = field(default_factory=dict)  # mean prompt tokens per request
    answer_tokens: float = 0.0  # mean reference answer tokens: the output a request pays for
    seconds: dict[str, float] = field(default_factory=dict)
    requests_per_second: float | None = None  # zero-shot answers per second here: a server's capacity

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @property
    def best(self) -> tuple[str, dict[str, float]]:
        return max(self.scores.items(), key=lambda item: (item[1]["exact_match"], item[1]["token_f1"]))


def measure_baseline(
    model,
    tokenizer,
    train_file: str | Path,
    test_file: str | Path,
    shots: int = 3,
    limit: int | None = None,
    max_new_tokens: int = 96,
    batch_size: int | None = None,
) -> Baseline:
    from ..data.records import load_chat_jsonl
    from ..data.tokenize import encode_prompt
    from ..eval.compare import split_prompt
    from ..eval.metrics import score_answer
    from ..eval.systems import few_shot_prepare
    from ..models.generate import generate_answers

    conversations = load_chat_jsonl(test_file)
    if not conversations:
        raise DataError(
            f"{test_file} has no test examples",
            [Problem(str(test_file), "is empty", fix="give held-out conversations to measure on")],
        )
    chosen = conversations[:limit] if limit else conversations
    questions, references = zip(*(split_prompt(c.messages) for c in chosen))
    prompts = {"zero-shot": list(questions)}
    if shots > 0:
        # the same per-task draw `buxiban eval` uses, so plan's few-shot number is the one eval reports later
        with_examples = few_shot_prepare([c.messages for c in load_chat_jsonl(train_file)], shots)
        prompts[f"{shots}-shot"] = [with_examples(q) for q in questions]
    result = Baseline(str(test_file), len(chosen), len(conversations), shots)
    for name, batch in prompts.items():
        started = time.perf_counter()
        answers = generate_answers(model, tokenizer, batch, max_new_tokens, batch_size)
        result.seconds[name] = round(time.perf_counter() - started, 2)
        result.scores[name] = mean_scores([score_answer(a, r) for a, r in zip(answers, references)])
        result.prompt_tokens[name] = round(sum(len(encode_prompt(tokenizer, p)) for p in batch) / len(batch), 1)
    result.answer_tokens = round(
        sum(len(tokenizer.encode(r, add_special_tokens=False)) for r in references) / len(references), 1
    )
    result.requests_per_second = round(len(chosen) / max(1e-9, result.seconds["zero-shot"]), 3)
    return result


def mean_scores(per_answer: list[dict[str, Any]]) -> dict[str, float]:
    """Each numeric metric averaged over the answers that have it (field match only exists where the
    reference is a JSON object)."""
    totals: dict[str, list[float]] = {}
    for scores in per_answer:
        for metric, value in scores.items():
            if isinstance(value, (int, float)):
                totals.setdefault(metric, []).append(float(value))
    return {metric: round(sum(values) / len(values), 4) for metric, values in totals.items()}


def target_verdict(baseline: Baseline, target: float | None, metric: str = "exact_match") -> str | None:
    """Whether a better prompt already reaches the user's target, and what that means."""
    if target is None:
        return None
    name, scores = baseline.best
    if scores[metric] >= target:
        return (
            f"{name} already reaches the target {metric} {target:g} ({scores[metric]:.3f} on {baseline.used} test "
            "questions): fine-tuning may not be needed. Ship the prompt first; fine-tune only if the saved prompt "
            "tokens (below) or latency matter, or if a larger test set shows the score does not hold."
        )
    return (
        f"the best prompt ({name}) reaches {metric} {scores[metric]:.3f}, short of the target {target:g}: "
        "fine-tuning is worth trying; compare its eval score with this baseline."
    )
