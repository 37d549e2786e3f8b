"""`buxiban adapters`: the registry through the CLI, and merge/export whose outputs compute exactly what
the trained run computes (merged HF dir, PEFT dir for vLLM, GGUF read back by transformers)."""

import json
import shutil

import pytest
import torch

from buxiban.cli import main
from buxiban.config import load_config
from buxiban.runs import MANIFEST
from buxiban.runs.load import load_trained
from buxiban.train.sft import train_sft

from conftest import CHATML, chat_record, write_jsonl

RECORDS = [
    chat_record(f"Question {i}: how much is plan {i}?", f"Plan {i} costs NT${100 * i} per month.") for i in range(8)
]
PROMPT = "<|im_start|>user\nHow much is the City plan? 你好<|im_end|>\n<|im_start|>assistant\n"
METHODS = {
    "lora": ["adapter=lora"],
    "dora": ["adapter=dora"],
    # train_head on a model with tied embeddings: the trained head is the embedding matrix
    "freeze": ["adapter=freeze", "freeze.layers=1", "freeze.train_head=true"],
    "full": ["adapter=full"],
}


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    """One short run per method, trained at a high rate so every method moves the logits."""
    root = tmp_path_factory.mktemp("adapter-runs")
    data = write_jsonl(root / "train.jsonl", RECORDS)
    made = {}
    for method, overrides in METHODS.items():
        config = load_config(
            None,
            [
                f"model={tiny_model_dir}",
                f"data.train={data}",
                f"output_dir={root / method}",
                "data.validation_fraction=0",
                "train.max_steps=3",
                "train.batch_size=4",
                "train.learning_rate=2e-2",
                "train.warmup_ratio=0",
                "train.precision=fp32",
                "lora.dropout=0",
                *overrides,
            ],
        )
        train_sft(config, progress=False, log=lambda _: None)
        made[method] = root / method
    return made


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("BUXIBAN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def logits(model, tokenizer, text=PROMPT):
    ids = torch.tensor([tokenizer.encode(text, add_special_tokens=False)])
    with torch.no_grad():
        return model(input_ids=ids).logits[0]


def base_logits(tiny_model_dir, tokenizer):
    from transformers import AutoModelForCausalLM

    return logits(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)), tokenizer)


@pytest.mark.parametrize("method", list(METHODS))
def test_merged_model_computes_what_the_trained_run_computes(runs, tiny_model_dir, tmp_path, method):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "merged"
    assert main(["adapters", "merge", str(runs[method]), "--out", str(out)]) == 0
    trained, tokenizer, _ = load_trained(runs[method])
    expected = logits(trained, tokenizer)
    assert (expected - base_logits(tiny_model_dir, tokenizer)).abs().max() > 1e-2  # training really moved it

    merged = AutoModelForCausalLM.from_pretrained(str(out))  # plain transformers: no PEFT, no buxiban
    assert not hasattr(merged, "peft_config") and merged.dtype == torch.float32  # the base's own dtype
    assert torch.allclose(logits(merged, tokenizer), expected, atol=1e-4)
    assert merged.config.tie_word_embeddings and merged.lm_head.weight is merged.model.embed_tokens.weight
    with safe_open(str(out / "model.safetensors"), "pt") as weights:
        assert "lm_head.weight" not in weights.keys() and not any("lora" in k for k in weights.keys())
    assert not list(out.glob("*.bin"))
    reloaded = AutoTokenizer.from_pretrained(str(out))
    assert reloaded.chat_template == CHATML and reloaded.encode(PROMPT) == tokenizer.encode(PROMPT)
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == tokenizer.eos_token_id


