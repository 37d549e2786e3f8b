"""PNG plots for the HTML report, drawn with matplotlib's Agg backend (no display, no network) and
returned as bytes so the report can embed them."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

PLOTTED_METRICS = (
    ("exact_match", "exact match"),
    ("field_match", "JSON fields"),
    ("traditional_script", "Traditional script"),
    ("token_f1", "token F1"),
    ("rouge_l", "ROUGE-L"),
    ("chrf", "chrF"),
)


def _figure(width: float = 7.0, height: float = 3.4):
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def loss_curves_png(metrics: Sequence[dict[str, Any]]) -> bytes | None:
    """Training loss per optimizer step and validation loss per validation pass, from metrics.jsonl."""
    train = [(m["step"], m["loss"]) for m in metrics if "loss" in m and "step" in m]
    validation = [(m["step"], m["val_loss"]) for m in metrics if "val_loss" in m and "step" in m]
    if not train and not validation:
        return None
    figure = _figure()
    axes = figure.add_subplot()
    if train:
        axes.plot(*zip(*train), label="training loss", color="#4c72b0", linewidth=1.2)
    if validation:
        axes.plot(*zip(*validation), label="validation loss", color="#dd8452", marker="o", linewidth=1.5)
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss")
    axes.set_yscale("log" if all(v > 0 for _, v in train + validation) else "linear")
    axes.grid(alpha=0.3)
    axes.legend()
    return _png(figure)


def scores_png(intervals: dict[str, dict[str, dict[str, float]]], systems: Sequence[str]) -> bytes | None:
    """Grouped bars: each metric's mean per system, with its 95 % bootstrap interval as an error bar."""
    metrics = [(key, title) for key, title in PLOTTED_METRICS if any(key in intervals.get(s, {}) for s in systems)]
    if not metrics or not systems:
        return None
    figure = _figure(width=max(7.0, 1.4 * len(metrics) * max(1, len(systems)) / 2))
    axes = figure.add_subplot()
    width = 0.8 / len(systems)
    for offset, system in enumerate(systems):
        xs, means, below, above = [], [], [], []
        for position, (key, _) in enumerate(metrics):
            interval = intervals.get(system, {}).get(key)
            if interval is None:
                continue
            xs.append(position + (offset - (len(systems) - 1) / 2) * width)
            means.append(interval["mean"])
            below.append(max(interval["mean"] - interval["low"], 0))
            above.append(max(interval["high"] - interval["mean"], 0))
        axes.bar(xs, means, width, yerr=[below, above], capsize=3, label=system)
    axes.set_xticks(range(len(metrics)), [title for _, title in metrics])
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("score (95 % interval)")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=8)
    return _png(figure)
