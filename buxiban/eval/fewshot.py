"""Few-shot prompts: the base model shown k training conversations before the question. This is
what a user would do instead of fine-tuning, so it is the baseline fine-tuning has to beat, and the
prompt whose length fine-tuning saves on every request."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

Messages = list[dict[str, Any]]


def pick_shots(conversations: Sequence[Messages], k: int, seed: int = 0) -> list[Messages]:
    """k conversations drawn without replacement, the same ones for every test question so that
    the prompt is a fixed cost (as a deployed few-shot prompt would be). Their system messages are
    dropped: the test question brings its own."""
    if k <= 0 or not conversations:
        return []
    chosen = random.Random(seed).sample(range(len(conversations)), min(k, len(conversations)))
    return [[m for m in conversations[i] if m["role"] != "system"] for i in sorted(chosen)]


def with_shots(prompt: Messages, shots: Sequence[Messages]) -> Messages:
    """The prompt with the example turns placed after its system message and before its first
    user turn, as alternating user/assistant messages that every chat template accepts."""
    system = [m for m in prompt[:1] if m["role"] == "system"]
    rest = prompt[len(system) :]
    return system + [m for shot in shots for m in shot] + rest
