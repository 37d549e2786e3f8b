"""The dashboard's Python side without a browser or a model: where runs are found, reading a metrics
log while it is written, the histogram, trained-text segments, which paths need the key."""

from __future__ import annotations

import json

import pytest

from buxiban.adapters.registry import Registry
from buxiban.cli.serve import dashboard_url
from buxiban.errors import ServeError
from buxiban.runs import MANIFEST
from buxiban.runs.checkpoints import finished_checkpoints
from buxiban.serve.app import ServeSettings, check_dashboard_paths
from buxiban.serve.dashboard.datareport import histogram, split_marked
from buxiban.serve.dashboard.found_runs import discover, find, summary
from buxiban.serve.metrics_log import read_metrics_since
from buxiban.serve.safety import is_open
from buxiban.serve.tuning.database import Store


def fake_run(run_dir, status="complete", **manifest):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / MANIFEST).write_text(
        json.dumps({"status": status, "method": "sft", "adapter": "lora", "base_model": {"name": "tiny"}, **manifest}),
        encoding="utf-8",
    )
    return run_dir


def test_histogram_bins_cover_every_value_once():
    counts = histogram([1, 2, 2, 3, 10], bins=3)
    assert counts == {"edges": [1, 5, 9, 13], "counts": [4, 0, 1]}
    assert histogram([7]) == {"edges": [7, 8], "counts": [1]}
    spread = histogram(list(range(60, 140)), bins=24)
    assert sum(spread["counts"]) == 80 and len(spread["edges"]) == len(spread["counts"]) + 1
    assert spread["edges"][0] == 60 and spread["edges"][-1] >= 140


def test_trained_text_is_split_into_segments():
    assert split_marked("<user>hi</user>\x00Hello!\x01\n") == [
        {"text": "<user>hi</user>", "trained": False},
        {"text": "Hello!", "trained": True},
        {"text": "\n", "trained": False},
    ]
    assert split_marked("a⟦b⟧", "⟦", "⟧") == [{"text": "a", "trained": False}, {"text": "b", "trained": True}]


def test_metrics_are_read_from_a_line_on_and_the_line_being_written_waits(tmp_path):
    lines = [json.dumps({"step": s, "loss": 1.0 / s}) for s in (1, 2, 3)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 4, "lo', encoding="utf-8")
    first = read_metrics_since(tmp_path)
    assert [e["step"] for e in first["entries"]] == [1, 2, 3] and first["next"] == 3 and not first["reset"]
    assert read_metrics_since(tmp_path, 2)["entries"] == [{"step": 3, "loss": 1 / 3}]
    (tmp_path / "metrics.jsonl").write_text(lines[0] + "\n", encoding="utf-8")  # a resume rewrote it shorter
    again = read_metrics_since(tmp_path, 3)
    assert again["reset"] and [e["step"] for e in again["entries"]] == [1] and again["next"] == 1
    assert read_metrics_since(tmp_path / "not-started", 0) == {"entries": [], "next": 0, "reset": False}


def test_only_complete_checkpoints_are_listed(tmp_path):
    for name, done in (("step-00000010", True), ("step-00000020", False), ("step-00000030.tmp-1", True)):
        (tmp_path / "checkpoints" / name).mkdir(parents=True)
        if done:
            (tmp_path / "checkpoints" / name / "COMPLETE").write_text("")
    assert [step for step, _ in finished_checkpoints(tmp_path)] == [10]


def test_runs_are_found_once_under_their_best_name(tmp_path):
    home = tmp_path / "home"
    store, registry = Store(home), Registry(home)
    try:
        job = store.add_job(
            {
                "id": "ftjob-" + "a" * 24,
                "model": "tiny",
                "training_file": "file-" + "b" * 24,
                "seed": 1,
                "hyperparameters": {"n_epochs": "auto"},
                "method": {"type": "supervised"},
            }
        )
        job_run = fake_run(store.job_dir(job["id"]) / "run", steps=6, final_train_loss=0.5)
        folder = tmp_path / "runs"
        named = fake_run(folder / "named")
        fake_run(folder / "group" / "deep", status="running")
        registry.register("ft:tiny::job", job_run)
        registry.register("named", named)
        runs = discover(store, registry, [folder])
        assert [(r.id, r.source, r.adapter) for r in runs] == [
            (job["id"], "job", "ft:tiny::job"),
            ("named", "adapter", "named"),
            ("runs/group/deep", "folder", None),
        ]
        row = summary(find(runs, job["id"]), store)
        assert (row["status"], row["method"], row["step"], row["train_loss"]) == (
            "validating_files",
            "sft/lora",
            6,
            0.5,
        )
        assert row["data"] == {"name": "file-" + "b" * 24, "examples": None}  # the upload is gone; its id is shown
        with pytest.raises(ServeError, match="no run with id"):
            find(runs, "../../etc")
    finally:
        store.close()


def test_the_pages_are_open_and_their_data_is_not():
    assert all(is_open(p) for p in ("/", "/ui", "/ui/", "/ui/app.js", "/health"))
    assert not any(is_open(p) for p in ("/api/runs", "/v1/models", "/uix", "/api/run/metrics"))


def test_missing_runs_folders_and_indexes_fail_at_start(tmp_path):
    with pytest.raises(ServeError) as caught:
        check_dashboard_paths(ServeSettings(runs=[str(tmp_path / "nope")], rag={"docs": str(tmp_path / "docs.db")}))
    assert "--runs" in str(caught.value) and "buxiban rag index DOCS --out" in str(caught.value)
    check_dashboard_paths(ServeSettings(runs=[str(tmp_path)]))


def test_the_printed_dashboard_address_opens_on_this_machine():
    assert dashboard_url("127.0.0.1", 8000) == "http://127.0.0.1:8000/ui/"
    assert dashboard_url("0.0.0.0", 9000) == "http://127.0.0.1:9000/ui/"
    assert dashboard_url("::1", 80) == "http://[::1]:80/ui/"
