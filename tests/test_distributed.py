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


def test_two_process_resume_restores_each_ranks_randomness(tmp_path, tiny_model_dir):
    """With dropout on, each rank draws its own random masks: a resumed 2-process run must restore
    every rank's RNG, not just rank 0's, to end where an uninterrupted one does."""
    from safetensors.torch import load_file

    records = [chat_record(f"Question {i} about plan {i % 3}?", f"Plan {i % 3} answer number {i}.") for i in range(16)]
    data = write_jsonl(tmp_path / "train.jsonl", records)
    adapters = {}
    for name in ("whole", "resumed"):
        out = tmp_path / name
        config = tmp_path / f"{name}.yaml"
        config.write_text(f"model: {tiny_model_dir}\noutput_dir: {out}\ndata:\n  train: {data}\n  validation_fraction: 0\n"
                          "lora:\n  dropout: 0.3\ntrain:\n  max_steps: 6\n  batch_size: 3\n  grad_accum: 1\n"
                          "  learning_rate: 5.0e-3\n  precision: fp32\n  checkpoint_every: 3\n")
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29411",
                   "-m", "buxiban.cli", "train", str(config), "--quiet"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        if name == "resumed":  # as if killed after the step-3 checkpoint: train steps 4-6 again from it
            (out / "buxiban-run.json").write_text((out / "buxiban-run.json").read_text().replace('"complete"', '"running"'))
            done = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr[-3000:]
            assert "resuming from" in done.stdout
        adapters[name] = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    for key, tensor in adapters["whole"].items():
        assert tensor.equal(adapters["resumed"][key]), key
