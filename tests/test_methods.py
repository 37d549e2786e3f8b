"""Each training method changes exactly the parameters it should, and the loop's arithmetic holds."""

import pytest
import torch

from buxiban.config import load_config
from buxiban.data.tokenize import encode_conversation
from buxiban.errors import ModelLoadError
from buxiban.models.adapt import check_adapter_supported, make_trainable
from buxiban.models.load import load_model, resolve
from buxiban.runs import read_manifest, read_metrics
from buxiban.runs.load import load_trained
from buxiban.train.batching import collate
from buxiban.train.losses import summed_token_loss
from buxiban.train.sft import train_sft

from conftest import chat_record, write_jsonl

RECORDS = [
    chat_record(f"Question {i}: how much is plan {i}?", f"Plan {i} costs NT${100 * i} per month.") for i in range(8)
]


def changed_after_training(tiny_model_dir, tiny_tokenizer, *overrides):
    config = load_config(None, ["data.train=x", "lora.dropout=0", *overrides])
    torch.manual_seed(0)
    model = make_trainable(load_model(resolve(str(tiny_model_dir))), config)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = collate([encode_conversation(tiny_tokenizer, r["messages"]) for r in RECORDS], tiny_tokenizer.pad_token_id)
    for _ in range(3):
        summed, count = summed_token_loss(model, **batch)
        (summed / count).backward()
        optimizer.step()
        optimizer.zero_grad()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    return changed, trainable, set(before)


@pytest.mark.parametrize("adapter", ["lora", "dora"])
def test_adapters_train_only_their_own_weights(tiny_model_dir, tiny_tokenizer, adapter):
    changed, trainable, _ = changed_after_training(tiny_model_dir, tiny_tokenizer, f"adapter={adapter}")
    assert changed and changed <= trainable
    assert all("lora_" in n for n in trainable)
    assert any("lora_B" in n for n in changed)  # B starts at zero: it must move for the adapter to matter
    if adapter == "dora":
        assert any("lora_magnitude_vector" in n for n in changed)


def test_full_fine_tuning_trains_everything(tiny_model_dir, tiny_tokenizer):
    changed, trainable, everything = changed_after_training(tiny_model_dir, tiny_tokenizer, "adapter=full")
    assert trainable == everything
    assert changed == everything


@pytest.mark.parametrize("train_head", [False, True])
def test_freeze_trains_only_the_last_blocks(tiny_model_dir, tiny_tokenizer, train_head):
    changed, trainable, everything = changed_after_training(
        tiny_model_dir,
        tiny_tokenizer,
        "adapter=freeze",
        "freeze.layers=1",
        f"freeze.train_head={str(train_head).lower()}",
    )
    last_block = {n for n in everything if n.startswith("model.layers.1.")}
    head = {n for n in everything if n in ("lm_head.weight", "model.embed_tokens.weight")}  # tied: one tensor
    assert changed == trainable
    assert trainable == (last_block | (head & trainable if train_head else set()))
    assert bool(head & trainable) == train_head
    assert not {n for n in changed if n.startswith("model.layers.0.")}


def test_qlora_on_a_cpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ModelLoadError, match="needs a CUDA GPU.*use adapter: lora"):
        check_adapter_supported("qlora")


def tiny_config(tiny_model_dir, train_file, out, *extra):
    return load_config(
        None,
        [
            f"model={tiny_model_dir}",
            f"data.train={train_file}",
            f"output_dir={out}",
            "data.validation_fraction=0",
            "train.learning_rate=3e-3",
            "train.warmup_ratio=0",
            "train.precision=fp32",
            "lora.dropout=0",
            *extra,
        ],
    )


