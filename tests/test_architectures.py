"""Every training method, padding-free batches, merge and plan's counts on a tiny random model of each
architecture buxiban supports: Llama, Qwen2, Qwen3, Gemma 3 (text-only), Phi-3, Mistral and Granite.
Each merges, and exports to GGUF in llama.cpp's layout for that architecture."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from buxiban.cli import main
from buxiban.config import load_config
from buxiban.errors import ModelLoadError
from buxiban.models.adapt import make_trainable, transformer_blocks
from buxiban.models.load import load_model, load_tokenizer, resolve
from buxiban.runs import read_manifest, read_metrics
from buxiban.runs.load import load_trained
from buxiban.train.sft import train_sft

from conftest import build_tiny_tokenizer, chat_record, write_jsonl

RECORDS = [
    chat_record(f"Question {i}: how much is plan {i}?", f"Plan {i} costs NT${100 * i} per month.") for i in range(8)
]
PROMPT = "<|im_start|>user\nHow much is the City plan? 你好<|im_end|>\n<|im_start|>assistant\n"

# transformers config class, model class, what the architecture adds to the common tiny shape
ARCHITECTURES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),  # biases on q, k and v
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 8}),  # q and k norms
    # one sliding-window layer shorter than every conversation, one global layer, Gemma's own scaling
    "gemma3": (
        "Gemma3TextConfig",
        "Gemma3ForCausalLM",
        {
            "head_dim": 8,
            "query_pre_attn_scalar": 8,
            "sliding_window": 32,
            "layer_types": ["sliding_attention", "full_attention"],
        },
    ),
    # fused qkv_proj and gate_up_proj; every layer sliding, as in Phi-3-mini (2047) and Mistral 7B v0.1 (4096)
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {"sliding_window": 32}),
    "mistral": ("MistralConfig", "MistralForCausalLM", {"sliding_window": 32}),
    # Granite 3's multipliers: logits are divided by logits_scaling inside the model's forward
    "granite": (
        "GraniteConfig",
        "GraniteForCausalLM",
        {
            "embedding_multiplier": 12.0,
            "residual_multiplier": 0.22,
            "attention_multiplier": 0.125,
            "logits_scaling": 8.0,
        },
    ),
}
MODEL_TYPES = {"gemma3": "gemma3_text"}  # config.json's model_type where it is not the key above
# Architectures training refuses by name; none today (Granite's logits_scaling once was: the loss ran the
# head alone and skipped the scale; now such heads go through the model's own forward)
REFUSED_TRAINING: dict[str, str] = {}
WEIGHTS = {"lora": "adapter", "dora": "adapter", "full": "model", "freeze": "trained.safetensors"}
WEIGHT_FILES = {
    "adapter": "adapter/adapter_model.safetensors",
    "model": "model/model.safetensors",
    "trained.safetensors": "trained.safetensors",
}


@functools.cache
def tokenizer():
    """conftest's tiny tokenizer, trained once for the module."""
    return build_tiny_tokenizer()


