"""The set the hosted and the local model are compared on, chosen so that the comparison is fair
or says why it cannot be: the job's validation file when it has one (neither model trained on it),
else a `data split` of the training file kept out of the local run (the hosted model trained on it,
so its score is optimistic). DPO pairs become conversations whose reference is the preferred answer,
because eval scores an answer against one reference."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..data.preference import load_preference_jsonl
from ..data.split import split_file
from .job import SourceJob

HELD_OUT_SHARE = 0.1  # of the training file, when the job had no validation file


def choose_held_out(job: SourceJob, data: Path, files: dict, log: Callable[[str], None]) -> tuple[dict | None, Path]:
    """The test set for comparing the hosted and the local model, and the file the local run trains on."""
    train = data / "train.jsonl"
    if files["validation"] is not None and job.method != "dpo":
        return {
            "path": data / "validation.jsonl",
            "from": "validation_file",
            "examples": files["validation"]["examples"],
            "note": "the job's validation file: neither model trained on it",
        }, train
    if files["validation"] is not None:
        return _dpo_references(data), train
    if job.method == "dpo":
        return None, train
    counts = split_file(train, data / "split", (1 - HELD_OUT_SHARE, 0.0, HELD_OUT_SHARE))
    if not counts["test"]:
        shutil.rmtree(data / "split")
        log(f"no held-out set: {counts['train']} examples are too few to keep any out; pass eval --test FILE")
        return None, train
    log(f"held out {counts['test']} of {counts['train'] + counts['test']} training examples (`data split`)")
    return {
        "path": data / "split" / "test.jsonl",
        "from": "split",
        "examples": counts["test"],
        "note": "the job had no validation file, so `data split` kept these out of the local training; the hosted "
        "model trained on them, so its score here is optimistic: a local model that matches it on unseen "
        "examples is at least as good",
    }, data / "split" / "train.jsonl"


def _dpo_references(data: Path) -> dict[str, Any]:
    """DPO validation pairs as chat conversations whose reference is the preferred answer: eval
    scores answers against one reference."""
    pairs = load_preference_jsonl(data / "validation.jsonl")
    lines = [
        json.dumps({"messages": [*p.prompt, {"role": "assistant", "content": p.chosen}]}, ensure_ascii=False)
        for p in pairs
    ]
    (data / "test.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {
        "path": data / "test.jsonl",
        "from": "validation_file",
        "examples": len(lines),
        "note": "the job's validation pairs, each with its preferred answer as the reference",
    }
