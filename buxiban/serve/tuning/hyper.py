"""Fine-tuning job requests: checked field by field, "auto" hyperparameters resolved, and turned
into a buxiban run config."""

from __future__ import annotations

import math
import re
from typing import Any

from ...errors import ServeError
from ...train.auto import AUTO, RATES, choose

SUFFIX = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MIN_EPOCHS = 1
# the highest rate a multiplier may scale: a request must not reach a rate of 1 or more
HIGHEST_RATE = {kind: max(rate for (method, _, _), rate in RATES.items() if method == kind) for kind in ("sft", "dpo")}


def train_method(kind: str) -> str:
    return "dpo" if kind == "dpo" else "sft"


def base_learning_rate(kind: str, parameters: int) -> float:
    """The rate `buxiban train` picks for a LoRA run of this kind on a base of this size."""
    return choose(train_method(kind), "lora", parameters, 1).learning_rate.value


def parse_method(method: Any, hyperparameters: Any) -> dict:
    """The request's `method` (or the legacy top-level `hyperparameters`) as
    {"type": ..., "hyperparameters": {...}} with each value an int/float or "auto"."""
    if method is None:
        method = {"type": "supervised", "supervised": {"hyperparameters": hyperparameters or {}}}
    if not isinstance(method, dict) or method.get("type") not in ("supervised", "dpo"):
        kind = method.get("type") if isinstance(method, dict) else method
        raise ServeError(f"method.type is {kind!r}; this server runs 'supervised' and 'dpo'", "method.type")
    kind = method["type"]
    section = method.get(kind) or {}
    if not isinstance(section, dict):
        raise ServeError(f"method.{kind} must be an object", f"method.{kind}")
    given = section.get("hyperparameters") or hyperparameters or {}
    if not isinstance(given, dict):
        raise ServeError("hyperparameters must be an object", f"method.{kind}.hyperparameters")
    allowed = {"n_epochs": int, "batch_size": int, "learning_rate_multiplier": float}
    if kind == "dpo":
        allowed["beta"] = float
    checked = {}
    for key, value in given.items():
        where = f"method.{kind}.hyperparameters.{key}"
        if key not in allowed:
            raise ServeError(f"unknown hyperparameter {key!r}; use {', '.join(allowed)}", where)
        if value == "auto" or value is None:
            checked[key] = "auto"
            continue
        number_ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if allowed[key] is int and not (number_ok and float(value).is_integer()):
            raise ServeError(f'{key} must be a whole number or "auto", got {value!r}', where)
        if not number_ok or not math.isfinite(value) or value <= 0:
            raise ServeError(f'{key} must be a positive number or "auto", got {value!r}', where)
        if key == "n_epochs" and not MIN_EPOCHS <= value <= 50:
            raise ServeError(f"n_epochs must be 1 to 50, got {value}", where)
        highest = HIGHEST_RATE[train_method(kind)]
        if key == "learning_rate_multiplier" and value * highest >= 1:
            raise ServeError(
                f"learning_rate_multiplier {value} gives a learning rate of up to "
                f"{value * highest:g}; use a multiplier near 1",
                where,
            )
        checked[key] = allowed[key](value)
    return {"type": kind, "hyperparameters": {k: checked.get(k, "auto") for k in allowed}}


def resolve_auto(method: dict, examples: int, base_parameters: int) -> dict:
    """Concrete numbers for every "auto": the same choice `buxiban train` and `plan` make for a LoRA
    run on this base and this many training examples (train/auto.py)."""
    given = method["hyperparameters"]
    chosen = choose(
        train_method(method["type"]),
        "lora",
        base_parameters,
        examples,
        epochs=given["n_epochs"] if given["n_epochs"] != AUTO else AUTO,
        batch_size=given["batch_size"] if given["batch_size"] != AUTO else AUTO,
    )
    concrete = {
        "n_epochs": chosen.epochs.value,
        "batch_size": int(chosen.batch_size.value),
        "learning_rate_multiplier": 1.0
        if given["learning_rate_multiplier"] == AUTO
        else given["learning_rate_multiplier"],
    }
    if method["type"] == "dpo":
        concrete["beta"] = 0.1 if given.get("beta", AUTO) == AUTO else given["beta"]
    return concrete


def total_steps(examples: int, concrete: dict) -> int:
    return max(1, math.ceil(concrete["n_epochs"] * math.ceil(examples / concrete["batch_size"])))


def method_object(method: dict, concrete: dict | None) -> dict:
    """The job's `method` as OpenAI returns it: the resolved numbers once known."""
    kind = method["type"]
    return {"type": kind, kind: {"hyperparameters": concrete or method["hyperparameters"]}}


def run_overrides(
    job: dict, concrete: dict, base_spec: str, base_parameters: int, job_dir, from_run: str | None, extra: list[str]
) -> list[str]:
    """`key=value` overrides for `buxiban train`: the job's data copies and numbers, then the
    server's own extra settings (e.g. train.threads=1)."""
    kind = job["method"]["type"]
    overrides = [
        f"model={base_spec}",
        f"method={'dpo' if kind == 'dpo' else 'sft'}",
        "adapter=lora",
        f"output_dir={job_dir / 'run'}",
        f"data.train={job_dir / 'train.jsonl'}",
        f"train.epochs={concrete['n_epochs']}",
        f"train.batch_size={concrete['batch_size']}",
        f"train.learning_rate={base_learning_rate(kind, base_parameters) * concrete['learning_rate_multiplier']:.6g}",
        f"train.seed={job['seed']}",
        "train.keep_checkpoints=2",
    ]
    if job.get("validation_file"):
        overrides.append(f"data.validation={job_dir / 'validation.jsonl'}")
    else:  # as on OpenAI: without a validation file every example trains
        overrides.append("data.validation_fraction=0")
    if kind == "dpo":
        overrides.append(f"dpo.beta={concrete['beta']}")
        if from_run:
            overrides.append(f"dpo.from_run={from_run}")
    return overrides + list(extra)


def check_suffix(suffix: Any) -> str | None:
    if suffix is None or suffix == "":
        return None
    if not isinstance(suffix, str) or not SUFFIX.match(suffix):
        raise ServeError(f"suffix {str(suffix)[:80]!r} must be 1-64 letters, digits, '-' or '_'", "suffix")
    return suffix


def fine_tuned_name(base_id: str, suffix: str | None, job_id: str) -> str:
    """OpenAI's shape, ft:<base>:<suffix>:<id>, kept within the registry's 128 characters."""
    room = 128 - len("ft:") - len(f":{suffix or ''}:{job_id}")
    return f"ft:{base_id[:room]}:{suffix or ''}:{job_id}"
