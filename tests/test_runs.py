"""The run directory's typed manifest: older runs are upgraded, newer keys survive, damage is an error."""

import json

import pytest

from buxiban.errors import RunDirError
from buxiban.runs import MANIFEST, Manifest, read_manifest, write_manifest
from buxiban.runs.checkpoints import COMPLETE, finished_checkpoints

FORMAT_1 = {
    "format": 1,
    "status": "complete",
    "method": "sft",
    "adapter": "lora",
    "created": "2026-11-01T10:00:00+0000",
    "base_model": {
        "spec": "embedded",
        "kind": "embedded",
        "path": "/cache/x",
        "name": "SmolLM2-135M-Instruct",
        "fingerprint": "sha256:abc",
    },
    "trust_remote_code": False,
    "data_hashes": {"data.train": "sha256:d"},
    "parameters": {"trainable": 1, "total": 9},
    "data": {"train": {"path": "train.jsonl", "examples": 4}},
    "default_system_prompt": "Be brief.",
    "steps": 12,
    "weights": "adapter",
    "final_train_loss": 0.5,
}


def test_a_format_1_run_reads_as_typed_attributes(tmp_path):
    (tmp_path / MANIFEST).write_text(json.dumps(FORMAT_1))
    manifest = read_manifest(tmp_path)
    assert manifest.complete and manifest.base_model.fingerprint == "sha256:abc"
    assert manifest.data_path("train") == "train.jsonl" and manifest.data_path("validation") is None
    assert manifest.steps == 12 and manifest.best_step is None and manifest.format == 2


def test_a_manifest_missing_most_keys_gets_the_defaults_every_reader_assumed(tmp_path):
    (tmp_path / MANIFEST).write_text(json.dumps({"status": "running"}))
    manifest = read_manifest(tmp_path)
    assert (manifest.method, manifest.adapter, manifest.weights, manifest.base_model.name) == (
        "sft",
        "lora",
        "adapter",
        "?",
    )
    assert not manifest.complete


def test_keys_from_a_newer_buxiban_are_kept_through_a_rewrite(tmp_path):
    (tmp_path / MANIFEST).write_text(json.dumps({**FORMAT_1, "future_field": {"x": 1}}))
    manifest = read_manifest(tmp_path)
    manifest.status = "failed"
    write_manifest(tmp_path, manifest)
    again = json.loads((tmp_path / MANIFEST).read_text())
    assert (
        again["future_field"] == {"x": 1}
        and again["status"] == "failed"
        and again["base_model"]["name"] == "SmolLM2-135M-Instruct"
    )
    assert Manifest.from_dict(again) == read_manifest(tmp_path)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"base_model": 7, "status": "complete"}'])
def test_a_damaged_manifest_is_a_run_dir_error_not_a_crash(tmp_path, text):
    (tmp_path / MANIFEST).write_text(text)
    if text.startswith('{"base_model"'):
        assert read_manifest(tmp_path).base_model.name == "?"
        return
    with pytest.raises(RunDirError, match="damaged|JSON object"):
        read_manifest(tmp_path)


def test_listing_checkpoints_never_touches_an_unfinished_one(tmp_path):
    root = tmp_path / "checkpoints"
    for name, complete in [("step-00000007", True), ("step-00000014.tmp-ab12", True), ("step-00000021", False)]:
        (root / name).mkdir(parents=True)
        if complete:
            (root / name / COMPLETE).write_text("ok\n")
    assert finished_checkpoints(tmp_path) == [(7, root / "step-00000007")]
    assert sorted(p.name for p in root.iterdir()) == ["step-00000007", "step-00000014.tmp-ab12", "step-00000021"]


def test_trust_remote_code_comes_from_the_command_never_from_the_run_directory(
    tmp_path, tiny_model_dir, tiny_chat_file, capsys
):
    """A crafted run directory whose manifest says trust_remote_code cannot make buxiban run a model
    repository's code: every command that loads a run refuses unless its own flag says so."""
    from buxiban.cli import main
    from buxiban.runs.load import load_trained

    from conftest import train_tiny

    run = train_tiny(tiny_model_dir, tiny_chat_file, tmp_path / "run", steps=2)
    manifest = read_manifest(run)
    manifest.trust_remote_code = True
    write_manifest(run, manifest)
    with pytest.raises(RunDirError, match="with trust_remote_code.*pass --trust-remote-code"):
        load_trained(run)
    test = str(tiny_chat_file)
    assert main(["eval", str(run), "--test", test, "--no-forgetting", "--shots", "0"]) != 0
    assert not (run / "eval").exists()
    assert main(["chat", "--run", str(run), "-m", "hi"]) != 0
    assert main(["adapters", "merge", str(run), "--out", str(tmp_path / "merged")]) != 0
    assert "--trust-remote-code" in capsys.readouterr().err
    assert not (tmp_path / "merged").exists()
    # the user's own flag: the same run loads (the tiny model has no remote code to run)
    assert load_trained(run, trust_remote_code=True)[2].trust_remote_code
    assert main(["adapters", "merge", str(run), "--out", str(tmp_path / "merged"), "--trust-remote-code"]) == 0
