"""Write an evaluation as JSON (for machines), Markdown and HTML (for people), and the terminal summary."""

from __future__ import annotations

import difflib
from pathlib import Path

from .compare import EvalResult
from .systems import FINE_TUNED

PERPLEXITY_WARNING = 0.25  # a rise this large shows the model drifting even where the probes still pass
COLUMNS = (
    ("exact_match", "exact match"),
    ("field_match", "JSON fields"),
    ("traditional_script", "Traditional script"),
    ("token_f1", "token F1"),
    ("rouge_l", "ROUGE-L"),
    ("chrf", "chrF"),
    ("false_refusal_rate", "false refusals"),
    ("judge", "judge"),
)


def word_diff(answer: str, reference: str) -> str:
    """The answer against the reference, word by word: [-missing-] {+extra+}."""
    parts = []
    for op, wanted, said in diff_ops(answer, reference):
        if op == "equal":
            parts.append(wanted)
        if op in ("delete", "replace"):
            parts.append("[-" + wanted + "-]")
        if op in ("insert", "replace"):
            parts.append("{+" + said + "+}")
    return " ".join(parts)


def diff_ops(answer: str, reference: str) -> list[tuple[str, str, str]]:
    """(operation, reference words, answer words) runs, for the Markdown and HTML diffs alike."""
    said, wanted = answer.split(), reference.split()
    return [
        (op, " ".join(wanted[a0:a1]), " ".join(said[b0:b1]))
        for op, a0, a1, b0, b1 in difflib.SequenceMatcher(a=wanted, b=said, autojunk=False).get_opcodes()
    ]


def score_columns(result: EvalResult) -> list[tuple[str, str]]:
    return [(key, title) for key, title in COLUMNS if any(key in result.summary[s] for s in result.system_names)]


def score_cell(result: EvalResult, system: str, key: str) -> str:
    interval = result.intervals.get(system, {}).get(key)
    if key not in result.summary[system]:
        return "–"
    if not interval:
        return f"{result.summary[system][key]:.3f}"
    return f"{interval['mean']:.3f} [{interval['low']:.2f}, {interval['high']:.2f}]"


def summary_table(result: EvalResult) -> str:
    """Markdown: one row per system, each score with its 95 % bootstrap interval."""
    columns = score_columns(result)
    lines = [
        "| system | " + " | ".join(t for _, t in columns) + " | examples | generation time |",
        "|---|" + "---:|" * (len(columns) + 2),
    ]
    for system in result.system_names:
        cells = [score_cell(result, system, key) for key, _ in columns]
        lines.append(
            f"| {system} | "
            + " | ".join(cells)
            + f" | {result.summary[system]['n']} | {result.seconds.get(system, 0):.1f} s |"
        )
    return "\n".join(lines)


def interval_cell(interval: dict[str, float] | None) -> str:
    return "–" if not interval else f"{interval['mean']:.3f} [{interval['low']:.2f}, {interval['high']:.2f}]"


def kind_table(result: EvalResult, metric: str = "exact_match") -> str:
    """Markdown: one row per question kind, one column per system (the metric with its interval), and the
    retrieval recall of that kind when the +RAG systems ran."""
    if not result.by_kind:
        return ""
    names, recall = result.system_names, (result.retrieval or {}).get("by_kind", {})
    recall_head = f" recall@{result.retrieval['k']} |" if recall else ""
    lines = [
        f"| {result.by_kind['field']} | examples |{recall_head} " + " | ".join(names) + " |",
        "|---|---:|" + ("---:|" if recall else "") + "---:|" * len(names),
    ]
    for kind, group in result.by_kind["groups"].items():
        recall_cell = f" {recall[kind]:.3f} |" if kind in recall else (" – |" if recall else "")
        cells = [interval_cell(group["intervals"].get(name, {}).get(metric)) for name in names]
        lines.append(f"| {kind} | {group['n']} |{recall_cell} " + " | ".join(cells) + " |")
    return "\n".join(lines)


