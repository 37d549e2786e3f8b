"""Make a loaded base model trainable in one of five ways, and save or restore what was trained.

- lora / dora: PEFT adapters on every linear layer of the blocks (DoRA adds a learned magnitude);
- qlora: LoRA over a 4-bit NF4 base (bitsandbytes, CUDA only);
- full: every parameter;
- freeze: only the last N transformer blocks, optionally the output head too.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import RunConfig
from ..errors import ModelLoadError

PEFT_ADAPTERS = ("lora", "dora", "qlora")


def check_adapter_supported(adapter: str) -> None:
    """Fail before any model loads when the hardware cannot run the method."""
    if adapter != "qlora":
        return
    if not torch.cuda.is_available():
        raise ModelLoadError(
            "adapter 'qlora' quantizes the base model to 4-bit NF4 with bitsandbytes, which needs a "
            "CUDA GPU; on this machine use adapter: lora (same quality, more memory)"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise ModelLoadError("adapter 'qlora' needs bitsandbytes: pip install bitsandbytes") from exc


def quantization_config(adapter: str):
    if adapter != "qlora":
        return None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


# Config fields that scale the output logits inside the model's own forward (Granite divides by
# logits_scaling, Cohere multiplies by logit_scale). buxiban's loss runs the head itself on the trained
# positions only (train/losses.py) and would train against unscaled logits: a different objective.
def keep_packed_rows_apart(model) -> None:
    """Forward padding-free rows without a KV cache on models with sliding-window or soft-capped
    attention. packing.varlen_attention hands those layers to SDPA with the mask transformers
    built, and transformers splits that mask at the packed conversations (found from the restarting
    position_ids) only when no cache is passed; the forward builds a DynamicCache whenever
    config.use_cache is on, so without this the sliding layers of Gemma 3, Mistral or Phi-3 attended
    across conversations and the packed loss differed from the padded one (Gemma 3 270M on the
    example data: 6.84 packed against 4.03 padded). Other models are left as they are: varlen
    attention ignores the mask in every layer, and with the cache transformers skips building it."""
    config = model.config
    if not (getattr(config, "sliding_window", None) or getattr(config, "attn_logit_softcapping", None)):
        return

    def no_cache_for_packed_rows(module, args, kwargs):
        if kwargs.get("packed_bounds") is not None:
            kwargs["use_cache"] = False
        return args, kwargs

    body = getattr(model, model.base_model_prefix, model)  # what train/losses.py calls, and the model's own forward
    body.register_forward_pre_hook(no_cache_for_packed_rows, with_kwargs=True)


def make_trainable(model, config: RunConfig):
    """The model to train (PEFT-wrapped for adapters), with requires_grad set on exactly what trains."""
    keep_packed_rows_apart(model)
    adapter = config.adapter
    if adapter in PEFT_ADAPTERS:
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

        if adapter == "qlora":
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        lora = config.lora
        peft_config = LoraConfig(
            task_type="CAUSAL_LM",
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            # "all-linear" covers every linear layer of the blocks, never the output head
            target_modules=lora.target_modules,
            use_dora=adapter == "dora",
        )
        return get_peft_model(model, peft_config)
    if adapter == "full":
        for param in model.parameters():
            param.requires_grad_(True)
        return model
    for param in model.parameters():
        param.requires_grad_(False)
    blocks = transformer_blocks(model)
    if config.freeze.layers > len(blocks):
        raise ModelLoadError(f"freeze.layers={config.freeze.layers} but the model has only {len(blocks)} blocks")
    for block in blocks[-config.freeze.layers :]:
        for param in block.parameters():
            param.requires_grad_(True)
    if config.freeze.train_head:
        for param in model.get_output_embeddings().parameters():
            param.requires_grad_(True)
    return model


def transformer_blocks(model) -> torch.nn.ModuleList:
    """The stack of decoder blocks, found by shape (a ModuleList as long as the layer count), so
    Llama's model.layers, GPT-2's transformer.h and the rest all work."""
    count = getattr(model.config, "num_hidden_layers", None)
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return module
    raise ModelLoadError(f"cannot find the {count} transformer blocks of {type(model).__name__} to freeze around")


def store_frozen_linears_in(model, dtype: torch.dtype) -> int:
    """Keep the frozen weights of the blocks' linear layers in the autocast dtype; returns how many.

    Autocast casts a linear layer's fp32 weight to bf16 on every call and caches the cast only for
    weights that require grad, so LoRA's frozen base weights were cast again in every forward and
    every recomputation, and each cast was held for the backward pass on top of the fp32 original.
    Cast once here, the matmuls get exactly the values autocast gave them (the same rounding), so
    losses and gradients are bit-identical while the fp32 copies and the per-call casts are gone.
    Only for plain LoRA: DoRA's magnitude reads the base weight's norm in full precision."""
    count = 0
    for module in transformer_blocks(model).modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        for param in (module.weight, module.bias):
            if param is not None and not param.requires_grad and param.dtype == torch.float32:
                param.data = param.data.to(dtype)
                count += 1
    return count


def count_parameters(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def is_shard(tensor) -> bool:
    """A DTensor: this process's part of a tensor split across processes (train.sharding)."""
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def whole(tensor: torch.Tensor) -> torch.Tensor:
    """The full tensor behind a shard (a collective: every process must call it)."""
    return tensor.full_tensor() if is_shard(tensor) else tensor


