"""Losses, written out so their arithmetic is visible and testable."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.tokenize import IGNORE_INDEX


def backbone_and_head(model):
    """The transformer body and the output head of a causal LM, through any PEFT wrapper."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, base.base_model_prefix), base.get_output_embeddings(), base


def summed_token_loss(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Sum of next-token cross-entropy over the trained positions, and how many there were.

    The output head runs only on positions whose next token is trained. On chat data most
    positions are system and user text, and the head (vocab × hidden) is a large share of a small
    model's FLOPs, so this is the same loss for a fraction of the work and memory.
    The caller divides by the trained-token count of the whole optimizer step, so that gradient
    accumulation gives the same update as one big batch.
    """
    body, head, base = backbone_and_head(model)
    targets = labels[:, 1:]
    selected = targets != IGNORE_INDEX
    count = int(selected.sum())
    if getattr(base.config, "final_logit_softcapping", None):  # the head has extra math: use the model's own
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1][selected]
    else:
        hidden = body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits = head(hidden[:, :-1][selected])
    loss = F.cross_entropy(logits.float(), targets[selected], reduction="sum")
    return loss, count


def reference_mean_loss(model, input_ids, attention_mask, labels) -> torch.Tensor:
    """The plain full-logits loss, for tests to pin `summed_token_loss` against."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(), labels[:, 1:].reshape(-1),
                           ignore_index=IGNORE_INDEX)
