"""Eval inputs besides the test set: the training file few-shot prompts draw from, and the
questions the assistant should decline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import DataError, Problem


def resolve_train_file(run_dir: str | Path) -> str | None:
    """The run's own training file, as its config names it (relative to where training ran, which is
    usually where eval runs too), or None when it is no longer there."""
    import yaml

    config_path = Path(run_dir) / "config.yaml"
    if not config_path.is_file():
        return None
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    train = (config.get("data") or {}).get("train")
    return train if train and Path(train).is_file() else None


def load_refusals(path: str | Path, system_prompt: str | None) -> list[list[dict[str, Any]]]:
    """Prompts the assistant should decline. A `.jsonl` file holds chat records (`{"messages": [...]}`;
    the prompt runs to the last user message, and any answer after it is ignored) or `{"question": ...}`
    objects; any other file holds one question per line. Bare questions get the run's default system
    prompt, the one the model was trained under."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"refusal questions not found: {path}", [Problem(str(path), "does not exist", fix="pass --refusals FILE")]
        )
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    lines = path.read_text(encoding="utf-8").splitlines()
    prompts, problems = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if path.suffix != ".jsonl":
            prompts.append(system + [{"role": "user", "content": line.strip()}])
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(
                Problem(where, f"is not valid JSON ({exc.msg})", fix='write {"question": "..."} or {"messages": [...]}')
            )
            continue
        if isinstance(record, dict) and isinstance(record.get("question"), str) and record["question"].strip():
            prompts.append(system + [{"role": "user", "content": record["question"].strip()}])
            continue
        messages = record.get("messages") if isinstance(record, dict) else None
        users = [i for i, m in enumerate(messages or []) if isinstance(m, dict) and m.get("role") == "user"]
        if not users or not all(
            isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages[: users[-1] + 1]
        ):
            problems.append(
                Problem(
                    where,
                    "has no user question",
                    fix='write {"question": "..."} or {"messages": [..., {"role": "user", ...}]}',
                )
            )
            continue
        prompts.append([{"role": m["role"], "content": m["content"]} for m in messages[: users[-1] + 1]])
    if problems:
        raise DataError(f"{path}: {len(problems)} problem(s) in the refusal questions", problems)
    if not prompts:
        raise DataError(f"{path} has no questions", [Problem(str(path), "is empty", fix="one question per line")])
    return prompts