def as_shard_of(tensor: torch.Tensor, param) -> torch.Tensor:
    """A whole tensor cut to this process's shard of `param` (a no-op for unsharded params)."""
    if not is_shard(param) or is_shard(tensor):
        return tensor
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(tensor.to(param.dtype), param.device_mesh, param.placements)


def trainable_names(model) -> list[str]:
    return [name for name, param in model.named_parameters() if param.requires_grad]


def trainable_state(model, gather: bool = False) -> dict[str, torch.Tensor]:
    """What a checkpoint must hold to restore training exactly: the trained tensors, by name. With
    `gather`, shards are gathered whole (collective); without, a sharded model keeps its shards,
    which is all an in-memory copy (early stopping's best weights) needs."""
    named = dict(model.named_parameters())
    return {
        name: (whole(named[name].detach()) if gather else named[name].detach()).clone().contiguous()
        for name in trainable_names(model)
    }


def load_trainable_state(model, state: dict[str, torch.Tensor]) -> None:
    named = dict(model.named_parameters())
    unknown = [name for name in state if name not in named]
    if unknown:
        raise ModelLoadError(f"the saved weights do not fit this model (first unknown tensor: {unknown[0]})")
    with torch.no_grad():
        for name, tensor in state.items():
            named[name].copy_(as_shard_of(tensor, named[name]))


def save_trained(model, tokenizer, adapter: str, run_dir: Path, full_state: dict | None = None) -> str:
    """Write the result in the form its users load: a PEFT adapter, a whole model directory, or the
    trained blocks alone. Returns the path relative to the run directory. `full_state` is the whole
    state dict of a sharded model, gathered by the caller."""
    from safetensors.torch import save_file

    if adapter in PEFT_ADAPTERS:  # with the tokenizer, whose chat template is the one trained with
        model.save_pretrained(str(run_dir / "adapter"), state_dict=full_state)
        tokenizer.save_pretrained(str(run_dir / "adapter"))
        return "adapter"
    if adapter == "full":
        model.save_pretrained(str(run_dir / "model"), safe_serialization=True, state_dict=full_state)
        tokenizer.save_pretrained(str(run_dir / "model"))
        return "model"
    if full_state is not None:
        trained = {name: full_state[name] for name in trainable_names(model)}
    else:
        trained = trainable_state(model)
    save_file(trained, str(run_dir / "trained.safetensors"))
    return "trained.safetensors"