def build_architecture_dir(arch: str, directory, **overrides):
    """A 2-layer model of `arch` (hidden 32, 4 heads, 2 key/value heads) with random weights, saved
    with the tokenizer as an ordinary Hugging Face directory."""
    import transformers

    config_name, model_name, extra = ARCHITECTURES[arch]
    tok = tokenizer()
    config = getattr(transformers, config_name)(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
        initializer_range=0.3,  # wide enough for the logits to move in a few steps
        **{**extra, **overrides},
    )
    torch.manual_seed(0)
    model = getattr(transformers, model_name)(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def arch_dir(tmp_path_factory):
    """arch_dir(name): the tiny model directory of that architecture, built once per module."""
    made = {}

    def get(arch: str):
        if arch not in made:
            made[arch] = build_architecture_dir(arch, tmp_path_factory.mktemp(f"tiny-{arch}"))
        return made[arch]

    return get


@pytest.fixture(scope="module")
def train_file(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("arch-data") / "train.jsonl", RECORDS)


def run_config(model_dir, train_file, out, *extra):
    return load_config(
        None,
        [
            f"model={model_dir}",
            f"data.train={train_file}",
            f"output_dir={out}",
            "data.validation_fraction=0",
            "train.max_steps=4",
            "train.batch_size=2",
            "train.learning_rate=1e-2",
            "train.warmup_ratio=0",
            "train.precision=fp32",
            "lora.dropout=0",
            "freeze.layers=1",
            *extra,
        ],
    )


def logits(model, tok, text=PROMPT):
    ids = torch.tensor([tok.encode(text, add_special_tokens=False)])
    with torch.no_grad():
        return model(input_ids=ids).logits[0]


def model_type(arch: str) -> str:
    return MODEL_TYPES.get(arch, arch)


# ---- the loss buxiban trains on is the model's own, padded or packed ---------------------------------


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_lora_covers_every_block_linear_and_packed_rows_give_the_models_own_loss(arch_dir, arch):
    from buxiban.data.tokenize import encode_conversation
    from buxiban.train.batching import collate
    from buxiban.train.losses import reference_mean_loss, summed_token_loss
    from buxiban.train.packing import collate_packed, use_varlen_attention

    source = resolve(str(arch_dir(arch)))
    model = load_model(source)
    config = load_config(None, ["data.train=x", "adapter=lora", "lora.dropout=0"])
    if arch in REFUSED_TRAINING:
        with pytest.raises(ModelLoadError, match=f"cannot train '{model_type(arch)}'.*{REFUSED_TRAINING[arch]}"):
            make_trainable(model, config)
        return
    block_linears = {
        name for name, module in transformer_blocks(model).named_modules() if isinstance(module, torch.nn.Linear)
    }
    model = make_trainable(model, config).eval()
    adapted = {name for name, module in transformer_blocks(model).named_modules() if hasattr(module, "lora_A")}
    assert adapted and {name.removesuffix(".base_layer") for name in adapted} == block_linears  # all-linear
    assert not hasattr(model.get_base_model().get_output_embeddings(), "lora_A")  # never the head

    tok = load_tokenizer(source)
    long = chat_record("A long question that goes on about the City plan, the deposit and the brakes?", "Yes.")
    examples = [encode_conversation(tok, r["messages"]) for r in [*RECORDS[:3], long]]
    padded = collate(examples, tok.pad_token_id)
    with torch.no_grad():
        own = reference_mean_loss(model, **padded).item()  # the model's own logits
        summed, count = summed_token_loss(model, **padded)
        assert use_varlen_attention(model)
        packed, packed_count = summed_token_loss(model, **collate_packed(examples))
    assert packed_count == count
    # a sliding window or a head-side scale that leaked across conversations would move these
    assert summed.item() / count == pytest.approx(own, rel=1e-6)
    assert packed.item() / count == pytest.approx(own, rel=1e-6)


# ---- every method trains, saves, merges -------------------------------------------------------------


@pytest.mark.parametrize("adapter", list(WEIGHTS))
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_every_method_trains_and_merges(arch_dir, train_file, tmp_path, arch, adapter):
    model_dir = arch_dir(arch)
    out = tmp_path / "run"
    said = []
    config = run_config(model_dir, train_file, out, f"adapter={adapter}")
    if arch in REFUSED_TRAINING:
        with pytest.raises(ModelLoadError, match=f"cannot train '{model_type(arch)}'.*{REFUSED_TRAINING[arch]}"):
            train_sft(config, progress=False, log=said.append)
        assert not [m for m in read_metrics(out) if "loss" in m]  # refused before the first step
        assert not (out / WEIGHT_FILES[WEIGHTS[adapter]]).exists()
        return
    train_sft(config, progress=False, log=said.append)

    losses = [m["loss"] for m in read_metrics(out) if "loss" in m]
    assert len(losses) == 4 and all(math.isfinite(loss) for loss in losses), losses
    assert losses[-1] < losses[0], losses
    assert any("padding-free batches" in line for line in said), said
    manifest = read_manifest(out)
    assert manifest.complete and manifest.adapter == adapter and manifest.weights == WEIGHTS[adapter]
    assert (out / WEIGHT_FILES[manifest.weights]).is_file()
    assert manifest.utilization["flops_per_token"] > 0  # train/flops.py counted this architecture

    if adapter not in ("lora", "dora"):
        return
    from transformers import AutoModelForCausalLM

    merged_dir = tmp_path / "merged"
    assert main(["adapters", "merge", str(out), "--out", str(merged_dir)]) == 0
    trained, tok, _ = load_trained(out)
    expected = logits(trained, tok)
    base = AutoModelForCausalLM.from_pretrained(str(model_dir))
    assert (expected - logits(base, tok)).abs().max() > 1e-3  # training moved it, so the match means something
    merged = AutoModelForCausalLM.from_pretrained(str(merged_dir))  # plain transformers, no PEFT
    assert merged.config.model_type == model_type(arch) and not hasattr(merged, "peft_config")
    assert torch.allclose(logits(merged, tok), expected, atol=1e-4)

    if adapter == "lora":
        path = tmp_path / "model.gguf"
        command = ["adapters", "export", str(out), "--format", "gguf", "--gguf-type", "f32", "--out", str(path)]
        assert main(command) == 0
        check_gguf_holds(path, merged, arch)
        if arch in GGUF_READABLE_BY_TRANSFORMERS:  # a second, independent reader of llama.cpp's layout
            # transformers' GGUF reader ignores Gemma 3's layer pattern and Qwen3's head size: give it the config
            config = merged.config if arch in ("gemma3", "qwen3") else None
            reread = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=path.name, config=config)
            assert torch.allclose(logits(reread, tok), expected, atol=1e-4)


