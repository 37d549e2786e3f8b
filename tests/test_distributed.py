"""Two processes (gloo, CPU) with the same global batch compute the same losses as one."""

import subprocess
import sys

from buxiban.train.rundir import read_manifest, read_metrics

from conftest import chat_record, write_jsonl


def test_two_processes_match_one(tmp_path, tiny_model_dir):
    records = [chat_record(f"Question {i} about plan {i % 3}?", f"Plan {i % 3} answer number {i}.") for i in range(16)]
    data = write_jsonl(tmp_path / "train.jsonl", records)
    losses = {}
    for processes in (1, 2):
        out = tmp_path / f"run{processes}"
        config = tmp_path / f"run{processes}.yaml"
        config.write_text(f"model: {tiny_model_dir}\noutput_dir: {out}\ndata:\n  train: {data}\n  validation_fraction: 0.25\n"
                          "lora:\n  dropout: 0\ntrain:\n  max_steps: 4\n  batch_size: 4\n  grad_accum: 2\n"
                          "  learning_rate: 5.0e-3\n  precision: fp32\n  eval_every: 2\n")
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                    "--master_port", str(29400 + processes)] if processes > 1 else [sys.executable]
        done = subprocess.run(launcher + ["-m", "buxiban.cli", "train", str(config), "--quiet"],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        metrics = read_metrics(out)
        losses[processes] = ([m["loss"] for m in metrics if "loss" in m], [m["val_loss"] for m in metrics if "val_loss" in m])
        assert read_manifest(out)["status"] == "complete"
    (one, one_val), (two, two_val) = losses[1], losses[2]
    assert len(one) == len(two) == 4 and len(one_val) == len(two_val) == 2
    for a, b in zip(one + one_val, two + two_val):
        assert abs(a - b) < 1e-4 * max(1.0, abs(a)), (losses[1], losses[2])
