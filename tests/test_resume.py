"""Checkpoints survive kill -9, and a resumed run ends bit for bit where an uninterrupted one does."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from buxiban.config import load_config
from buxiban.errors import RunDirError
from buxiban.runs import read_manifest, read_metrics
from buxiban.runs.checkpoints import COMPLETE
from buxiban.train.checkpoint import complete_checkpoints
from buxiban.train.sft import train_sft

from conftest import chat_record, write_jsonl

STEPS = 120


def write_config(tmp_path, tiny_model_dir, out):
    records = [
        chat_record(
            f"Question {i}: what does plan {i} include in district {i % 5}?",
            f"Plan {i} includes {i % 3 + 1} bikes and {i * 7 % 11} battery swaps.",
        )
        for i in range(24)
    ]
    data = write_jsonl(tmp_path / "train.jsonl", records)
    config = tmp_path / f"{out.name}.yaml"
    config.write_text(
        f"model: {tiny_model_dir}\noutput_dir: {out}\ndata:\n  train: {data}\n  validation_fraction: 0.2\n"
        f"lora:\n  r: 8\n  dropout: 0.1\ntrain:\n  max_steps: {STEPS}\n  batch_size: 4\n  grad_accum: 2\n"
        "  learning_rate: 3.0e-3\n  precision: fp32\n  threads: 1\n  checkpoint_every: 7\n  keep_checkpoints: 2\n"
        "  eval_every: 10\n"
    )
    return config


def launch(config, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "buxiban.cli", "train", str(config), "--quiet", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def last_step(out) -> int:
    try:
        lines = (out / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return 0
    steps = [int(line.split('"step": ')[1].split(",")[0]) for line in lines if line.startswith('{"step"')]
    return max(steps, default=0)


@pytest.fixture(scope="module")
def reference_out(tmp_path_factory, tiny_model_dir):
    """The uninterrupted run every killed-and-resumed one must match bit for bit."""
    tmp_path = tmp_path_factory.mktemp("reference")
    out = tmp_path / "reference"
    reference = launch(write_config(tmp_path, tiny_model_dir, out))
    assert reference.wait(timeout=300) == 0, reference.stderr.read()
    return out


def assert_same_run(reference_out, resumed_out, when: str) -> None:
    expected = load_file(str(reference_out / "adapter" / "adapter_model.safetensors"))
    actual = load_file(str(resumed_out / "adapter" / "adapter_model.safetensors"))
    assert expected.keys() == actual.keys()
    for name in expected:
        assert expected[name].equal(actual[name]), f"{name} differs after resume ({when})"
    reference_losses = [(m["step"], m["loss"]) for m in read_metrics(reference_out) if "loss" in m]
    resumed_losses = [(m["step"], m["loss"]) for m in read_metrics(resumed_out) if "loss" in m]
    assert resumed_losses == reference_losses  # the metrics log has each step once, with the same numbers
    assert read_manifest(resumed_out).status == "complete"


@pytest.mark.integration
def test_kill_9_then_resume_is_bit_identical(tmp_path, tiny_model_dir, reference_out):
    killed_out = tmp_path / "killed"
    kill_at = random.Random(os.getpid()).randint(20, STEPS - 20)
    config = write_config(tmp_path, tiny_model_dir, killed_out)
    victim = launch(config)
    deadline = time.time() + 300
    while last_step(killed_out) < kill_at and victim.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    assert victim.poll() is None, "training finished before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert read_manifest(killed_out).status == "running"  # a kill -9 leaves no chance to say anything
    assert complete_checkpoints(killed_out), "no checkpoint was written before the kill"

    resumed = launch(config, "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert "resuming from" in resumed.stdout.read()
    assert_same_run(reference_out, killed_out, f"killed at step {kill_at}")


# The checkpoint of step 14 (the second) stops between writing its files and its completion marker
# and announces it; `main` with arguments never re-executes itself, so the patch stays in force.
PAUSED_IN_CHECKPOINT = """
import pathlib, sys, time
import buxiban.train.checkpoint as checkpoint
real_fsync = checkpoint._fsync_file
def paused(path):
    if path.parent.name.startswith("step-00000014.tmp-"):
        pathlib.Path(sys.argv[2]).write_text(str(path.parent))
        time.sleep(600)
    real_fsync(path)
