"""Two processes (gloo, CPU) with the same global batch compute the same losses as one."""

import os
import subprocess
import sys

import pytest
import torch

from buxiban.runs import read_manifest, read_metrics

from conftest import chat_record, write_jsonl

pytestmark = pytest.mark.integration  # training commands in subprocesses, most of them 2 ranks


def run_launched(command: list[str]) -> subprocess.CompletedProcess:
    """Run a (possibly torchrun-launched) training command; on failure show where each rank was
    (faulthandler prints the Python stack of a process that aborts) and what it had printed."""
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONFAULTHANDLER": "1"}
    )
    assert done.returncode == 0, done.stdout[-1500:] + "\n" + done.stderr[-3000:]
    return done


def test_two_processes_match_one(tmp_path, tiny_model_dir):
    records = [chat_record(f"Question {i} about plan {i % 3}?", f"Plan {i % 3} answer number {i}.") for i in range(16)]
    data = write_jsonl(tmp_path / "train.jsonl", records)
    losses = {}
    for processes in (1, 2):
        out = tmp_path / f"run{processes}"
        config = tmp_path / f"run{processes}.yaml"
        config.write_text(
            f"model: {tiny_model_dir}\noutput_dir: {out}\ndata:\n  train: {data}\n  validation_fraction: 0.25\n"
            "lora:\n  dropout: 0\ntrain:\n  max_steps: 4\n  batch_size: 4\n  grad_accum: 2\n"
            "  learning_rate: 5.0e-3\n  precision: fp32\n  eval_every: 2\n"
        )
        launcher = (
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc_per_node",
                str(processes),
                "--master_port",
                str(29400 + processes),
            ]
            if processes > 1
            else [sys.executable]
        )
        run_launched(launcher + ["-m", "buxiban.cli", "train", str(config), "--quiet"])
        metrics = read_metrics(out)
        losses[processes] = (
            [m["loss"] for m in metrics if "loss" in m],
            [m["val_loss"] for m in metrics if "val_loss" in m],
        )
        assert read_manifest(out).status == "complete"
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
        config.write_text(
            f"model: {tiny_model_dir}\noutput_dir: {out}\ndata:\n  train: {data}\n  validation_fraction: 0\n"
            "lora:\n  dropout: 0.3\ntrain:\n  max_steps: 6\n  batch_size: 3\n  grad_accum: 1\n"
            "  learning_rate: 5.0e-3\n  precision: fp32\n  checkpoint_every: 3\n"
        )
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29411",
            "-m",
            "buxiban.cli",
            "train",
            str(config),
            "--quiet",
        ]
        run_launched(command)
        if name == "resumed":  # as if killed after the step-3 checkpoint: train steps 4-6 again from it
            (out / "buxiban-run.json").write_text(
                (out / "buxiban-run.json").read_text().replace('"complete"', '"running"')
            )
            done = run_launched(command + ["--resume"])
            assert "resuming from" in done.stdout
        adapters[name] = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    for key, tensor in adapters["whole"].items():
        assert tensor.equal(adapters["resumed"][key]), key


def _launch(tmp_path, name: str, body: str, processes: int, port: int, *extra: str):
    config = tmp_path / f"{name}.yaml"
    config.write_text(body.format(out=tmp_path / name))
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port", str(port)]
        if processes > 1
        else [sys.executable]
    )
    run_launched(launcher + ["-m", "buxiban.cli", "train", str(config), "--quiet", *extra])
    return tmp_path / name


@pytest.mark.parametrize("adapter, sharding", [("lora", "fsdp"), ("full", "zero2")])
def test_sharded_training_matches_one_process_and_resumes(tmp_path, tiny_model_dir, adapter, sharding):
    """Weights, gradients and optimizer state split over 2 processes: the same losses as one process,
    whole checkpoints written, and a resume from one of them ends with the same weights."""
    from safetensors.torch import load_file

    records = [chat_record(f"Question {i} about plan {i % 3}?", f"Plan {i % 3} answer number {i}.") for i in range(15)]
    data = write_jsonl(tmp_path / "train.jsonl", records)
    # 15 rows in batches of 4: the last batch has 3, so one rank's share of a micro-batch is uneven
    body = (
        f"model: {tiny_model_dir}\nadapter: {adapter}\noutput_dir: {{out}}\ndata:\n  train: {data}\n"
        "  validation_fraction: 0.2\nlora:\n  dropout: 0\ntrain:\n  max_steps: 6\n  batch_size: 3\n  grad_accum: 2\n"
        f"  learning_rate: 5.0e-3\n  precision: fp32\n  eval_every: 3\n  checkpoint_every: 3\n  sharding: {sharding}\n"
    )
    one = _launch(tmp_path, "one", body, 1, 0)
    two = _launch(tmp_path, "two", body, 2, 29431)
    losses = {run: [m.get("loss", m.get("val_loss")) for m in read_metrics(run)] for run in (one, two)}
    assert len(losses[one]) == len(losses[two]) == 8
    for a, b in zip(losses[one], losses[two]):
        assert abs(a - b) < 1e-4 * max(1.0, abs(a)), losses
    weights = {"lora": ("adapter", "adapter_model.safetensors"), "full": ("model", "model.safetensors")}[adapter]
    (two / "buxiban-run.json").write_text((two / "buxiban-run.json").read_text().replace('"complete"', '"running"'))
    resumed = _launch(tmp_path, "two", body, 2, 29432, "--resume")  # from the step-3 checkpoint
    assert "checkpoints" in str(list((resumed / "checkpoints").iterdir()))
    final_one, final_two = (load_file(str(run.joinpath(*weights))) for run in (one, resumed))
    assert final_one.keys() == final_two.keys()
    for key, tensor in final_one.items():
        assert torch.allclose(tensor, final_two[key], atol=1e-5), key


def test_a_launched_process_ends_without_the_interpreter_teardown(tmp_path):
    """Gloo's threads sometimes abort a finished rank during teardown (cli.end_launched_process): a
    process launched as one of N must leave through os._exit with the command's exit code, after its
    output is flushed, so no teardown code (atexit here) runs."""
    data = write_jsonl(tmp_path / "train.jsonl", [chat_record("Hello?", "Hi.")])
    probe = (
        "import atexit, sys; atexit.register(lambda: print('teardown ran')); "
        f"sys.argv = ['buxiban', 'data', 'check', {str(data)!r}]; from buxiban.cli import main; main()"
    )
    for world_size, teardown in (("2", False), ("1", True)):
        done = subprocess.run(
            [sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "WORLD_SIZE": world_size, "BUXIBAN_ALLOCATOR": "system"},
        )
        assert done.returncode == 0, done.stderr
        assert "1 examples" in done.stdout, done.stdout  # flushed before os._exit
        assert ("teardown ran" in done.stdout) is teardown, (world_size, done.stdout)
