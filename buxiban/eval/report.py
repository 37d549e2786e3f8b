"""Write an evaluation as JSON (for machines) and Markdown (for people), with per-example diffs."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

from .compare import SYSTEMS, EvalResult


def word_diff(answer: str, reference: str) -> str:
    """The answer against the reference, word by word: [-missing-] {+extra+}."""
    said, wanted = answer.split(), reference.split()
    parts = []
    for op, a0, a1, b0, b1 in difflib.SequenceMatcher(a=wanted, b=said, autojunk=False).get_opcodes():
        if op == "equal":
            parts.append(" ".join(wanted[a0:a1]))
        if op in ("delete", "replace"):
            parts.append("[-" + " ".join(wanted[a0:a1]) + "-]")
        if op in ("insert", "replace"):
            parts.append("{+" + " ".join(said[b0:b1]) + "+}")
    return " ".join(parts)


def summary_table(result: EvalResult) -> str:
    lines = ["| system | exact match | token F1 | examples | generation time |", "|---|---:|---:|---:|---:|"]
    for system in SYSTEMS:
        s = result.summary[system]
        lines.append(f"| {system} | {s['exact_match']:.3f} | {s['token_f1']:.3f} | {s['n']} | {result.seconds[system]:.1f} s |")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_report(result: EvalResult) -> str:
    fixed = [r for r in result.examples if r["fine-tuned"]["exact_match"] and not r["base"]["exact_match"]]
    broke = [r for r in result.examples if r["base"]["exact_match"] and not r["fine-tuned"]["exact_match"]]
    still_wrong = [r for r in result.examples if not r["fine-tuned"]["exact_match"]]
    out = [f"# Evaluation of {result.run_dir}", "",
           f"Base model: {result.base_model}. Test set: `{result.test_file}` ({len(result.examples)} conversations, "
           "never trained on). Greedy decoding.", "", summary_table(result), "",
           f"Fine-tuning fixed {len(fixed)} answers and broke {len(broke)}; {len(still_wrong)} are still not exact.", ""]
    if still_wrong:
        out += ["## Still wrong after fine-tuning", "", "`[-word-]` is in the reference but missing; `{+word+}` was said instead.", ""]
        out += [f"- `{r['where']}` {_cell(r['question'])}  \n  {_cell(word_diff(r['fine-tuned']['answer'], r['reference']))}"
                for r in still_wrong]
        out.append("")
    if broke:
        out += ["## Right before, wrong after", ""]
        out += [f"- `{r['where']}` {_cell(r['question'])}: base said {_cell(r['base']['answer'])!r}" for r in broke]
        out.append("")
    out += ["## Every example", "", "| # | question | reference | base | fine-tuned |", "|---:|---|---|---|---|"]
    for r in result.examples:
        marks = {s: ("✓ " if r[s]["exact_match"] else "✗ ") + _cell(r[s]["answer"]) for s in SYSTEMS}
        out.append(f"| {r['index']} | {_cell(r['question'])} | {_cell(r['reference'])} | {marks['base']} | {marks['fine-tuned']} |")
    return "\n".join(out) + "\n"


def write_reports(result: EvalResult, out_dir: str | Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "eval.json", out_dir / "eval.md"
    json_path.write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
    md_path.write_text(markdown_report(result), encoding="utf-8")
    return json_path, md_path