checkpoint._fsync_file = paused
from buxiban.cli import main
sys.exit(main(["train", sys.argv[1], "--quiet"]))
"""


@pytest.mark.integration
def test_kill_9_while_writing_a_checkpoint_resumes_from_the_one_before(tmp_path, tiny_model_dir, reference_out):
    killed_out = tmp_path / "killed"
    config = write_config(tmp_path, tiny_model_dir, killed_out)
    mark = tmp_path / "writing"
    victim = subprocess.Popen(
        [sys.executable, "-c", PAUSED_IN_CHECKPOINT, str(config), str(mark)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while not mark.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert victim.poll() is None, victim.stderr.read()
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    half_written = Path(mark.read_text())
    assert (half_written / "trainable.safetensors").is_file() and not (half_written / COMPLETE).exists()
    finished = [p.name for p in (killed_out / "checkpoints").iterdir() if (p / COMPLETE).is_file()]
    assert finished == ["step-00000007"]  # read, not complete_checkpoints(): that would clean up for the resume

    resumed = launch(config, "--resume")  # no cleanup by hand
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert "resuming from" in (said := resumed.stdout.read()) and "step-00000007" in said, said
    assert not half_written.exists()
    assert_same_run(reference_out, killed_out, "killed while writing the step-14 checkpoint")


def tiny_run(tiny_model_dir, tiny_chat_file, out, *extra):
    return load_config(
        None,
        [
            f"model={tiny_model_dir}",
            f"data.train={tiny_chat_file}",
            f"output_dir={out}",
            "data.validation_fraction=0",
            "train.max_steps=6",
            "train.batch_size=2",
            "train.checkpoint_every=2",
            "train.keep_checkpoints=5",
            "train.precision=fp32",
            *extra,
        ],
    )


def crashed_run(tiny_model_dir, tiny_chat_file, out):
    """A run stopped after its step-4 checkpoint, as if the process had died there."""
    config = tiny_run(tiny_model_dir, tiny_chat_file, out, "train.max_steps=5")
    train_sft(config, progress=False, log=lambda _: None)
    (out / "buxiban-run.json").write_text((out / "buxiban-run.json").read_text().replace('"complete"', '"running"'))
    return tiny_run(tiny_model_dir, tiny_chat_file, out, "train.max_steps=5")


def test_a_checkpoint_cut_short_is_ignored_and_cleaned_up(tmp_path, tiny_model_dir, tiny_chat_file):
    out = tmp_path / "run"
    config = crashed_run(tiny_model_dir, tiny_chat_file, out)
    root = out / "checkpoints"
    assert [p.name for p in complete_checkpoints(out)] == ["step-00000002", "step-00000004"]
    (root / "step-00000005.tmp-x1y2").mkdir()  # killed while writing
    (root / "step-00000005.tmp-x1y2" / "trainable.safetensors").write_bytes(b"\0" * 10)
    (root / "step-00000006").mkdir()  # renamed but no completion marker (a torn rename on a bad disk)
    said = []
    train_sft(config, progress=False, log=said.append, resume="auto")
    assert any("resuming from" in line and "step-00000004" in line for line in said)
    assert sorted(p.name for p in root.iterdir()) == ["step-00000002", "step-00000004"]


def test_resuming_with_a_changed_config_is_refused_with_a_diff(tmp_path, tiny_model_dir, tiny_chat_file):
    out = tmp_path / "run"
    crashed_run(tiny_model_dir, tiny_chat_file, out)
    changed = tiny_run(tiny_model_dir, tiny_chat_file, out, "train.max_steps=5", "train.learning_rate=5e-4")
    with pytest.raises(RunDirError) as caught:
        train_sft(changed, progress=False, log=lambda _: None, resume="auto")
    assert "train.learning_rate: 'auto' → 0.0005" in str(caught.value) and "--force" in str(caught.value)
    said = []
    train_sft(changed, progress=False, log=said.append, resume="auto", force=True)
    assert any("resuming with changes" in line for line in said)


def test_resuming_with_changed_data_is_refused(tmp_path, tiny_model_dir, tiny_chat_file):
    out = tmp_path / "run"
    config = crashed_run(tiny_model_dir, tiny_chat_file, out)
    with open(tiny_chat_file, "a", encoding="utf-8") as handle:
        handle.write('{"messages": [{"role": "user", "content": "New?"}, {"role": "assistant", "content": "Yes."}]}\n')
    with pytest.raises(RunDirError, match="data.train: the file's content changed"):
        train_sft(config, progress=False, log=lambda _: None, resume="auto")


def test_early_stopping_keeps_the_best_weights(tmp_path, tiny_model_dir, tiny_chat_file):
    contradicting = write_jsonl(
        tmp_path / "val.jsonl",
        [
            chat_record("How much is the City plan?", "Nobody knows, ask again tomorrow please."),
            chat_record("Is there a deposit?", "Bananas are yellow and curved."),
        ],
    )
    out = tmp_path / "run"
    said = []
    result = train_sft(
        tiny_run(
            tiny_model_dir,
            tiny_chat_file,
            out,
            f"data.validation={contradicting}",
            "train.max_steps=60",
            "train.eval_every=2",
            "train.learning_rate=1e-2",
            "train.early_stopping_patience=2",
            "train.checkpoint_every=100",
        ),
        progress=False,
        log=said.append,
    )
    manifest = read_manifest(out)
    assert result.steps < 60 and any("early stopping" in line for line in said)
    assert manifest.best_step < result.steps
    val = {m["step"]: m["val_loss"] for m in read_metrics(out) if "val_loss" in m}
    assert manifest.best_val_loss == min(val.values())


def test_resume_never_deletes_a_finished_run(tmp_path, tiny_model_dir, tiny_chat_file):
    out = tmp_path / "run"
    config = tiny_run(tiny_model_dir, tiny_chat_file, out, "train.max_steps=1")
    train_sft(config, progress=False, log=lambda _: None)
    with pytest.raises(RunDirError, match="holds a finished run and no checkpoint"):
        train_sft(config, progress=False, log=lambda _: None, resume="auto")
    assert read_manifest(out).status == "complete" and (out / "adapter").is_dir()


class Canary:
    """Unpickling this runs code: it creates the file named. A safe load must never do that."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("planted", ["optimizer.pt", "rng.pt"])
