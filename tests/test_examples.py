"""The shipped example data: valid, deterministic, big enough, and honestly held out."""

import json
import runpy
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from buxiban.config import load_config
from buxiban.data.records import read_chat_jsonl

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# each example with the words its two-question conversations put before the second question
FOLLOW_UP = {"yunshan": ("and ",), "hefeng": ("另外，", "還有，")}
per_example = pytest.mark.parametrize("DATA", [EXAMPLES / name for name in FOLLOW_UP], ids=list(FOLLOW_UP))


@per_example
def test_example_files_are_valid_and_large_enough(DATA):
    train, problems = read_chat_jsonl(DATA / "train.jsonl")
    assert problems == [] and len(train) >= 300
    test, problems = read_chat_jsonl(DATA / "test.jsonl")
    assert problems == [] and len(test) >= 60


@per_example
def test_test_questions_never_appear_in_training(DATA):
    train, _ = read_chat_jsonl(DATA / "train.jsonl")
    test, _ = read_chat_jsonl(DATA / "test.jsonl")
    seen = {m["content"].lower() for c in train for m in c.messages if m["role"] == "user"}
    for prefix in FOLLOW_UP[DATA.name]:
        seen |= {text.removeprefix(prefix) for text in seen}
    asked = [c.messages[-2]["content"].lower() for c in test]
    assert not [q for q in asked if q in seen]


@per_example
def test_preference_pairs_have_both_sides(DATA):
    lines = (DATA / "preferences.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) >= 50
    for line in lines:
        pair = json.loads(line)
        assert pair["input"]["messages"][-1]["role"] == "user"
        assert pair["preferred_output"][0]["content"] != pair["non_preferred_output"][0]["content"]


@per_example
def test_generator_is_deterministic(DATA, tmp_path, monkeypatch):
    copy = tmp_path / DATA.name
    shutil.copytree(DATA, copy, ignore=shutil.ignore_patterns("*.jsonl", "__pycache__"))
    monkeypatch.syspath_prepend(str(copy))
    monkeypatch.setattr(sys, "argv", ["generate.py"])
    sys.modules.pop("facts", None)
    runpy.run_path(str(copy / "generate.py"), run_name="__main__")
    for name in ("train.jsonl", "test.jsonl", "preferences.jsonl"):
        assert (copy / name).read_bytes() == (DATA / name).read_bytes(), f"{name} differs from the generator's output"


def test_every_example_config_is_valid(monkeypatch):
    monkeypatch.chdir(EXAMPLES.parent)
    configs = sorted(EXAMPLES.rglob("*.yaml"))
    assert configs
    for path in configs:
        config = load_config(path)
        assert Path(config.data.train).is_file(), path
        assert yaml.safe_load(path.read_text())  # not empty
