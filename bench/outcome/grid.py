"""Train and evaluate one grid point per line of a plan file, each from the smallest config a user
writes (data.train and output_dir) plus the point's overrides, and append what was measured to
bench/outcome/results.jsonl: held-out exact match with its interval, training time, steps, final loss.

    python bench/outcome/grid.py PLAN          # a line: NAME DATASET [key=value ...] [+forgetting]
    python bench/outcome/grid.py --show        # the results as a table

DATASET is a shipped example (yunshan, hefeng: examples/NAME) or harbor or catalog (bench/outcome/data,
datasets.py). `+forgetting` keeps eval's forgetting check on (113 general probes and perplexity on
general text, base and fine-tuned weights) and records it. A point
whose name already has a result is skipped, so an interrupted grid continues where it stopped. Time
points only when nothing else runs on the machine.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results.jsonl"
WORK = ROOT / "runs" / "outcome"
BUXIBAN = [str(ROOT / ".venv" / "bin" / "buxiban")]


def dataset_files(name: str) -> dict[str, Path]:
    shipped = ROOT / "examples" / name
    folder = shipped if shipped.is_dir() else Path(__file__).resolve().parent / "data" / name
    return {"train": folder / "train.jsonl", "test": folder / "test.jsonl", "preferences": folder / "preferences.jsonl"}


def done() -> set[str]:
    if not RESULTS.is_file():
        return set()
    return {json.loads(line)["name"] for line in RESULTS.read_text().splitlines() if line.strip()}


def run_point(name: str, dataset: str, overrides: list[str], forgetting: bool = False) -> dict:
    files = dataset_files(dataset)
    out = WORK / name
    config = WORK / f"{name}.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    dpo = any(o.startswith("method=dpo") for o in overrides)
    train_file = files["preferences"] if dpo else files["train"]
    config.write_text(f"data:\n  train: {train_file}\noutput_dir: {out}\n")
    started = time.monotonic()
    subprocess.run([*BUXIBAN, "train", str(config), *overrides, "--quiet", "--overwrite"], check=True)
    seconds = time.monotonic() - started
    eval_out = out / "eval"
    command = [*BUXIBAN, "eval", str(out), "--test", str(files["test"]), "--shots", "0"]
    command += [] if forgetting else ["--no-forgetting"]
    subprocess.run(
        [*command, "--latency-samples", "0", "--out", str(eval_out), "--json"], check=True, stdout=subprocess.DEVNULL
    )
    report = json.loads((eval_out / "eval.json").read_text())
    manifest = json.loads((out / "buxiban-run.json").read_text())
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    losses = [m["loss"] for m in metrics if "loss" in m]
    summary = report["summary"]
    return {
        "name": name,
        "dataset": dataset,
        "overrides": overrides,
        "train_seconds": round(seconds, 1),
        "steps": len(losses),
        "final_loss": losses[-1] if losses else None,
        "exact_match": summary["fine-tuned"]["exact_match"],
        "interval": [report["intervals"]["fine-tuned"]["exact_match"][k] for k in ("low", "high")],
        "base_exact_match": summary["base"]["exact_match"],
        "hyperparameters": manifest.get("hyperparameters") or manifest.get("extra", {}).get("hyperparameters"),
        "correct": [bool(e["fine-tuned"]["exact_match"]) for e in report["examples"]],
        **({"forgetting": _forgetting_summary(report["forgetting"])} if forgetting else {}),
    }


def _forgetting_summary(forgetting: dict) -> dict:
    return {
        "probe_scores": forgetting["probe_scores"],
        "perplexity": forgetting["perplexity"],
        "passed": {w: [row[w]["passed"] for row in forgetting["probes"]] for w in forgetting["probe_scores"]},
    }


def show() -> None:
    rows = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
    print(f"{'name':32} {'data':8} {'EM':>5} {'interval':>13} {'steps':>5} {'min':>5} {'loss':>7}  overrides")
    for r in rows:
        low, high = r["interval"]
        loss = f"{r['final_loss']:.4f}" if r["final_loss"] is not None else "-"
        print(
            f"{r['name']:32} {r['dataset']:8} {r['exact_match']:5.3f} [{low:.2f}, {high:.2f}] "
            f"{r['steps']:5d} {r['train_seconds'] / 60:5.1f} {loss:>7}  {' '.join(r['overrides'])}"
        )


def main() -> None:
    if sys.argv[1:] == ["--show"]:
        show()
        return
    finished = done()
    for line in Path(sys.argv[1]).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, dataset, *overrides = shlex.split(line)
        if name in finished:
            continue
        forgetting = "+forgetting" in overrides
        overrides = [o for o in overrides if o != "+forgetting"]
        print(f"== {name} ({dataset}) {' '.join(overrides)}", flush=True)
        result = run_point(name, dataset, overrides, forgetting)
        with RESULTS.open("a") as out:
            out.write(json.dumps(result) + "\n")
        print(
            f"   exact match {result['exact_match']:.3f} {result['interval']} in {result['train_seconds']:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