def kind_significance_lines(result: EvalResult) -> list[str]:
    """Per kind, the leader (fine-tuned + RAG, or fine-tuned) against every other system on exact match."""
    if not result.by_kind:
        return []
    lines = []
    for kind, group in result.by_kind["groups"].items():
        tests = [
            f"vs {t['b']} {t['only_a']}:{t['only_b']} p = {t['p_value']:.3g}" for t in group.get("significance", [])
        ]
        if tests:
            lines.append(f"{kind} ({group['n']}): {result.by_kind['leader']} " + ", ".join(tests))
    if lines:
        lines.append("(a:b = examples only the first / only the second got exactly right; exact McNemar p)")
    return lines


def retrieval_lines(result: EvalResult) -> list[str]:
    r = result.retrieval
    if not r:
        return []
    if not r.get("questions"):
        return [
            f"retrieval: top {r['k']} chunks of {r['index']}; no test record names its source (metadata.source), "
            "so recall@k is not measured"
        ]
    kinds = ", ".join(f"{kind} {value:.3f}" for kind, value in r["by_kind"].items())
    return [
        f"retrieval recall@{r['k']} ({r['index']}): {r['recall']:.3f} on {r['questions']} questions with a known "
        f"source; {kinds}"
    ]


def significance_lines(result: EvalResult) -> list[str]:
    return [
        f"{t['a']} vs {t['b']}: exact match differs on {t['only_a'] + t['only_b']} examples "
        f"({t['only_a']} only {t['a']}, {t['only_b']} only {t['b']}), exact McNemar p = {t['p_value']:.4g}"
        + (" (a real difference at the 5 % level)" if t["p_value"] < 0.05 else " (could be chance)")
        for t in result.significance
    ]


def forgetting_lines(result: EvalResult) -> list[str]:
    f = result.forgetting
    if not f:
        return []
    scores, ppl = f["probe_scores"], f["perplexity"]
    perplexity = (
        f"perplexity on general text {ppl['base']:.2f} → {ppl['fine-tuned']:.2f} ({f['perplexity_change']:+.1%})"
    )
    if f.get("probes_skipped"):
        lines = [
            f"forgetting: general probes: the base model passed {scores['base']:.3f} of them (a base model without chat "
            "training answers none), too few for fine-tuning to lose, so the fine-tuned model was not asked; "
            + perplexity
        ]
        if f["max_drop"] is not None:
            lines.append(
                f"forgetting gate passed: the base model has less than --max-forgetting {f['max_drop']} to lose"
            )
    else:
        lines = [
            f"forgetting: general probes {scores['base']:.3f} → {scores['fine-tuned']:.3f} (drop {f['drop']:+.3f}), "
            + perplexity
        ]
        if f["max_drop"] is not None:
            verdict = "FAILED" if f["failed"] else "passed"
            lines.append(f"forgetting gate {verdict}: drop {f['drop']:.3f} vs --max-forgetting {f['max_drop']}")
        else:
            lines.append(
                "forgetting gate: none set (--max-forgetting 0.1 fails the command when the probe score drops by more "
                "than 0.1)"
            )
    if not f["failed"] and f["perplexity_change"] > PERPLEXITY_WARNING:
        lines.append(
            f"  note: perplexity on general text rose by more than {PERPLEXITY_WARNING:.0%}; if general answers matter, "
            "mix general examples into training (`mix.general: builtin` in the run config)"
        )
    if f["failed"]:
        lines.append(
            "  fix: mix general examples into training (replay): `mix.general: builtin` in the run config, "
            "or `buxiban data mix TRAIN OUT --ratio 0.2`, then train again"
        )
    return lines


def savings_lines(result: EvalResult) -> list[str]:
    s = result.savings
    if not s:
        return []
    line = (
        f"savings: the fine-tuned model's prompt is {s['prompt_tokens']:.0f} tokens per request against "
        f"{s['prompt_tokens_instead']:.0f} for {s['against']} ({s['prompt_tokens_saved_share']:.0%} fewer)"
    )
    if "latency_s" in s:
        line += f"; {s['latency_s']:.2f} s vs {s['latency_s_instead']:.2f} s per request answered alone ({s['speedup']:.2f}x)"
    return [line]