# llama.cpp's architecture name for each; transformers reads all but Granite back from GGUF
GGUF_ARCHITECTURES = {
    "llama": "llama",
    "mistral": "llama",
    "granite": "granite",
    "qwen2": "qwen2",
    "qwen3": "qwen3",
    "phi3": "phi3",
    "gemma3": "gemma3",
}
GGUF_READABLE_BY_TRANSFORMERS = set(GGUF_ARCHITECTURES) - {"granite"}


def check_gguf_holds(path, model, arch):
    """Every weight under llama.cpp's name for the architecture, in its shape (GGUF lists dimensions
    innermost first) and value: rotary rows interleaved for Llama-style graphs, Gemma's norms as 1 + w."""
    import gguf
    import numpy

    from buxiban.adapters.gguf_export import permute_for_rope

    reader = gguf.GGUFReader(str(path))
    assert reader.fields["general.architecture"].contents() == GGUF_ARCHITECTURES[arch]
    written = {t.name: t for t in reader.tensors}
    arch_id = next(a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == GGUF_ARCHITECTURES[arch])
    allowed = {gguf.TENSOR_NAMES[t].format(bid=b) for t in gguf.MODEL_TENSORS[arch_id] for b in range(2)}
    names = gguf.get_tensor_name_map(arch_id, 2)
    config = model.config
    expected = {}
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight":
            continue  # tied: llama.cpp reads token_embd
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        value = tensor.float().numpy()
        if arch == "gemma3" and hf_name.endswith("norm.weight"):
            value = value + 1
        if arch in ("llama", "mistral", "granite") and ".attn_q." in name:
            value = permute_for_rope(value, config.num_attention_heads)
        if arch in ("llama", "mistral", "granite") and ".attn_k." in name:
            value = permute_for_rope(value, config.num_key_value_heads)
        expected[name] = value
    assert set(written) == set(expected)
    assert {name.rsplit(".", 1)[0] for name in written} <= allowed  # only tensors llama.cpp's graph declares
    for name, value in expected.items():
        assert list(written[name].shape) == list(reversed(value.shape)), name
        numpy.testing.assert_allclose(numpy.asarray(written[name].data).reshape(value.shape), value, atol=1e-6)
    if arch == "phi3":
        assert "blk.0.attn_qkv.weight" in written and "blk.0.ffn_up.weight" in written  # fused, as llama.cpp reads


