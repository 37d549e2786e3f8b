"""Losses, written out so their arithmetic is visible and testable."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.tokenize import IGNORE_INDEX

HEAD_CHUNK = 1024  # trained positions sent through the output head at once: 1024 × 49k vocab = 200 MB of logits


def _head_cross_entropy(head, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(head(hidden).float(), targets, reduction="sum")


def chunked_head_loss(head, hidden: torch.Tensor, targets: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """Summed cross-entropy of head(hidden) against targets, `chunk` rows at a time. Each chunk's
    logits are recomputed in backward instead of kept, so the logits of all trained positions
    (long answers × a large vocabulary) never exist at once."""
    chunk = chunk or HEAD_CHUNK
    if hidden.size(0) <= chunk:
        return _head_cross_entropy(head, hidden, targets)
    from torch.utils.checkpoint import checkpoint

    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.size(0), chunk):
        total = total + checkpoint(
            _head_cross_entropy,
            head,
            hidden[start : start + chunk],
            targets[start : start + chunk],
            use_reentrant=False,
        )
    return total


def head_cast_once(head):
    """The output head as autocast runs it, with a frozen fp32 weight cast to the autocast dtype
    once and kept, instead of on every step: the same rounding, so the same logits and gradients.
    Autocast caches casts only of weights that train, and the head of a LoRA run is frozen (tied to
    the embeddings, it stays fp32 for the lookup): on Gemma 3 that was 168 M values cast each step,
    0.2-0.4 s on 2 cores against steps of about 5 s."""
    if type(head) is not torch.nn.Linear or head.weight.requires_grad:
        return head
    weight, device_type = head.weight, head.weight.device.type
    if not torch.is_autocast_enabled(device_type):
        return head
    dtype = torch.get_autocast_dtype(device_type)
    cached = getattr(head, "_cast_once", None)
    if cached is None or cached[0] is not weight or cached[1] != weight._version or cached[2].dtype != dtype:
        cached = (weight, weight._version, weight.detach().to(dtype))
        head._cast_once = cached
    low, bias = cached[2], head.bias
    return lambda hidden: F.linear(hidden, low, bias)


def backbone_and_head(model):
    """The transformer body and the output head of a causal LM, through any PEFT wrapper."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, base.base_model_prefix), base.get_output_embeddings(), base


def head_has_extra_math(config) -> bool:
    """Soft-capped (Gemma 2) or scaled (Granite's logits_scaling, Cohere's logit_scale) output logits:
    running the head alone would skip that step, so the model's own forward computes the logits."""
    scaled = any(float(getattr(config, name, None) or 1.0) != 1.0 for name in ("logits_scaling", "logit_scale"))
    return bool(getattr(config, "final_logit_softcapping", None)) or scaled


def summed_token_loss(
    model, input_ids: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor | None = None, **packing
) -> tuple[torch.Tensor, int]:
    """Sum of next-token cross-entropy over the trained positions, and how many there were.

    The output head runs only on positions whose next token is trained. On chat data most
    positions are system and user text, and the head (vocab × hidden) is a large share of a small
    model's FLOPs, so this is the same loss for a fraction of the work and memory.
    The caller divides by the trained-token count of the whole optimizer step, so that gradient
    accumulation gives the same update as one big batch.
    `packing`: `position_ids` and `packed_bounds` of a padding-free row (train/packing.py).
    """
    body, head, base = backbone_and_head(model)
    targets = labels[:, 1:]
    selected = targets != IGNORE_INDEX
    count = int(selected.sum())
    if head_has_extra_math(base.config):
        logits = model(input_ids=input_ids, attention_mask=attention_mask, **packing).logits[:, :-1][selected]
        return F.cross_entropy(logits.float(), targets[selected], reduction="sum"), count
    hidden = body(input_ids=input_ids, attention_mask=attention_mask, **packing).last_hidden_state
    return chunked_head_loss(head_cast_once(head), hidden[:, :-1][selected], targets[selected]), count


def reference_mean_loss(model, input_ids, attention_mask, labels) -> torch.Tensor:
    """The plain full-logits loss, for tests to pin `summed_token_loss` against."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)).float(), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX
    )


def sequence_log_probs(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Per row, the summed log-probability of its trained tokens: log π(answer | prompt).
    The output head runs on trained positions only, as in summed_token_loss."""
    body, head, base = backbone_and_head(model)
    targets = labels[:, 1:]
    selected = targets != IGNORE_INDEX
    if head_has_extra_math(base.config):
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1][selected]
    else:
        hidden = body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits = head_cast_once(head)(hidden[:, :-1][selected])
    token_log_probs = logits.float().log_softmax(-1).gather(-1, targets[selected][:, None]).squeeze(-1)
    rows = selected.nonzero()[:, 0]
    return torch.zeros(input_ids.size(0), dtype=token_log_probs.dtype, device=input_ids.device).index_add(
        0, rows, token_log_probs
    )


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Direct Preference Optimization (Rafailov et al., 2023), per pair:

        loss = -log σ(β · [(log π(y_w) - log π_ref(y_w)) - (log π(y_l) - log π_ref(y_l))])

    Returns the per-pair losses and the implicit rewards β·(log π - log π_ref) of both answers.
    """
    chosen_rewards = beta * (policy_chosen - reference_chosen)
    rejected_rewards = beta * (policy_rejected - reference_rejected)
    losses = -F.logsigmoid(chosen_rewards - rejected_rewards)
    return losses, chosen_rewards.detach(), rejected_rewards.detach()
