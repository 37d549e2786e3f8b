import pytest
import torch

from buxiban.config import load_config
from buxiban.errors import ConfigError
from buxiban.runs import read_manifest, read_metrics
from buxiban.train.dpo import train_dpo
from buxiban.train.losses import dpo_loss
from buxiban.train.sft import train_sft

from conftest import write_jsonl

PAIRS = [
    {
        "prompt": f"How much is plan {i}?",
        "chosen": f"Plan {i} costs NT${100 * i} per month.",
        "rejected": "Prices vary, please check our website.",
    }
    for i in range(1, 9)
]


def test_dpo_loss_numbers():
    losses, chosen, rejected = dpo_loss(
        torch.tensor([-1.0, -2.0]),
        torch.tensor([-3.0, -1.0]),
        torch.tensor([-2.0, -2.0]),
        torch.tensor([-2.0, -2.0]),
        beta=0.5,
    )
    # pair 1: rewards 0.5 and -0.5, margin 1 → -log σ(1); pair 2: rewards 0 and 0.5 → -log σ(-0.5)
    torch.testing.assert_close(losses, torch.tensor([0.313262, 0.974077]), atol=1e-5, rtol=0)
    torch.testing.assert_close(chosen, torch.tensor([0.5, 0.0]))
    torch.testing.assert_close(rejected, torch.tensor([-0.5, 0.5]))


def dpo_config(tiny_model_dir, pairs, out, *extra):
    return load_config(
        None,
        [
            f"model={tiny_model_dir}",
            "method=dpo",
            f"data.train={pairs}",
            f"data.validation={pairs}",
            f"output_dir={out}",
            "train.max_steps=12",
            "train.batch_size=4",
            "train.eval_every=4",
            "train.learning_rate=5e-3",
            "train.warmup_ratio=0",
            "train.precision=fp32",
            "lora.dropout=0.3",
            "dpo.beta=0.5",
            *extra,
        ],
    )  # DPO must turn dropout off


def test_dpo_after_sft_raises_the_margin(tiny_model_dir, tiny_chat_file, tmp_path):
    sft = tmp_path / "sft"
    train_sft(
        load_config(
            None,
            [
                f"model={tiny_model_dir}",
                f"data.train={tiny_chat_file}",
                f"output_dir={sft}",
                "data.validation_fraction=0",
                "train.max_steps=5",
                "train.precision=fp32",
                "lora.dropout=0.3",
            ],
        ),
        progress=False,
        log=lambda _: None,
    )
    pairs = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    out = tmp_path / "dpo"
    train_dpo(dpo_config(tiny_model_dir, pairs, out, f"dpo.from_run={sft}"), progress=False, log=lambda _: None)
    validation = [m for m in read_metrics(out) if "val_margin" in m]
    assert len(validation) == 3
    assert validation[0]["val_margin"] > 0 and validation[-1]["val_margin"] > validation[0]["val_margin"]
    assert validation[-1]["val_accuracy"] == 1.0
    steps = [m for m in read_metrics(out) if "margin" in m]
    assert steps[0]["margin"] == pytest.approx(0.0, abs=1e-4)  # its own reference, dropout off
    manifest = read_manifest(out)
    assert manifest.status == "complete" and manifest.dpo["from_run"] == str(sft)
    assert (out / "reference_logps.pt").is_file() and (out / "adapter" / "adapter_model.safetensors").is_file()


def test_dpo_with_a_fresh_adapter_uses_the_base_as_reference(tiny_model_dir, tmp_path):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    out = tmp_path / "dpo"
    train_dpo(dpo_config(tiny_model_dir, pairs, out), progress=False, log=lambda _: None)
    losses = [m["loss"] for m in read_metrics(out) if "loss" in m]
    assert losses[0] == pytest.approx(0.693147, abs=1e-4)  # log 2: policy equals reference at step 0
    assert losses[-1] < losses[0]