def test_granite_trains_once_its_logits_are_unscaled(tmp_path, train_file):
    """Everything but the logit scale works on Granite's graph (its embedding, residual and attention
    multipliers included): with logits_scaling=1 LoRA trains, merges and matches."""
    from transformers import AutoModelForCausalLM

    model_dir = build_architecture_dir("granite", tmp_path / "granite", logits_scaling=1.0)
    out = tmp_path / "run"
    train_sft(run_config(model_dir, train_file, out, "adapter=lora"), progress=False, log=lambda _: None)
    losses = [m["loss"] for m in read_metrics(out) if "loss" in m]
    assert len(losses) == 4 and losses[-1] < losses[0], losses
    assert main(["adapters", "merge", str(out), "--out", str(tmp_path / "merged")]) == 0
    trained, tok, _ = load_trained(out)
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged"))
    assert torch.allclose(logits(merged, tok), logits(trained, tok), atol=1e-4)


# ---- plan: memory model and FLOPs -------------------------------------------------------------------


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_plan_memory_and_flops_count_every_architecture(arch_dir, arch):
    from transformers import AutoConfig

    from buxiban.plan.memory import METHODS, ModelShape, estimate_peak, parameter_counts
    from buxiban.train.flops import flops_per_token

    model_dir = str(arch_dir(arch))
    shape = ModelShape.from_config(AutoConfig.from_pretrained(model_dir))
    assert (shape.layers, shape.hidden, shape.heads, shape.kv_heads, shape.head_dim) == (2, 32, 4, 2, 8)
    assert shape.vocab == len(tokenizer())

    model = load_model(resolve(model_dir))
    total = sum(p.numel() for p in model.parameters())
    linears = [m for m in transformer_blocks(model).modules() if isinstance(m, torch.nn.Linear)]
    head = model.get_output_embeddings()
    # full fine-tuning: 6 FLOPs per weight per token in every block linear and the head (on half the positions)
    expected = 6 * (sum(m.in_features * m.out_features for m in linears) + head.in_features * head.out_features / 2)
    assert flops_per_token(model, head_share=0.5) == expected

    config = load_config(None, ["data.train=x", "freeze.layers=1"])
    if arch in REFUSED_TRAINING:  # plan refuses what training would refuse, by name
        with pytest.raises(ModelLoadError, match=f"cannot train '{model_type(arch)}'"):
            parameter_counts(model_dir, "lora", config)
        return
    for method in METHODS:
        shape_seen, counts = parameter_counts(model_dir, method, config)
        assert shape_seen == shape and counts.total >= total
        assert counts.block_linear == sum(m.weight.numel() for m in linears)
        assert 0 < counts.trainable <= counts.total and (method != "full" or counts.trainable == total)
        assert counts.trained_blocks == (1 if method == "freeze" else 2)
        for checkpointing in (False, True, "selective"):
            peak = estimate_peak(shape, counts, method, 256, 128, False, 0, config.lora.r, checkpointing)
            assert peak["peak_mib"] > 0 and all(math.isfinite(v) and v >= 0 for v in peak["parts_mib"].values())

    # LoRA: 6 for the adapters' A and B, 4 for the frozen weights the backward passes through
    lora = make_trainable(load_model(resolve(model_dir)), load_config(None, ["data.train=x", "adapter=lora"]))
    sizes = [
        (6 if m.weight.requires_grad else 4) * m.in_features * m.out_features
        for m in transformer_blocks(lora).modules()
        if isinstance(m, torch.nn.Linear)
    ]
    assert flops_per_token(lora, head_share=0.5) == sum(sizes) + 4 * head.in_features * head.out_features / 2
