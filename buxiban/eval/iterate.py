"""The iteration step: after retraining (more data, other settings), which test examples did the new
run fix and which did it break, relative to the old one? Examples are matched by their prompt and
reference, not by position, so a test file that gained or reordered lines still lines up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import RunDirError
from ..runs import MANIFEST, file_sha256, is_run_dir
from .stats import mcnemar_exact
from .systems import FINE_TUNED


def load_eval(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RunDirError(f"cannot read evaluation results {path}: {exc}") from exc


def reusable_eval(run: str | Path, test_file: str | Path | None) -> dict[str, Any] | None:
    """A finished evaluation to compare: RUN itself when it is an eval.json, or RUN/eval/eval.json
    when it was computed on this very test file (same content hash). None: evaluate the run anew."""
    run = Path(run)
    if run.is_file():
        return load_eval(run)
    if not is_run_dir(run):
        raise RunDirError(f"{run} is neither a run directory (no {MANIFEST}) nor an eval.json file")
    saved = run / "eval" / "eval.json"
    if saved.is_file() and test_file is not None:
        data = load_eval(saved)
        if data.get("test_sha256") == file_sha256(test_file) and FINE_TUNED in data.get("summary", {}):
            return data
    return None


def _key(example: dict[str, Any]) -> tuple[str, str]:
    return example["question"], example["reference"]


def compare_evals(
    a: dict[str, Any], b: dict[str, Any], system: str = FINE_TUNED, label_a: str = "A", label_b: str = "B"
) -> dict[str, Any]:
    """Examples both evaluations answered (matched by question and reference): what B fixed (wrong in
    A, exact in B), what it broke (the reverse), the exact-match rates on the shared examples, and the
    exact McNemar p-value of the difference."""
    by_key = {_key(e): e for e in a["examples"]}
    shared = [(by_key[_key(e)], e) for e in b["examples"] if _key(e) in by_key]
    if not shared:
        raise RunDirError(f"{label_a} and {label_b} share no test examples: were they evaluated on the same test file?")

    def item(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        out = {
            "where": new.get("where"),
            "question": new["question"],
            "reference": new["reference"],
            "answer_a": old[system]["answer"],
            "answer_b": new[system]["answer"],
        }
        if new.get("category"):
            out["category"] = new["category"]
        return out

    right_a = [bool(old[system]["exact_match"]) for old, _ in shared]
    right_b = [bool(new[system]["exact_match"]) for _, new in shared]
    test = mcnemar_exact(right_a, right_b)
    return {
        "a": label_a,
        "b": label_b,
        "system": system,
        "shared": len(shared),
        "only_in_a": len(a["examples"]) - len(shared),
        "only_in_b": len(b["examples"]) - len(shared),
        "exact_match_a": round(sum(right_a) / len(shared), 4),
        "exact_match_b": round(sum(right_b) / len(shared), 4),
        "fixed": [item(o, n) for (o, n), ra, rb in zip(shared, right_a, right_b) if rb and not ra],
        "broken": [item(o, n) for (o, n), ra, rb in zip(shared, right_a, right_b) if ra and not rb],
        "p_value": float(f"{test.p_value:.4g}"),
    }


def comparison_markdown(comparison: dict[str, Any]) -> str:
    c = comparison
    lines = [
        f"# {c['b']} against {c['a']}",
        "",
        f"{c['shared']} shared test examples: exact match {c['exact_match_a']:.3f} → {c['exact_match_b']:.3f}; "
        f"{len(c['fixed'])} fixed, {len(c['broken'])} broken (exact McNemar p = {c['p_value']:.4g}).",
        "",
    ]
    for title, items in (
        ("Fixed (wrong before, exact now)", c["fixed"]),
        ("Broken (exact before, wrong now)", c["broken"]),
    ):
        lines += [f"## {title}: {len(items)}", ""]
        lines += [
            f"- `{i['where']}` {i['question']!r}: was {i['answer_a']!r}, now {i['answer_b']!r} (reference {i['reference']!r})"
            for i in items
        ]
        lines.append("")
    return "\n".join(lines)
