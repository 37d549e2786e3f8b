"""`auto` hyperparameters: learning rate, epochs and batch size from the method, what is trained, the
model's size and the data's size. One function for `buxiban train`, `plan` and the fine-tuning jobs
API, so the same data and model give the same run whichever way it is started.

The rates and epochs come from held-out exact match on three data sets (the shipped example and two
no one tuned on, bench/outcome; the grid and its results are in bench/outcome/README.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

AUTO = "auto"
SMALL_MODEL = 1_000_000_000  # parameters; below it LoRA takes a much higher rate
ADAPTER_KINDS = ("lora", "dora", "qlora")

# (method, what is trained, small model) -> peak learning rate
RATES = {
    ("sft", "adapter", True): 1e-3,
    ("sft", "adapter", False): 2e-4,
    ("sft", "freeze", True): 1e-4,
    ("sft", "freeze", False): 5e-5,
    ("sft", "full", True): 5e-5,
    ("sft", "full", False): 1e-5,
    # 2e-5 broke two held-out answers on two of four sets, 1e-5 at most one on each (README, "DPO")
    ("dpo", "adapter", True): 1e-5,
    ("dpo", "adapter", False): 5e-6,
}
MAX_BATCH = 8  # LoRA on a CPU or one GPU gains little from more; small files keep small batches
EXAMPLES_PER_BATCH_ROW = 16
# SFT: enough passes that a short answer is learned word for word, and enough optimizer steps that a
# small file still gets them; DPO moves an already trained model and needs few passes.
SFT_MIN_EPOCHS, SFT_MAX_EPOCHS, SFT_TARGET_STEPS = 4, 10, 140
DPO_EPOCHS = 2


@dataclass(frozen=True)
class Choice:
    value: float
    auto: bool
    reason: str

    def record(self) -> dict:
        return {"value": self.value, "auto": self.auto, "reason": self.reason}


@dataclass(frozen=True)
class Hyperparameters:
    learning_rate: Choice
    epochs: Choice
    batch_size: Choice

    def record(self) -> dict:
        return {name: getattr(self, name).record() for name in ("learning_rate", "epochs", "batch_size")}

    def lines(self) -> list[str]:
        return [
            f"{name.replace('_', ' ')} {choice.value:g} ({'auto: ' + choice.reason if choice.auto else 'as configured'})"
            for name, choice in (
                ("learning_rate", self.learning_rate),
                ("epochs", self.epochs),
                ("batch_size", self.batch_size),
            )
        ]


def trained_part(adapter: str) -> str:
    return "adapter" if adapter in ADAPTER_KINDS else adapter


def choose(
    method: str,
    adapter: str,
    parameters: int,
    examples: int,
    learning_rate: float | str = AUTO,
    epochs: float | str = AUTO,
    batch_size: int | str = AUTO,
    grad_accum: int = 1,
) -> Hyperparameters:
    """Each value given as a number is kept; each `auto` is chosen, with the reason."""
    size = f"{parameters / 1e6:,.0f}M" if parameters < 1e9 else f"{parameters / 1e9:,.1f}B"
    small = parameters < SMALL_MODEL
    if batch_size == AUTO:
        rows = max(1, min(MAX_BATCH, examples // EXAMPLES_PER_BATCH_ROW))
        batch = Choice(rows, True, f"one row per {EXAMPLES_PER_BATCH_ROW} of {examples} examples, at most {MAX_BATCH}")
    else:
        batch = Choice(int(batch_size), False, "")
    if learning_rate == AUTO:
        part = trained_part(adapter)
        key = (method, part, small)
        if key not in RATES:  # DPO trains an adapter only (config.py refuses the rest)
            key = (method, "adapter", small)
        kind = {
            "adapter": {"lora": "LoRA", "dora": "DoRA", "qlora": "QLoRA"}.get(adapter, adapter),
            "freeze": "the last blocks",
            "full": "every weight",
        }
        rate = Choice(
            RATES[key],
            True,
            f"{method.upper()} of {kind[part]} on a {size}-parameter model "
            f"({'under' if small else 'from'} {SMALL_MODEL / 1e9:g}B)",
        )
    else:
        rate = Choice(float(learning_rate), False, "")
    if epochs == AUTO:
        if method == "dpo":
            passes = Choice(DPO_EPOCHS, True, "DPO refines a trained model: two passes over the pairs")
        else:
            per_epoch = max(1, math.ceil(examples / (batch.value * grad_accum)))
            wanted = math.ceil(SFT_TARGET_STEPS / per_epoch)
            count = min(SFT_MAX_EPOCHS, max(SFT_MIN_EPOCHS, wanted))
            passes = Choice(
                count,
                True,
                f"at least {SFT_MIN_EPOCHS} and about {SFT_TARGET_STEPS} optimizer steps "
                f"({per_epoch} per epoch), at most {SFT_MAX_EPOCHS}",
            )
    else:
        passes = Choice(float(epochs), False, "")
    return Hyperparameters(rate, passes, batch)


def base_parameters(adapter: str, trainable: int, total: int) -> int:
    """The base model's size: an adapter's own weights are not part of it."""
    return total - trainable if adapter in ADAPTER_KINDS else total


def resolve_config(config, examples: int, parameters: int) -> Hyperparameters:
    """Put concrete numbers into config.train in place of `auto`; returns what was chosen and why."""
    t = config.train
    chosen = choose(
        config.method, config.adapter, parameters, examples, t.learning_rate, t.epochs, t.batch_size, t.grad_accum
    )
    t.learning_rate, t.epochs, t.batch_size = (
        chosen.learning_rate.value,
        chosen.epochs.value,
        int(chosen.batch_size.value),
    )
    return chosen