def test_merge_can_cast_and_refuses_to_overwrite_what_it_did_not_write(runs, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "bf16"
    assert main(["adapters", "merge", str(runs["lora"]), "--out", str(out), "--dtype", "bfloat16"]) == 0
    assert AutoModelForCausalLM.from_pretrained(str(out)).dtype == torch.bfloat16
    assert main(["adapters", "merge", str(runs["lora"]), "--out", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main(["adapters", "merge", str(runs["lora"]), "--out", str(out), "--overwrite"]) == 0

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    assert main(["adapters", "merge", str(runs["lora"]), "--out", str(precious), "--overwrite"]) == 1
    assert "not an earlier buxiban export" in capsys.readouterr().err
    assert (precious / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("gguf_type,tolerance", [("f32", 1e-4), ("f16", 2e-2), ("bf16", 1.5e-1)])
def test_gguf_reloads_in_transformers_with_the_same_logits(runs, tmp_path, gguf_type, tolerance):
    import gguf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "model.gguf"
    assert (
        main(["adapters", "export", str(runs["lora"]), "--format", "gguf", "--gguf-type", gguf_type, "--out", str(out)])
        == 0
    )
    trained, tokenizer, _ = load_trained(runs["lora"])
    expected = logits(trained, tokenizer)

    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=out.name)
    difference = (logits(reloaded, tokenizer) - expected).abs().max().item()
    assert difference < tolerance, difference
    gguf_tokenizer = AutoTokenizer.from_pretrained(str(tmp_path), gguf_file=out.name)
    assert gguf_tokenizer.encode(PROMPT, add_special_tokens=False) == tokenizer.encode(PROMPT, add_special_tokens=False)
    assert gguf_tokenizer.chat_template == CHATML
    assert (gguf_tokenizer.eos_token, gguf_tokenizer.pad_token) == (tokenizer.eos_token, tokenizer.pad_token)

    reader = gguf.GGUFReader(str(out))
    assert reader.fields["general.architecture"].contents() == "llama"
    assert reader.fields["tokenizer.ggml.pre"].contents() == "gpt-2"
    names = {t.name: t.tensor_type.name for t in reader.tensors}
    assert "output.weight" not in names  # tied: llama.cpp reuses token_embd
    assert names["blk.0.attn_norm.weight"] == "F32" and names["blk.1.attn_q.weight"] == gguf_type.upper()


def test_gguf_writes_an_untied_output_head(tiny_model_dir, tiny_tokenizer, tmp_path):
    """A model whose head is its own matrix gets an output.weight that transformers reads back."""
    import gguf
    from transformers import AutoConfig, AutoModelForCausalLM

    from buxiban.adapters.gguf_export import write_gguf

    config = AutoConfig.from_pretrained(str(tiny_model_dir), tie_word_embeddings=False)
    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_config(config).eval()
    assert model.lm_head.weight is not model.model.embed_tokens.weight
    checked = write_gguf(model, tiny_tokenizer, tmp_path / "untied.gguf", tensor_type="f32", name="untied")
    assert checked["tensors"] == len(model.state_dict())  # every tensor, the head included
    assert "output.weight" in {t.name for t in gguf.GGUFReader(str(tmp_path / "untied.gguf")).tensors}
    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file="untied.gguf")
    assert not reloaded.config.tie_word_embeddings
    assert torch.allclose(logits(reloaded, tiny_tokenizer), logits(model, tiny_tokenizer), atol=1e-4)


def test_gguf_refuses_other_architectures(runs, tmp_path, monkeypatch):
    from buxiban.adapters import export
    from buxiban.adapters.merge import resolve_run
    from buxiban.errors import AdapterError

    monkeypatch.setattr(export, "base_config", lambda ref: {"model_type": "gpt2"})
    with pytest.raises(AdapterError, match="GGUF export supports llama, mistral.*not 'gpt2'.*--format hf"):
        export.export(resolve_run(str(runs["lora"])), "gguf", tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


def test_peft_export_loads_with_peft_and_points_at_the_base(runs, tiny_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "peft"
    assert main(["adapters", "export", str(runs["lora"]), "--format", "peft", "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} >= {"adapter_config.json", "adapter_model.safetensors"}
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_model_dir.resolve()) and not config["use_dora"]

    trained, tokenizer, _ = load_trained(runs["lora"])
    loaded = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(config["base_model_name_or_path"]), str(out)
    )
    assert torch.allclose(logits(loaded, tokenizer), logits(trained, tokenizer), atol=1e-5)


@pytest.mark.parametrize("method", ["dora", "freeze", "full"])
def test_peft_export_refuses_what_vllm_cannot_serve(runs, tmp_path, capsys, method):
    assert main(["adapters", "export", str(runs[method]), "--format", "peft", "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "LoRA adapters only" in err and "--format hf" in err
    assert not (tmp_path / "x").exists()


def test_registry_add_list_show_rm_through_the_cli(runs, home, tmp_path, capsys):
    run = tmp_path / "run-copy"
    shutil.copytree(runs["lora"], run)
    (run / "eval").mkdir()
    (run / "eval" / "eval.json").write_text(
        json.dumps({"summary": {"base": {"n": 4, "exact_match": 0.25}, "fine-tuned": {"n": 4, "exact_match": 0.75}}})
    )

    assert main(["adapters", "add", "support-v1", str(run)]) == 0
    assert main(["adapters", "add", "support-v1", str(run)]) == 1  # taken
    assert "already registered" in capsys.readouterr().err
    assert main(["adapters", "list"]) == 0
    header, row = capsys.readouterr().out.strip().splitlines()
    assert header.split() == ["NAME", "BASE", "MODEL", "METHOD", "WEIGHTS", "RUN", "DIR", "STATUS"]
    assert row.split() == ["support-v1", "tiny-model0", "sft/lora", "adapter", str(run.resolve()), "complete"]

    manifest = json.loads((run / MANIFEST).read_text())
    assert main(["adapters", "show", "support-v1"]) == 0
    shown = capsys.readouterr().out
    assert manifest["base_model"]["fingerprint"] in shown and manifest["data_hashes"]["data.train"] in shown
    assert f"final_train_loss: {manifest['final_train_loss']}" in shown and "lora.r: 16" in shown
    assert "fine-tuned: n 4, exact_match 0.750" in shown

    assert main(["adapters", "show", "support-v1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["eval"]["fine-tuned"]["exact_match"] == 0.75

    assert main(["chat", "--adapter", "support-v1", "-m", "Is there a deposit?", "--max-new-tokens", "4"]) == 0
    capsys.readouterr()
    assert main(["adapters", "rm", "support-v1"]) == 0
    assert "files stay" in capsys.readouterr().out and (run / MANIFEST).is_file()
    assert main(["adapters", "list", "--json"]) == 0 and json.loads(capsys.readouterr().out) == []
    assert main(["adapters", "show", "support-v1"]) == 1
    assert "no adapter named 'support-v1'" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["../evil", "a/b", ".hidden", "x..y", "", "a" * 129, "name with space"])
def test_traversal_and_malformed_names_are_rejected(runs, home, capsys, name):
    assert main(["adapters", "add", name, str(runs["lora"])]) == 1
    assert "invalid adapter name" in capsys.readouterr().err
    assert not (home / "adapters").exists() or not list((home / "adapters").iterdir())
    assert main(["adapters", "rm", name]) == 1


def test_add_refuses_what_is_not_a_finished_run(home, tmp_path, capsys):
    (tmp_path / "plain").mkdir()
    assert main(["adapters", "add", "x", str(tmp_path / "plain")]) == 1
    assert "not a buxiban run directory" in capsys.readouterr().err


def test_rm_delete_files_deletes_only_buxiban_run_dirs(runs, home, tmp_path, capsys):
    victim = tmp_path / "victim"
    shutil.copytree(runs["lora"], victim)
    assert main(["adapters", "add", "victim", str(victim)]) == 0
    (victim / MANIFEST).unlink()  # the directory no longer is a run (moved, replaced, hand-edited)
    assert main(["adapters", "rm", "victim", "--delete-files"]) == 1
    assert "refusing to delete" in capsys.readouterr().err
    assert victim.is_dir() and (victim / "adapter").is_dir()
    assert main(["adapters", "show", "victim"]) == 0  # still described, so the user sees what is wrong
    assert "status:      missing" in capsys.readouterr().out
    assert main(["adapters", "merge", "victim", "--out", str(tmp_path / "m")]) == 1
    assert "did not finish training (status: missing)" in capsys.readouterr().err
    assert main(["adapters", "rm", "victim"]) == 0  # forgetting the name alone is always allowed
    assert victim.is_dir()

    shared = tmp_path / "shared"
    shutil.copytree(runs["lora"], shared)
    assert main(["adapters", "add", "one", str(shared)]) == 0 and main(["adapters", "add", "two", str(shared)]) == 0
    assert main(["adapters", "rm", "one", "--delete-files"]) == 1
    assert "also registered as two" in capsys.readouterr().err and shared.is_dir()
    assert main(["adapters", "rm", "two"]) == 0
    assert main(["adapters", "rm", "one", "--delete-files"]) == 0
    assert not shared.exists()


def test_merge_and_export_accept_a_registered_name(runs, home, tmp_path, capsys, monkeypatch):
    assert main(["adapters", "add", "named", str(runs["lora"])]) == 0
    capsys.readouterr()
    assert main(["adapters", "export", "named", "--format", "peft", "--out", str(tmp_path / "p"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["name"] == "named" and result["run_dir"] == str(runs["lora"].resolve())
    assert main(["adapters", "merge", "nobody", "--out", str(tmp_path / "m")]) == 1
    assert "no adapter named 'nobody'" in capsys.readouterr().err
    assert main(["adapters", "merge", str(tmp_path / "no" / "such" / "run"), "--out", str(tmp_path / "m")]) == 1
    assert "neither a buxiban run directory" in capsys.readouterr().err

    # a plain directory that happens to share the name does not hide the registered adapter
    monkeypatch.chdir(tmp_path)
    (tmp_path / "named").mkdir()
    assert main(["adapters", "show", "named", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "named"
    assert main(["adapters", "show", "p"]) == 1  # an export directory is not a run, and not a name
    assert "neither a buxiban run directory" in capsys.readouterr().err


@pytest.mark.slow
def test_embedded_model_with_a_short_lora_exports_to_gguf_that_answers_the_same(tmp_path, capsys):
    """SmolLM2-135M + 2 LoRA steps, exported as F16 GGUF (the default) and read back by transformers:
    the greedy answer starts with the same tokens as the trained run's."""
    from pathlib import Path

    from transformers import AutoModelForCausalLM, AutoTokenizer

    examples = Path(__file__).resolve().parent.parent / "examples" / "yunshan"
    run, out = tmp_path / "run", tmp_path / "smollm2-yunshan.gguf"
    assert (
        main(
            [
                "train",
                str(examples / "lora.yaml"),
                f"output_dir={run}",
                "train.max_steps=2",
                "train.batch_size=2",
                "data.max_length=160",
                "train.learning_rate=1e-3",
                "data.validation_fraction=0",
                "--quiet",
            ]
        )
        == 0
    )
    assert main(["adapters", "export", str(run), "--format", "gguf", "--out", str(out)]) == 0
    assert "f16" in capsys.readouterr().out

    trained, tokenizer, manifest = load_trained(run)
    messages = [
        {"role": "system", "content": manifest.default_system_prompt},
        {"role": "user", "content": "Is there a deposit for the City plan?"},
    ]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    gguf_tokenizer = AutoTokenizer.from_pretrained(str(tmp_path), gguf_file=out.name)
    ids = tokenizer.encode(prompt, add_special_tokens=False)
    assert gguf_tokenizer.encode(prompt, add_special_tokens=False) == ids
    assert gguf_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == prompt

    exported = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=out.name, dtype=torch.float32)
    answers = []
    for model in (trained, exported):
        with torch.no_grad():
            output = model.generate(
                input_ids=torch.tensor([ids]), max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        answers.append(output[0, len(ids) :].tolist())
    assert answers[0] == answers[1], [tokenizer.decode(a) for a in answers]
