"""Evaluation results as the dashboard shows them: eval.json (what `buxiban eval` writes) read back into
an EvalResult, so the run and compare pages say exactly what the Markdown and HTML reports say."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ...errors import ServeError
from ...eval.compare import EvalResult
from ...eval.iterate import compare_evals
from ...eval.report import diff_ops, forgetting_lines, refusal_lines, savings_lines, score_columns, significance_lines
from .found_runs import CACHE_LOCK, FoundRun, read_eval, remember

FIELDS = {f.name for f in dataclasses.fields(EvalResult)}


def as_result(data: dict[str, Any]) -> EvalResult:
    return EvalResult(**{key: value for key, value in data.items() if key in FIELDS})


_views: dict[Path, tuple[dict, dict]] = {}  # run directory -> (the parsed eval.json, its view)


def eval_view(run_dir: Path) -> dict[str, Any] | None:
    """The run's latest evaluation as the run page shows it, diffed once per version of eval.json
    (read_eval hands out the same object until the file changes)."""
    data = read_eval(run_dir)
    if data is None:
        return None
    with CACHE_LOCK:
        cached = _views.get(run_dir)
    if cached is not None and cached[0] is data:
        return cached[1]
    shown = view(data)
    remember(_views, run_dir, (data, shown))
    return shown


def view(data: dict[str, Any]) -> dict[str, Any]:
    """Scores with intervals, the report's sentences, and every example with a word diff of each
    answer that missed the reference."""
    result = as_result(data)
    test_name = Path(result.test_file).name
    examples = []
    for row in result.examples:
        answers = {}
        for system in result.system_names:
            said = row[system]
            answers[system] = {
                "answer": said["answer"],
                "exact_match": bool(said["exact_match"]),
                "error_kind": said.get("error_kind"),
                "diff": None if said["exact_match"] else diff_ops(said["answer"], row["reference"]),
            }
        examples.append(
            {
                "index": row["index"],
                "where": str(row.get("where", "")).replace(result.test_file, test_name),
                "category": row.get("category"),
                "question": row["question"],
                "reference": row["reference"],
                "answers": answers,
            }
        )
    return {
        "test_file": test_name,
        "test_sha256": result.test_sha256,
        "base_model": result.base_model,
        "systems": result.systems or [{"name": name} for name in result.system_names],
        "columns": [{"key": key, "title": title} for key, title in score_columns(result)],
        "summary": result.summary,
        "intervals": result.intervals,
        "seconds": result.seconds,
        "lines": significance_lines(result) + savings_lines(result) + refusal_lines(result) + forgetting_lines(result),
        "advice": (result.errors or {}).get("advice", []),
        "examples": examples,
    }


def compare_runs(runs: list[FoundRun]) -> dict[str, Any]:
    """Each run's evaluation (every system, with intervals), and each later run against the first:
    the examples it fixed and broke, with the exact McNemar p-value, where both share a test file."""
    evaluated = []
    for run in runs:
        data = read_eval(run.run_dir)
        if data is None:
            raise ServeError(f"{run.name} has no evaluation yet; evaluate it on its run page first", "id")
        evaluated.append((run, data))
    entries = [
        {"id": run.id, "name": run.name, **{k: v for k, v in view(data).items() if k != "examples"}}
        for run, data in evaluated
    ]
    pairs = []
    (first, first_data), rest = evaluated[0], evaluated[1:]
    for run, data in rest:
        if data.get("test_sha256") != first_data.get("test_sha256"):
            pairs.append(
                {
                    "a": first.name,
                    "b": run.name,
                    "error": "evaluated on different test files "
                    f"({Path(first_data['test_file']).name} and {Path(data['test_file']).name}): their scores "
                    "are not comparable; evaluate both on the same file",
                }
            )
            continue
        pairs.append(compare_evals(first_data, data, label_a=first.name, label_b=run.name))
    return {"runs": entries, "pairs": pairs}
