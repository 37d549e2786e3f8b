"""Base vs fine-tuned on held-out conversations: the same prompts, greedy answers, scored."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.records import load_chat_jsonl
from ..errors import DataError, Problem
from ..train.rundir import load_trained
from .generate import generate_answers
from .metrics import exact_match, token_f1

SYSTEMS = ("base", "fine-tuned")


@dataclass
class EvalResult:
    run_dir: str
    test_file: str
    base_model: str
    examples: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"run_dir": self.run_dir, "test_file": self.test_file, "base_model": self.base_model,
                "summary": self.summary, "seconds": self.seconds, "examples": self.examples}


def split_prompt(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """Everything before the last assistant message is the prompt; that message is the reference."""
    return messages[:-1], messages[-1]["content"]


def evaluate_run(run_dir: str | Path, test_file: str | Path, max_new_tokens: int = 96, limit: int | None = None,
                 batch_size: int = 16) -> EvalResult:
    conversations = load_chat_jsonl(test_file)[:limit]
    if not conversations:
        raise DataError(f"{test_file} has no test examples", [Problem(str(test_file), "is empty")])
    model, tokenizer, manifest = load_trained(run_dir)
    prompts, references = zip(*(split_prompt(c.messages) for c in conversations))
    result = EvalResult(str(run_dir), str(test_file), manifest["base_model"]["name"])
    answers = {}
    for system in SYSTEMS:
        started = time.perf_counter()
        if system == "base" and hasattr(model, "disable_adapter"):  # the adapter switched off: no second copy
            with model.disable_adapter():
                answers[system] = generate_answers(model, tokenizer, prompts, max_new_tokens, batch_size)
        elif system == "base":  # full or freeze runs changed the weights themselves: load the base again
            from ..models.load import load

            base, base_tokenizer, _ = load(manifest["base_model"]["spec"], manifest.get("trust_remote_code", False))
            answers[system] = generate_answers(base, base_tokenizer, prompts, max_new_tokens, batch_size)
            del base
        else:
            answers[system] = generate_answers(model, tokenizer, prompts, max_new_tokens, batch_size)
        result.seconds[system] = round(time.perf_counter() - started, 2)
    for index, (conversation, prompt, reference) in enumerate(zip(conversations, prompts, references)):
        row: dict[str, Any] = {"index": index, "where": conversation.where, "question": prompt[-1]["content"],
                               "reference": reference}
        for system in SYSTEMS:
            answer = answers[system][index]
            row[system] = {"answer": answer, "exact_match": exact_match(answer, reference),
                           "token_f1": round(token_f1(answer, reference), 4)}
        result.examples.append(row)
    for system in SYSTEMS:
        rows = [r[system] for r in result.examples]
        result.summary[system] = {
            "exact_match": round(sum(r["exact_match"] for r in rows) / len(rows), 4),
            "token_f1": round(sum(r["token_f1"] for r in rows) / len(rows), 4),
            "n": len(rows),
        }
    return result