def refusal_lines(result: EvalResult) -> list[str]:
    if not result.refusals:
        return []
    parts = [f"{name} {s['refusal_rate']:.0%}" for name, s in result.refusals["systems"].items()]
    return [
        f"refusals on {len(result.refusals['questions'])} out-of-scope questions (higher is better): "
        + ", ".join(parts)
    ]


def terminal_summary(result: EvalResult, report_path: Path | None = None) -> str:
    lines = [summary_table(result), ""]
    if result.by_kind:
        lines += [f"exact match by {result.by_kind['field']}:", kind_table(result), ""]
    if FINE_TUNED in result.summary and "base" in result.summary:
        gain = result.summary[FINE_TUNED]["exact_match"] - result.summary["base"]["exact_match"]
        lines.append(f"exact match {gain:+.3f} after fine-tuning")
    lines += significance_lines(result) + kind_significance_lines(result) + retrieval_lines(result)
    lines += savings_lines(result) + refusal_lines(result) + forgetting_lines(result)
    for errors in (result.errors, result.rag_errors):
        if errors and errors["failed"]:
            kinds = ", ".join(f"{k} {v}" for k, v in errors["by_kind"].items())
            lines.append(f"{errors['system']} failures: {errors['failed']} ({kinds}); next: {errors['advice'][0]}")
    extra = [
        f"{what} {result.seconds[key]:.1f} s"
        for key, what in (("forgetting", "forgetting check"), ("latency", "single-request timing"))
        if key in result.seconds
    ]
    if extra:
        lines.append("time besides the table: " + ", ".join(extra))
    if report_path is not None:
        lines.append(f"report with plots and per-example diffs: {report_path}")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_report(result: EvalResult) -> str:
    names = result.system_names
    out = [
        f"# Evaluation of {result.run_dir}",
        "",
        f"Base model: {result.base_model}. Test set: `{result.test_file}` ({len(result.examples)} conversations, "
        "never trained on). Greedy decoding. Scores with 95 % bootstrap intervals.",
        "",
        summary_table(result),
        "",
    ]
    if result.by_kind:
        out += [f"## Exact match by {result.by_kind['field']}", "", kind_table(result), ""]
    out += [
        f"- {line}"
        for line in significance_lines(result)
        + kind_significance_lines(result)
        + retrieval_lines(result)
        + savings_lines(result)
        + refusal_lines(result)
        + forgetting_lines(result)
    ]
    if result.cost_notes:
        heading, *lines = result.cost_notes  # the same heading as the terminal's and the HTML page's
        out += ["", f"## {heading.rstrip(':')}", "", *(f"- {line.strip()}" for line in lines)]
    if result.errors:
        out += ["", "## What to fix next", ""] + [f"- {line}" for line in result.errors["advice"]]
    if result.rag_errors and result.rag_errors["failed"]:
        out += ["", f"With documents ({result.rag_errors['system']}):", ""] + [
            f"- {line}" for line in result.rag_errors["advice"]
        ]
    if FINE_TUNED in names:
        still_wrong = [r for r in result.examples if not r[FINE_TUNED]["exact_match"]]
        if still_wrong:
            out += [
                "",
                "## Still wrong after fine-tuning",
                "",
                "`[-word-]` is in the reference but missing; `{+word+}` was said instead.",
                "",
            ]
            out += [
                f"- `{r['where']}` ({r[FINE_TUNED].get('error_kind')}) {_cell(r['question'])}  \n"
                f"  {_cell(word_diff(r[FINE_TUNED]['answer'], r['reference']))}"
                for r in still_wrong
            ]
    out += [
        "",
        "## Every example",
        "",
        "| # | question | reference | " + " | ".join(names) + " |",
        "|---:|---|---|" + "---|" * len(names),
    ]
    for r in result.examples:
        marks = [("✓ " if r[s]["exact_match"] else "✗ ") + _cell(r[s]["answer"]) for s in names]
        out.append(f"| {r['index']} | {_cell(r['question'])} | {_cell(r['reference'])} | " + " | ".join(marks) + " |")
    return "\n".join(out) + "\n"