def test_a_checkpoint_carrying_a_pickle_payload_is_refused_without_running_it(
    tmp_path, tiny_model_dir, tiny_chat_file, planted
):
    import torch

    out = tmp_path / "run"
    config = crashed_run(tiny_model_dir, tiny_chat_file, out)
    canary = tmp_path / "canary-ran"
    torch.save({"state": Canary(canary)}, out / "checkpoints" / "step-00000004" / planted)
    with pytest.raises(RunDirError, match=f"{planted} holds something other than tensors and numbers"):
        train_sft(config, progress=False, log=lambda _: None, resume="auto")
    assert not canary.exists()
    assert (out / "checkpoints" / "step-00000002").is_dir()  # the other checkpoints are left as they were


def test_a_checkpoint_written_before_tensor_rng_states_still_resumes(tmp_path):
    """rng.pt once held NumPy's own state tuple (an ndarray inside): still read, under a safe load."""
    import random

    import numpy
    import torch

    from buxiban.train.checkpoint import restore_rng, rng_state, safe_load

    numpy.random.seed(7)
    old = {"python": random.getstate(), "numpy": numpy.random.get_state(), "torch": torch.get_rng_state()}
    torch.save([old], tmp_path / "rng.pt")
    expected = numpy.random.rand(3)
    restore_rng(safe_load(tmp_path / "rng.pt")[0])
    assert numpy.allclose(numpy.random.rand(3), expected)
    torch.save([rng_state()], tmp_path / "new.pt")  # the new format round-trips too
    expected = numpy.random.rand(3)
    restore_rng(safe_load(tmp_path / "new.pt")[0])
    assert numpy.allclose(numpy.random.rand(3), expected)