def test_batch_8_equals_batch_2_times_4_accumulation(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", RECORDS)
    results = {}
    for name, size, accum in (("big", 8, 1), ("accumulated", 2, 4)):
        out = tmp_path / name
        train_sft(
            tiny_config(
                tiny_model_dir, data, out, "train.max_steps=2", f"train.batch_size={size}", f"train.grad_accum={accum}"
            ),
            progress=False,
            log=lambda _: None,
        )
        results[name] = [m["loss"] for m in read_metrics(out) if "loss" in m]
    assert len(results["big"]) == 2
    for big, accumulated in zip(results["big"], results["accumulated"]):
        assert abs(big - accumulated) < 1e-5, results


def test_a_token_budget_splits_micro_batches_without_changing_the_losses(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", RECORDS)
    results = {}
    for name, budget in (("whole", 0), ("split", 40)):  # 40 tokens: a piece holds one or two examples
        out = tmp_path / name
        train_sft(
            tiny_config(
                tiny_model_dir,
                data,
                out,
                "train.max_steps=3",
                "train.batch_size=8",
                f"train.micro_batch_tokens={budget}",
            ),
            progress=False,
            log=lambda _: None,
        )
        results[name] = [m["loss"] for m in read_metrics(out) if "loss" in m]
    assert len(results["whole"]) == 3
    for whole, split in zip(results["whole"], results["split"]):
        assert abs(whole - split) < 1e-5, results


@pytest.mark.parametrize("adapter,weights", [("full", "model"), ("freeze", "trained.safetensors"), ("dora", "adapter")])
def test_every_method_trains_saves_and_loads_back(tiny_model_dir, tmp_path, adapter, weights):
    data = write_jsonl(tmp_path / "train.jsonl", RECORDS)
    out = tmp_path / adapter
    train_sft(
        tiny_config(
            tiny_model_dir,
            data,
            out,
            f"adapter={adapter}",
            "freeze.layers=1",
            "train.max_steps=3",
            "train.batch_size=4",
            "train.learning_rate=1e-3",
        ),
        progress=False,
        log=lambda _: None,
    )
    manifest = read_manifest(out)
    assert manifest.weights == weights and manifest.adapter == adapter
    model, _, _ = load_trained(out)
    base = load_model(resolve(str(tiny_model_dir)))
    trained_weights = dict(model.named_parameters())
    differs = [n for n, p in base.named_parameters() if n in trained_weights and not torch.equal(p, trained_weights[n])]
    if adapter == "full":
        assert differs  # the saved whole model carries the update
    elif adapter == "freeze":
        assert differs and all(n.startswith("model.layers.1.") for n in differs)


def test_mixing_general_data_is_recorded(tiny_model_dir, tiny_chat_file, tmp_path):
    out = tmp_path / "mixed"
    said = []
    train_sft(
        tiny_config(tiny_model_dir, tiny_chat_file, out, "train.max_steps=1", "mix.general=builtin", "mix.ratio=0.5"),
        progress=False,
        log=said.append,
    )
    assert read_manifest(out).data["mix"] == {"general": "builtin", "ratio": 0.5, "examples": 4}
    assert read_manifest(out).data["train"]["examples"] == 8
    assert any("mixed 4 general examples into 4" in line for line in said)


def test_tensorboard_tracking_writes_events(tiny_model_dir, tiny_chat_file, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tracked"
    train_sft(
        tiny_config(tiny_model_dir, tiny_chat_file, out, "train.max_steps=3", "train.tracking=[tensorboard]"),
        progress=False,
        log=lambda _: None,
    )
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("loss")] == [1, 2, 3]
    assert [round(e.value, 4) for e in events.Scalars("loss")] == [
        round(m["loss"], 4) for m in read_metrics(out) if "loss" in m
    ]


def test_mlflow_gets_every_step_and_a_resumed_run_continues_the_same_mlflow_run(
    tiny_model_dir, tiny_chat_file, tmp_path, monkeypatch
):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from buxiban.train import session

    # MLflow's own file store: a real tracking backend without a server or a database package
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    out = tmp_path / "tracked"
    config = tiny_config(
        tiny_model_dir,
        tiny_chat_file,
        out,
        "train.max_steps=4",
        "train.batch_size=2",
        "train.checkpoint_every=2",
        "train.tracking=[mlflow]",
    )
    log_step = session.TrainRun.log_step

    def dies_at_step_3(self, step, **values):
        if step == 2:
            raise RuntimeError("power cut")
        log_step(self, step, **values)

    monkeypatch.setattr(session.TrainRun, "log_step", dies_at_step_3)
    with pytest.raises(RuntimeError, match="power cut"):
        train_sft(config, progress=False, log=lambda _: None)
    run_id = (out / "mlflow-run-id").read_text()
    client = MlflowClient()
    assert client.get_run(run_id).info.status == "FAILED"

    monkeypatch.setattr(session.TrainRun, "log_step", log_step)
    train_sft(config, progress=False, log=lambda _: None, resume="auto")
    assert (out / "mlflow-run-id").read_text() == run_id  # the same MLflow run, not a second one
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params["train.max_steps"] == "4"
    history = sorted((m.step, round(m.value, 4)) for m in client.get_metric_history(run_id, "loss"))
    assert history == [(m["step"], round(m["loss"], 4)) for m in read_metrics(out) if "loss" in m]
    assert [step for step, _ in history] == [1, 2, 3, 4]


def test_missing_tracker_package_is_a_clear_error(tiny_model_dir, tiny_chat_file, tmp_path, monkeypatch):
    import importlib.util

    from buxiban.errors import ConfigError

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real_find_spec(name, *a)
    )
    with pytest.raises(ConfigError, match="pip install mlflow"):
        train_sft(
            tiny_config(tiny_model_dir, tiny_chat_file, tmp_path / "x", "train.max_steps=1", "train.tracking=[mlflow]"),
            progress=False,
            log=lambda _: None,
        )
    assert not (tmp_path / "x").exists()  # refused before anything was written


def test_gradient_checkpointing_full_and_selective_give_the_same_losses(tiny_model_dir, tmp_path, monkeypatch):
    """With LoRA dropout on, so recomputation must replay the same random masks."""
    from buxiban.train import recompute

    # the tiny model's widths are 32 and 64: save its projections' outputs, recompute LoRA's rank-16 matmul
    monkeypatch.setattr(recompute, "CHEAP_INNER_DIM", 16)
    decisions = []
    policy = recompute.policy
    monkeypatch.setattr(recompute, "policy", lambda *a, **k: decisions.append(policy(*a, **k)) or decisions[-1])
    data = write_jsonl(tmp_path / "train.jsonl", RECORDS)
    losses = {}
    for flag in ("false", "true", "selective"):
        out = tmp_path / flag
        train_sft(
            tiny_config(
                tiny_model_dir,
                data,
                out,
                "train.max_steps=3",
                "train.batch_size=4",
                "lora.dropout=0.1",
                f"train.gradient_checkpointing={flag}",
            ),
            progress=False,
            log=lambda _: None,
        )
        losses[flag] = [m["loss"] for m in read_metrics(out) if "loss" in m]
    assert losses["true"] == pytest.approx(losses["false"], abs=1e-5)
    assert losses["selective"] == pytest.approx(losses["false"], abs=1e-5)
    saved = decisions.count(recompute.CheckpointPolicy.MUST_SAVE)
    assert 0 < saved < len(decisions)  # some outputs kept, the rest recomputed
