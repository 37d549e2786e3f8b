import subprocess
import sys
import time

import pytest

from buxiban.config import load_config
from buxiban.errors import ConfigError


def test_defaults_and_overrides():
    config = load_config(
        None, ["data.train=a.jsonl", "train.learning_rate=5e-4", "lora.target_modules=[q_proj, v_proj]"]
    )
    assert config.data.train == "a.jsonl"
    assert config.train.learning_rate == 5e-4
    assert config.lora.target_modules == ["q_proj", "v_proj"]


def test_every_problem_is_reported_at_once(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "data:\n  train: t.jsonl\ntrain:\n  learnig_rate: 1e-4\n  batch_size: eight\nlora:\n  r: 0\nepochs: 3\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, ["train.precision=bf61"])
    messages = [str(p) for p in caught.value.problems]
    assert len(messages) == 5, messages
    text = "\n".join(messages)
    assert "unknown key 'train.learnig_rate'" in text and "did you mean 'train.learning_rate'?" in text
    assert "'train.batch_size' must be an integer or auto, got 'eight'" in text
    assert "'lora.r' is 0" in text
    assert "unknown key 'epochs'" in text and "did you mean 'train.epochs'?" in text
    assert "did you mean 'bf16'?" in text


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("data:\n  train: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert f"{path}:" in str(caught.value.problems[0])


def test_misspelled_key_fails_fast_in_a_fresh_process_and_trains_nothing(tmp_path):
    path = tmp_path / "run.yaml"
    out = tmp_path / "run"
    path.write_text(f"data:\n  train: t.jsonl\noutput_dir: {out}\ntrain:\n  epocs: 2\n")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "buxiban.cli", "train", str(path)], capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    assert done.returncode == 1
    assert "did you mean 'train.epochs'?" in done.stderr
    assert "train.learning_rate" in done.stderr  # the valid keys are listed
    assert elapsed < 5, f"config error took {elapsed:.1f}s"
    assert not out.exists()


def test_gradient_checkpointing_takes_true_false_or_selective():
    assert (
        load_config(None, ["data.train=a.jsonl", "train.gradient_checkpointing=selective"]).train.gradient_checkpointing
        == "selective"
    )
    assert (
        load_config(None, ["data.train=a.jsonl", "train.gradient_checkpointing=true"]).train.gradient_checkpointing
        is True
    )
    with pytest.raises(ConfigError, match="use true, false or selective"):
        load_config(None, ["data.train=a.jsonl", "train.gradient_checkpointing=some"])


def test_micro_batch_tokens_cannot_split_a_sharded_model():
    with pytest.raises(ConfigError, match="train.micro_batch_tokens=0 with train.sharding"):
        load_config(None, ["data.train=a.jsonl", "train.micro_batch_tokens=512", "train.sharding=fsdp"])
    with pytest.raises(ConfigError, match="positive token count"):
        load_config(None, ["data.train=a.jsonl", "train.micro_batch_tokens=-1"])
