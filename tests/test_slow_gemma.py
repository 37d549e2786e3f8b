"""End to end on the real Gemma 3 270M base model (`model: gemma3-270m`, from the PyPI chunk
packages), which has no chat template of its own: no hand edits, and the fine-tuned answers end at
<end_of_turn> instead of running to the token limit."""

import json
from pathlib import Path

import pytest

from buxiban.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

pytestmark = pytest.mark.slow


def test_gemma3_base_checks_trains_evaluates_and_chats_with_its_family_template(tmp_path, capsys):
    train = str(EXAMPLES / "yunshan" / "train.jsonl")
    assert main(["data", "check", train, "--model", "gemma3-270m"]) == 0
    out = capsys.readouterr().out
    assert "<start_of_turn>model\n⟦" in out and "<end_of_turn>⟧" in out  # the family format, end of turn trained
    assert "will not learn to stop" not in out

    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                str(EXAMPLES / "yunshan" / "lora.yaml"),
                "model=gemma3-270m",
                f"output_dir={run}",
                "train.max_steps=20",
                "--quiet",
            ]
        )
        == 0
    )  # 20 steps of 8: enough to learn where a turn ends
    manifest = json.loads((run / "buxiban-run.json").read_text())
    assert manifest["template"]["name"] == "gemma" and manifest["template"]["origin"] == "family"
    saved = json.loads((run / "adapter" / "tokenizer_config.json").read_text())
    chat_template = saved.get("chat_template") or (run / "adapter" / "chat_template.jinja").read_text()
    assert chat_template == manifest["template"]["text"]  # the adapter carries the template it was trained with

    assert (
        main(
            [
                "eval",
                str(run),
                "--test",
                str(EXAMPLES / "yunshan" / "test.jsonl"),
                "--limit",
                "6",
                "--shots",
                "0",
                "--no-forgetting",
            ]
        )
        == 0
    )
    report = json.loads((run / "eval" / "eval.json").read_text())
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(run / "adapter"))
    lengths = [
        len(tokenizer(e["fine-tuned"]["answer"], add_special_tokens=False)["input_ids"]) for e in report["examples"]
    ]
    assert max(lengths) < report["max_new_tokens"] - 8, lengths  # each answer stopped on its own
    assert report["summary"]["fine-tuned"]["token_f1"] > report["summary"]["base"]["token_f1"]

    capsys.readouterr()
    assert main(["chat", "--run", str(run), "-m", "How much is the City plan?", "--max-new-tokens", "60"]) == 0
    answer = capsys.readouterr().out.strip()
    assert answer and len(tokenizer(answer)["input_ids"]) < 50


def test_gemma3_gguf_export_matches_the_file_llama_cpp_wrote(tmp_path):
    """The published Gemma 3 270M GGUF was written by llama.cpp's converter; buxiban's export of the
    same weights must carry the same tensor names and shapes, the same norms (stored as 1 + w), the same
    hyperparameters and the same vocabulary."""
    import gguf
    import numpy
    import torch

    from buxiban.adapters.gguf_export import write_gguf
    from buxiban.models.load import gemma3_gguf_path, load_model, load_tokenizer, resolve

    source = resolve("gemma3-270m")
    written = tmp_path / "gemma.gguf"
    write_gguf(load_model(source, dtype=torch.float32), load_tokenizer(source), written, tensor_type="f32")
    theirs, ours = gguf.GGUFReader(str(gemma3_gguf_path())), gguf.GGUFReader(str(written))
    for key, field in theirs.fields.items():
        if key.startswith("gemma3.") or key in ("general.architecture", "tokenizer.ggml.model", "tokenizer.ggml.pre"):
            assert ours.fields[key].contents() == field.contents(), key
    for key in ("bos_token_id", "eos_token_id", "unknown_token_id", "padding_token_id", "add_space_prefix"):
        key = f"tokenizer.ggml.{key}"
        assert ours.fields[key].contents() == theirs.fields[key].contents(), key
    # 30 whitespace runs are user-defined tokens there and "▁▁…" pieces in the converted tokenizer
    their_tokens, our_tokens = (r.fields["tokenizer.ggml.tokens"].contents() for r in (theirs, ours))
    assert sum(a != b for a, b in zip(their_tokens, our_tokens)) <= 30 and len(their_tokens) == len(our_tokens)
    their_tensors, our_tensors = ({t.name: t for t in r.tensors} for r in (theirs, ours))
    assert set(their_tensors) == set(our_tensors)
    for name, tensor in their_tensors.items():
        assert list(our_tensors[name].shape) == list(tensor.shape), name
        if name.endswith("norm.weight"):  # float32 in both files: exact
            numpy.testing.assert_array_equal(numpy.asarray(our_tensors[name].data), numpy.asarray(tensor.data))
