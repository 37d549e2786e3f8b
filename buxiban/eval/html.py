"""The self-contained HTML report: inline CSS, plots embedded as base64 PNG, no script and no link to
anything outside the file, so it opens offline and can be mailed as one attachment."""

from __future__ import annotations

import base64
from html import escape
from typing import Any

from ..runs import read_metrics
from .compare import EvalResult
from .plots import loss_curves_png, scores_png
from .report import (
    diff_ops,
    forgetting_lines,
    interval_cell,
    kind_significance_lines,
    refusal_lines,
    retrieval_lines,
    savings_lines,
    score_cell,
    score_columns,
    significance_lines,
)
from .systems import FINE_TUNED

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; } th, td { border: 1px solid #ddd; padding: 4px 8px; vertical-align: top; }
th { background: #f4f4f4; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #1a7f37; } .bad { color: #cf222e; } .fail { background: #fff0f0; }
del { background: #ffd7d5; text-decoration: line-through; } ins { background: #ccffd8; text-decoration: none; }
.small { font-size: 12px; } img { max-width: 100%; } ul.lines li { margin: 0.2em 0; }
"""


def _img(png: bytes | None, alt: str) -> str:
    if png is None:
        return f"<p class='small'>({escape(alt)}: no data)</p>"
    return f"<img alt='{escape(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}'>"


def html_diff(answer: str, reference: str) -> str:
    parts = []
    for op, wanted, said in diff_ops(answer, reference):
        if op == "equal":
            parts.append(escape(wanted))
        if op in ("delete", "replace"):
            parts.append(f"<del>{escape(wanted)}</del>")
        if op in ("insert", "replace"):
            parts.append(f"<ins>{escape(said)}</ins>")
    return " ".join(parts)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(cells) + "</tr>" for cells in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _td(text: Any, numeric: bool = False) -> str:
    return f"<td class='num'>{escape(str(text))}</td>" if numeric else f"<td>{escape(str(text))}</td>"


def _list(lines: list[str]) -> str:
    return "<ul class='lines'>" + "".join(f"<li>{escape(line)}</li>" for line in lines) + "</ul>" if lines else ""


def _groups(title: str, groups: list[dict[str, Any]]) -> str:
    rows = [[_td(g["group"]), _td(g["n"], True), _td(g["failed"], True), _td(f"{g['rate']:.0%}", True)] for g in groups]
    return f"<h3>{escape(title)}</h3>" + _table(["group", "examples", "failed", "failure rate"], rows)


def html_report(result: EvalResult) -> str:
    names = result.system_names
    columns = score_columns(result)
    summary_rows = [
        [_td(s)]
        + [_td(score_cell(result, s, key), True) for key, _ in columns]
        + [_td(result.summary[s]["n"], True), _td(f"{result.seconds.get(s, 0):.1f} s", True)]
        for s in names
    ]
    parts = [
        f"<h1>Evaluation of {escape(result.run_dir)}</h1>",
        f"<p>Base model {escape(result.base_model)}; test set <code>{escape(result.test_file)}</code> "
        f"({len(result.examples)} conversations never trained on); greedy decoding; "
        "95 % bootstrap intervals in brackets.</p>",
        "<h2>Scores</h2>",
        _table(["system"] + [t for _, t in columns] + ["examples", "generation time"], summary_rows),
        _list([f"{s['name']}: {s['description']}" for s in result.systems]),
        _img(scores_png(result.intervals, names), "scores with 95 % intervals"),
        "<h2>Is the difference real?</h2>",
        _list(significance_lines(result) or ["(one system only)"]),
        _list(retrieval_lines(result)),
    ]
    if result.by_kind:
        parts += [
            f"<h2>By question kind ({escape(result.by_kind['field'])})</h2>",
            _kind_tables(result, names),
            _list(kind_significance_lines(result)),
        ]
    parts += ["<h2>Training</h2>", _img(loss_curves_png(read_metrics(result.run_dir)), "training and validation loss")]
    if result.costs:
        rows = [
            [
                _td(name),
                _td(c["prompt_tokens_per_request"], True),
                _td(c["new_tokens_per_request"], True),
                _td(c["seconds_per_request_batched"], True),
                _td(c.get("latency_s", "–"), True),
            ]
            for name, c in result.costs.items()
        ]
        parts += [
            "<h2>Cost per request</h2>",
            _table(["system", "prompt tokens", "answer tokens", "seconds (batched)", "seconds (alone)"], rows),
            _list(savings_lines(result)),
        ]
    if result.cost_notes:
        parts += [
            f"<h2>{escape(result.cost_notes[0].rstrip(':'))}</h2>",
            _list([line.strip() for line in result.cost_notes[1:]]),
        ]
    if result.refusals:
        parts += [
            "<h2>Refusals</h2>",
            _list(
                refusal_lines(result)
                + ["false refusals on in-scope test questions are the 'false refusals' column above (lower is better)"]
            ),
        ]
    if result.forgetting:
        f = result.forgetting
        rows = [
            [_td(p["id"]), _td(p["question"])]
            + [
                _td(("✓ " if p[w]["passed"] else "✗ ") + p[w]["answer"]) if w in p else _td("(not asked)")
                for w in ("base", "fine-tuned")
            ]
            for p in f["probes"]
        ]
        parts += [
            "<h2>Forgetting check</h2>",
            _list(forgetting_lines(result)),
            "<details><summary>every probe</summary>"
            + _table(["probe", "question", "base", "fine-tuned"], rows)
            + "</details>",
        ]
    if result.errors:
        e = result.errors
        parts += [
            "<h2>What to fix next</h2>",
            _list(e["advice"]),
            _table(["error kind", "count"], [[_td(k), _td(v, True)] for k, v in e["by_kind"].items()]),
        ]
        if e.get("by_category"):
            parts.append(_groups("by category", e["by_category"]))
        if e.get("by_length"):
            parts.append(_groups("by prompt length (tokens)", e["by_length"]))
    parts += [
        "<h2>Every example</h2>",
        "<p class='small'>The diff marks reference words the answer "
        "<del>missed</del> and words it <ins>said instead</ins>.</p>",
        _examples_table(result, names),
    ]
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>buxiban eval</title>"
        f"<style>{CSS}</style></head><body>" + "\n".join(parts) + "</body></html>\n"
    )


def _kind_tables(result: EvalResult, names: list[str]) -> str:
    """Exact match and token F1 per kind: where each system wins, with intervals."""
    recall = (result.retrieval or {}).get("by_kind", {})
    out = []
    for metric, title in (("exact_match", "exact match"), ("token_f1", "token F1")):
        rows = [
            [_td(kind), _td(g["n"], True)]
            + ([_td(f"{recall[kind]:.3f}" if kind in recall else "–", True)] if recall else [])
            + [_td(interval_cell(g["intervals"].get(name, {}).get(metric)), True) for name in names]
            for kind, g in result.by_kind["groups"].items()
        ]
        recall_head = [f"recall@{result.retrieval['k']}"] if recall else []
        out.append(f"<h3>{title}</h3>" + _table(["kind", "examples"] + recall_head + names, rows))
    return "".join(out)


def _examples_table(result: EvalResult, names: list[str]) -> str:
    rows = []
    retrieved = any("retrieved" in r for r in result.examples)
    for r in result.examples:
        cells = [
            _td(r["index"], True),
            _td(r.get("kind") or r.get("category", "")),
            _td(r["question"]),
            _td(r["reference"]),
        ]
        for s in names:
            ok = r[s]["exact_match"]
            mark = "<span class='ok'>✓</span>" if ok else "<span class='bad'>✗</span>"
            body = escape(r[s]["answer"]) if ok or s != FINE_TUNED else html_diff(r[s]["answer"], r["reference"])
            kind = f" <span class='small'>({escape(r[s]['error_kind'])})</span>" if r[s].get("error_kind") else ""
            cells.append(f"<td class='{'' if ok else 'fail'}'>{mark} {body}{kind}</td>")
        if retrieved:
            hit = {True: "✓ ", False: "✗ "}.get(r.get("retrieval_hit"), "")
            cells.append(f"<td class='small'>{hit}{'<br>'.join(escape(s) for s in r.get('retrieved', []))}</td>")
        rows.append(cells)
    return _table(["#", "kind", "question", "reference"] + names + (["retrieved"] if retrieved else []), rows)
