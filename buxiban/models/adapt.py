"""Make a loaded base model trainable: LoRA through PEFT (more methods arrive with the training issue)."""

from __future__ import annotations

from ..config import LoraConfig


def apply_lora(model, lora: LoraConfig):
    from peft import LoraConfig as PeftLoraConfig, get_peft_model

    peft_config = PeftLoraConfig(
        task_type="CAUSAL_LM",
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        # PEFT's "all-linear" covers every linear layer of the blocks and leaves the output head alone.
        target_modules=lora.target_modules,
    )
    return get_peft_model(model, peft_config)


def count_parameters(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
