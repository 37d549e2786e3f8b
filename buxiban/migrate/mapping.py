"""The hosted job's settings as a local run config: each setting with the value it had, the value it
gets here and why, so the record says what was carried over, what was translated and what was left.

The rule for the learning rate is the one `buxiban serve`'s jobs API applies to the same request:
OpenAI's `learning_rate_multiplier` scales a base rate OpenAI does not publish, so the same multiplier
scales buxiban's measured LoRA rate for the local base model's size (train/auto.py). Epochs and the
batch size are the hosted run's own numbers: the comparison is then between two runs of one recipe."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..train.auto import AUTO, MAX_BATCH, choose
from .job import SourceJob

SUFFIX_CHARACTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"


@dataclass
class Mapping:
    overrides: list[str] = field(default_factory=list)  # key=value for the run config
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {source, local, reason}

    def set(self, name: str, source: Any, local: Any, reason: str, *overrides: str) -> None:
        self.settings[name] = {"source": source, "local": local, "reason": reason}
        self.overrides.extend(overrides)


def local_method(job: SourceJob) -> str:
    return "dpo" if job.method == "dpo" else "sft"


def map_job(job: SourceJob, base_spec: str, base_name: str, base_parameters: int, examples: int) -> Mapping:
    """`examples`: the training examples the local run will see (the rate's rule depends on the
    base's size only; epochs and batch size left on auto depend on the count too)."""
    mapped = Mapping()
    method = local_method(job)
    mapped.set(
        "model",
        job.model,
        base_name,
        "the hosted base's weights cannot be downloaded; the local base is --model",
        f"model={base_spec}",
    )
    mapped.set(
        "method",
        job.method,
        method,
        "the same objective: supervised fine-tuning on chat conversations"
        if method == "sft"
        else "the same objective: DPO on preference pairs",
        f"method={method}",
    )
    mapped.set(
        "adapter",
        None,
        "lora",
        "buxiban's default LoRA, r=16 on all linear layers: a hosted fine-tune cannot be downloaded as weights, "
        "so a local adapter is trained on the same data",
        "adapter=lora",
    )
    hyper = job.hyperparameters
    epochs = hyper["n_epochs"]
    if epochs == AUTO:
        chosen = choose(method, "lora", base_parameters, examples).epochs
        mapped.set("n_epochs", AUTO, AUTO, f"the source did not say how many it chose; buxiban's rule: {chosen.reason}")
    else:
        mapped.set("n_epochs", epochs, epochs, "the passes the hosted model was trained with", f"train.epochs={epochs}")
    _map_batch(mapped, hyper["batch_size"])
    _map_rate(mapped, method, hyper["learning_rate_multiplier"], base_name, base_parameters, examples)
    if method == "dpo":
        beta = hyper.get("beta", AUTO)
        if beta == AUTO:
            mapped.set("beta", AUTO, 0.1, "left on auto at the source; buxiban's default strength 0.1", "dpo.beta=0.1")
        else:
            mapped.set("beta", beta, beta, "the same DPO strength", f"dpo.beta={beta}")
    if job.seed is not None:
        mapped.set(
            "seed",
            job.seed,
            job.seed % 2**31,
            "the hosted job's seed: it keeps this run repeatable, though another model on other hardware does "
            "not repeat the hosted run",
            f"train.seed={job.seed % 2**31}",
        )
    suffix = local_suffix(job.suffix)
    if job.suffix is not None:
        mapped.set(
            "suffix",
            job.suffix,
            suffix,
            "kept for the adapter's name" if suffix == job.suffix else "letters, digits, '-' and '_' kept",
        )
    for name, value in job.unmapped.items():
        mapped.set(name, value, None, "no local equivalent: not carried over")
    return mapped


def _map_batch(mapped: Mapping, batch: int | str) -> None:
    if batch == AUTO:
        mapped.set("batch_size", AUTO, AUTO, "left on auto at the source; buxiban's rule chooses")
        return
    micro = max(d for d in range(1, min(batch, MAX_BATCH) + 1) if batch % d == 0)
    if micro == batch:
        mapped.set(
            "batch_size", batch, batch, "the hosted batch size", f"train.batch_size={batch}", "train.grad_accum=1"
        )
        return
    mapped.set(
        "batch_size",
        batch,
        {"batch_size": micro, "grad_accum": batch // micro},
        f"the same {batch} examples per optimizer step, as {batch // micro} accumulated micro-batches of {micro}: "
        f"more than {MAX_BATCH} rows at once gains little on a CPU or one GPU and costs memory",
        f"train.batch_size={micro}",
        f"train.grad_accum={batch // micro}",
    )


def _map_rate(
    mapped: Mapping, method: str, multiplier: float | str, base_name: str, parameters: int, examples: int
) -> None:
    rule = choose(method, "lora", parameters, examples).learning_rate
    factor = 1.0 if multiplier == AUTO else float(multiplier)
    rate = float(f"{rule.value * factor:.6g}")
    mapped.set(
        "learning_rate_multiplier",
        multiplier,
        {"learning_rate": rate},
        f"the multiplier scales a base rate the source does not publish, so it scales buxiban's base rate for "
        f"{rule.reason} on {base_name}: {rule.value:g} × {factor:g} = {rate:g}, as `buxiban serve`'s jobs API "
        "does for the same request" + ("; auto is a multiplier of 1" if multiplier == AUTO else ""),
        f"train.learning_rate={rate}",
    )


def local_suffix(suffix: str | None) -> str | None:
    """The source's suffix in the characters buxiban allows in names, at most 64 of them."""
    if suffix is None:
        return None
    kept = "".join(ch if ch in SUFFIX_CHARACTERS else "-" for ch in suffix)[:64].strip("-")
    return kept or None