def test_dpo_config_mistakes_are_caught_before_training(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(None, ["data.train=p.jsonl", "method=dpo", "adapter=full", "dpo.beta=0", "mix.general=builtin"])
    text = str(caught.value)
    assert "DPO here trains a LoRA or DoRA adapter" in text and "'dpo.beta' is 0.0" in text and "mix.general" in text


def test_sft_weight_holds_the_chosen_answers_up(tiny_model_dir, tmp_path):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    chosen = {}
    for weight in (0.0, 1.0):
        out = tmp_path / f"w{weight}"
        train_dpo(
            dpo_config(tiny_model_dir, pairs, out, f"dpo.sft_weight={weight}"), progress=False, log=lambda _: None
        )
        chosen[weight] = [m["chosen_logp"] for m in read_metrics(out) if "chosen_logp" in m]
    assert chosen[1.0][-1] > chosen[0.0][-1]
    assert chosen[1.0][-1] > chosen[1.0][0]


def guard_pairs(path):
    """The tiny SFT run's own questions, its answers preferred over a wrong one."""
    from conftest import RECORDS

    rows = []
    for record in RECORDS:
        *prompt, answer = record["messages"]
        rows.append(
            {
                "input": {"messages": prompt},
                "preferred_output": [answer],
                "non_preferred_output": [{"role": "assistant", "content": "Please call us tomorrow."}],
            }
        )
    return write_jsonl(path, rows * 2)


def test_a_harmful_dpo_rate_is_caught_warned_about_and_undone(tiny_model_dir, tiny_chat_file, tmp_path):
    """At a deliberately harmful rate the validation margin can still look fine; the guard sees the
    chosen answers' likelihood collapse, warns at the end, and saves the weights DPO started from."""
    from buxiban.runs.load import load_trained

    from conftest import train_tiny

    sft = train_tiny(tiny_model_dir, tiny_chat_file, tmp_path / "sft")
    pairs = guard_pairs(tmp_path / "pairs.jsonl")
    said = []
    harmful = tmp_path / "harmful"
    config = dpo_config(
        tiny_model_dir, pairs, harmful, f"dpo.from_run={sft}", "train.learning_rate=0.5", "lora.dropout=0"
    )
    train_dpo(config, progress=False, log=said.append)
    assert any(line.startswith("warning: DPO made the model worse") for line in said), said
    assert any("the weights saved are the ones DPO started from" in line for line in said), said
    assert any(line.startswith("SFT → DPO on the 8 validation pairs") for line in said), said
    guard = read_manifest(harmful).dpo["guard"]
    assert guard["kept"]["step"] == 0 and min(p["chosen_change"] for p in guard["passes"]) < -0.1
    validation = [m for m in read_metrics(harmful) if "val_answers_right" in m]
    assert len(validation) == 3

    ids = torch.tensor([[1, 5, 9, 12, 3, 7]])
    sft_model, _, _ = load_trained(sft)
    saved, _, _ = load_trained(harmful)
    with torch.no_grad():
        assert torch.allclose(saved(ids).logits, sft_model(ids).logits, atol=1e-5)  # the SFT weights, kept

    gentle = tmp_path / "gentle"
    said.clear()
    # bf16 autocast keeps the frozen weights in bf16: the guard's generation must run under it too
    extra = ("train.learning_rate=1e-4", "lora.dropout=0", "train.precision=bf16")
    config = dpo_config(tiny_model_dir, pairs, gentle, f"dpo.from_run={sft}", *extra)
    train_dpo(config, progress=False, log=said.append)
    assert not any(line.startswith("warning:") for line in said), said
    assert read_manifest(gentle).dpo["guard"]["kept"]["step"] > 0


def test_the_guard_counts_broken_answers_not_the_net_change(monkeypatch):
    """Three answers broken and two fixed is a net loss of one, and still a harmful pass: on harbor
    such a pass lost 11 of 60 held-out answers (bench/outcome, dpo-old-harbor-masks2)."""
    from types import SimpleNamespace

    from buxiban.train import dpo_guard

    references = [f"answer {i}" for i in range(6)]
    replies = iter(
        [
            ["answer 0", "answer 1", "answer 2", "answer 3", "wrong", "wrong"],  # before DPO: 4 right
            ["wrong", "wrong", "wrong", "answer 3", "answer 4", "answer 5"],  # 3 broken, 2 fixed: 3 right
            ["answer 0", "wrong", "answer 2", "answer 3", "answer 4", "wrong"],  # 1 broken, 1 fixed: 4 right
        ]
    )
    monkeypatch.setattr(dpo_guard, "generate_with_stats", lambda *a, **k: SimpleNamespace(answers=next(replies)))
    monkeypatch.setattr(dpo_guard, "trainable_state", lambda model: {})
    said = []
    guard = dpo_guard.DpoGuard([[{"role": "user", "content": "q"}]] * 6, references, "six", said.append)
    tokenizer = lambda text, add_special_tokens: {"input_ids": text.split()}  # noqa: E731
    guard.measure(None, tokenizer, 0, 0.0, 0.0, 0.0)
    churn = guard.measure(None, tokenizer, 10, 0.0, 1.0, 0.5)
    assert (churn.correct, churn.broken) == (3, 3) and not guard.safe(churn)
    assert guard.kept is guard.start
    steady = guard.measure(None, tokenizer, 20, 0.0, 0.9, 0.4)
    assert (steady.correct, steady.broken) == (4, 1) and guard.kept is steady
    report = guard.report()
    assert "(3 broken)" in report[0]
    assert "exact match 4/6 → 4/6 (1 fixed, 1 broken)" in report[-1]
