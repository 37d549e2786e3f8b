"""Typed run configuration: YAML plus dotted `key=value` overrides.

Every problem (unknown key, wrong type, bad value) is collected and raised together as one
ConfigError before any model is loaded, so a typo costs seconds, not a training run.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, Problem

EMBEDDED_MODEL = "embedded"


@dataclass
class DataConfig:
    train: str = ""
    validation: str | None = None  # a separate file; otherwise a slice of `train` is held out
    validation_fraction: float = 0.1
    max_length: int = 512
    overlength: str = "drop"  # drop | truncate (keep the start if trained tokens remain)


@dataclass
class LoraConfig:
    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    target_modules: list[str] | str = "all-linear"


@dataclass
class FreezeConfig:
    layers: int = 2  # train only the last N transformer blocks
    train_head: bool = False  # also train the output head (with tied embeddings: the embeddings too)


@dataclass
class DpoConfig:
    beta: float = 0.1  # how far the policy may move from the reference; smaller = further
    from_run: str | None = None  # an SFT run directory: start from its adapter (the usual SFT → DPO chain)
    sft_weight: float = 0.0  # add this × the chosen answers' per-token NLL: keeps DPO from unlearning them


@dataclass
class MixConfig:
    general: str | None = None  # "builtin", a chat JSONL file, or None for no replay mixing
    ratio: float = 0.2  # the general share of the mixed training data
    seed: int = 0


@dataclass
class TrainConfig:
    # auto: chosen from the method, what is trained, the model's and the data's size (train/auto.py)
    epochs: float | str = "auto"
    max_steps: int | None = None  # optimizer steps; wins over `epochs` when set
    batch_size: int | str = "auto"
    grad_accum: int = 1
    learning_rate: float | str = "auto"
    weight_decay: float = 0.0
    warmup_ratio: float = 0.05
    lr_schedule: str = "cosine"
    max_grad_norm: float = 1.0
    seed: int = 42
    precision: str = "auto"  # auto picks bf16 autocast where the CPU/GPU runs it natively
    eval_every: int = 0  # optimizer steps between validation passes; 0 = once per epoch
    threads: int | None = None  # torch intra-op threads; None = physical cores available
    early_stopping_patience: int | None = None  # validation passes without improvement before stopping
    early_stopping_min_delta: float = 0.0
    checkpoint_every: int = 0  # optimizer steps between checkpoints; 0 = once per epoch
    keep_checkpoints: int = 2
    tracking: list[str] = field(default_factory=list)  # metrics.jsonl always; add "tensorboard", "mlflow"
    # true: recompute whole blocks in backward (least memory, ~30 % slower); selective: keep matmul and
    # attention outputs, recompute the cheap rest (train/recompute.py)
    gradient_checkpointing: bool | str = False
    padding_free: bool = True  # SFT: a micro-batch's conversations in one row, no pad tokens (train/packing.py)
    # SFT: split a micro-batch into pieces of at most this many tokens, accumulated into the same update
    # (activation memory follows the largest piece, not the longest draw); 0 = never split
    micro_batch_tokens: int = 0
    # SFT: NEFTune's noise on the input embeddings while training (train/neftune.py); 0 = off
    neftune_alpha: float = 0.0
    sharding: str = "none"  # with N processes: none (replicated), fsdp = zero3, or zero2; see train/sharding.py


@dataclass
class RunConfig:
    model: str = EMBEDDED_MODEL
    trust_remote_code: bool = False
    template: str = "auto"  # the chat template: auto, a family name (models/templates.py) or a .jinja file
    method: str = "sft"  # the objective: sft, or dpo on preference pairs
    adapter: str = "lora"  # what is trained: lora, dora, qlora, full, freeze
    output_dir: str = "runs/latest"
    data: DataConfig = field(default_factory=DataConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    freeze: FreezeConfig = field(default_factory=FreezeConfig)
    dpo: DpoConfig = field(default_factory=DpoConfig)
    mix: MixConfig = field(default_factory=MixConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


METHODS = ("sft", "dpo")
ADAPTERS = ("lora", "dora", "qlora", "full", "freeze")
TRACKERS = ("tensorboard", "mlflow")
LR_SCHEDULES = ("cosine", "linear", "constant")
SHARDING = ("none", "fsdp", "zero2", "zero3")  # see train/sharding.py
PRECISIONS = ("auto", "bf16", "fp32")
OVERLENGTH = ("drop", "truncate")


def load_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """Read a YAML file (or start from defaults), apply `a.b=value` overrides, validate all."""
    problems: list[Problem] = []
    raw: dict[str, Any] = {}
    where = str(path) if path else "<defaults>"
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}", [Problem(where, str(exc.strerror or exc))]) from exc
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark else ""
            raise ConfigError(f"{path} is not valid YAML", [Problem(where + line, str(exc).splitlines()[0])]) from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path} must be a mapping", [Problem(where, "top level is not a mapping of keys")])
        raw = loaded
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            problems.append(Problem("override", f"'{item}' is not key=value", fix="write e.g. train.epochs=2"))
            continue
        _set_dotted(raw, key.strip(), _parse_scalar(value))
    config = _build(RunConfig, raw, "", where, problems)
    problems.extend(_check_values(config, where))
    if problems:
        raise ConfigError(f"{len(problems)} problem(s) in the run config", problems)
    return config


def _parse_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _all_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    for name, hint in typing.get_type_hints(cls).items():
        keys.append(prefix + name)
        if dataclasses.is_dataclass(hint):
            keys.extend(_all_keys(hint, prefix + name + "."))
    return keys


def _build(cls: type, raw: dict[str, Any], prefix: str, where: str, problems: list[Problem]) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = prefix + str(key)
        if key not in fields:
            problems.append(Problem(where, f"unknown key '{dotted}'", fix=_suggest(dotted, cls, prefix)))
            continue
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                problems.append(Problem(where, f"'{dotted}' must be a section of keys, got {value!r}"))
                continue
            values[key] = _build(hint, value, dotted + ".", where, problems)
            continue
        ok, converted = _coerce(value, hint)
        if not ok:
            problems.append(Problem(where, f"'{dotted}' must be {_type_name(hint)}, got {value!r}"))
            continue
        values[key] = converted
    return cls(**values)


def _suggest(dotted: str, cls: type, prefix: str) -> str:
    siblings = [prefix + f.name for f in dataclasses.fields(cls)]
    everything = _all_keys(RunConfig)
    close = difflib.get_close_matches(dotted, everything, n=1, cutoff=0.6)
    if not close:  # a right key in the wrong section: `epochs` instead of `train.epochs`
        leaf = dotted.rsplit(".", 1)[-1]
        close = [k for k in everything if k.rsplit(".", 1)[-1] == leaf][:1]
    hint = f"did you mean '{close[0]}'? " if close else ""
    return hint + "valid keys here: " + ", ".join(siblings)


def _coerce(value: Any, hint: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            ok, converted = _coerce(value, option)
            if ok:
                return True, converted
        return False, None
    if hint is type(None):
        return value is None, None
    if origin is list:
        (item_type,) = typing.get_args(hint)
        if not isinstance(value, list):
            return False, None
        items = [_coerce(v, item_type) for v in value]
        return all(ok for ok, _ in items), [v for _, v in items]
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        if isinstance(value, str):  # PyYAML reads `2e-4` (no dot) as a string
            try:
                return True, float(value)
            except ValueError:
                return False, None
        return False, None
    if hint is str:
        return isinstance(value, str), value
    return isinstance(value, hint), value


def _type_name(hint: Any) -> str:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if hint is type(None):
        return "null"
    if typing.get_origin(hint) is list:
        return f"a list of {_type_name(args[0])}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(hint, str(hint))


def _check_values(config: RunConfig, where: str) -> list[Problem]:
    problems: list[Problem] = []

    def bad(key: str, message: str, fix: str = "") -> None:
        problems.append(Problem(where, f"'{key}' {message}", fix=fix))

    def one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
        if value not in allowed:
            close = difflib.get_close_matches(value, allowed, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            bad(key, f"is '{value}', not one of {', '.join(allowed)}", hint.strip())

    d, lora, t = config.data, config.lora, config.train
    if not config.model:
        bad("model", "is empty", "use 'embedded', a local model directory, a .gguf file or a hub ID")
    one_of("method", config.method, METHODS)
    one_of("adapter", config.adapter, ADAPTERS)
    if config.method == "dpo" and config.adapter not in ("lora", "dora"):
        bad(
            "adapter",
            f"is '{config.adapter}' with method dpo",
            "DPO here trains a LoRA or DoRA adapter, so the reference model costs no second copy of the weights",
        )
    if config.dpo.from_run and config.method != "dpo":
        bad("dpo.from_run", "is set but method is not dpo", "set method: dpo, or remove dpo.from_run")
    if config.dpo.beta <= 0:
        bad("dpo.beta", f"is {config.dpo.beta}", "use a positive number, typically 0.05 to 0.5")
    if config.dpo.sft_weight < 0:
        bad("dpo.sft_weight", f"is {config.dpo.sft_weight}", "use 0 (plain DPO) or a positive weight such as 1.0")
    if config.freeze.layers < 1:
        bad("freeze.layers", f"is {config.freeze.layers}", "train at least the last block")
    if config.mix.general is not None and not 0.0 <= config.mix.ratio < 1.0:
        bad("mix.ratio", f"is {config.mix.ratio}", "use the general share in [0, 1), e.g. 0.2")
    if config.mix.general is not None and config.method == "dpo":
        bad("mix.general", "mixes chat data, but method dpo trains on preference pairs", "remove mix for DPO")
    if not d.train:
        bad("data.train", "is not set", "give the path of an OpenAI chat JSONL file")
    if not 0.0 <= d.validation_fraction < 1.0:
        bad("data.validation_fraction", f"is {d.validation_fraction}", "use a number in [0, 1)")
    if d.max_length < 16:
        bad("data.max_length", f"is {d.max_length}", "use at least 16 tokens")
    one_of("data.overlength", d.overlength, OVERLENGTH)
    if lora.r < 1:
        bad("lora.r", f"is {lora.r}", "use a positive rank such as 8 or 16")
    if lora.alpha <= 0:
        bad("lora.alpha", f"is {lora.alpha}", "use a positive number, often 2 × r")
    if not 0.0 <= lora.dropout < 1.0:
        bad("lora.dropout", f"is {lora.dropout}", "use a number in [0, 1)")
    for key, value in (
        ("train.epochs", t.epochs),
        ("train.batch_size", t.batch_size),
        ("train.learning_rate", t.learning_rate),
    ):
        if isinstance(value, str) and value != "auto":
            kind = "an integer" if key == "train.batch_size" else "a number"
            bad(key, f"must be {kind} or auto, got '{value}'", "leave it out (auto is the default) or give a number")
    if not isinstance(t.epochs, str) and not t.epochs > 0 and t.max_steps is None:  # NaN too
        bad("train.epochs", f"is {t.epochs}", "use a positive number of epochs, auto, or set train.max_steps")
    if t.max_steps is not None and t.max_steps < 1:
        bad("train.max_steps", f"is {t.max_steps}", "use a positive number of optimizer steps")
    for key, value in (("train.batch_size", t.batch_size), ("train.grad_accum", t.grad_accum)):
        if not isinstance(value, str) and value < 1:
            bad(key, f"is {value}", "use a positive integer")
    if not isinstance(t.learning_rate, str) and not 0.0 < t.learning_rate < 1.0:
        bad(
            "train.learning_rate",
            f"is {t.learning_rate}",
            "LoRA usually wants 1e-4 to 1e-3, full fine-tuning 1e-5 to 5e-5; auto picks one",
        )
    if t.weight_decay < 0:
        bad("train.weight_decay", f"is {t.weight_decay}", "use 0 or a small positive number")
    if not 0.0 <= t.warmup_ratio < 1.0:
        bad("train.warmup_ratio", f"is {t.warmup_ratio}", "use a fraction of the steps in [0, 1)")
    one_of("train.lr_schedule", t.lr_schedule, LR_SCHEDULES)
    one_of("train.precision", t.precision, PRECISIONS)
    one_of("train.sharding", t.sharding, SHARDING)
    if isinstance(t.gradient_checkpointing, str) and t.gradient_checkpointing != "selective":
        bad("train.gradient_checkpointing", f"is {t.gradient_checkpointing!r}", "use true, false or selective")
    if t.micro_batch_tokens < 0:
        bad("train.micro_batch_tokens", f"is {t.micro_batch_tokens}", "use 0 (never split) or a positive token count")
    if t.micro_batch_tokens and t.sharding != "none":  # every process must run the same number of forwards
        bad(
            "train.micro_batch_tokens",
            "cannot split micro-batches of a sharded model",
            "use train.micro_batch_tokens=0 with train.sharding, or lower train.batch_size",
        )
    if t.sharding != "none" and config.adapter == "qlora":
        bad("train.sharding", "cannot shard 4-bit QLoRA weights", "use train.sharding=none with adapter=qlora")
    if t.max_grad_norm < 0:
        bad("train.max_grad_norm", f"is {t.max_grad_norm}", "use 0 to turn clipping off, or a positive norm")
    if t.eval_every < 0:
        bad("train.eval_every", f"is {t.eval_every}", "use 0 (once per epoch) or a positive step count")
    if t.early_stopping_patience is not None and t.early_stopping_patience < 1:
        bad(
            "train.early_stopping_patience",
            f"is {t.early_stopping_patience}",
            "use a positive number of validation passes",
        )
    if t.early_stopping_patience is not None and d.validation is None and d.validation_fraction == 0:
        bad("train.early_stopping_patience", "needs validation data", "set data.validation or data.validation_fraction")
    if t.checkpoint_every < 0:
        bad("train.checkpoint_every", f"is {t.checkpoint_every}", "use 0 (once per epoch) or a positive step count")
    if t.keep_checkpoints < 1:
        bad("train.keep_checkpoints", f"is {t.keep_checkpoints}", "keep at least 1")
    for tracker in t.tracking:
        one_of("train.tracking", tracker, TRACKERS)
    if t.threads is not None and t.threads < 1:
        bad("train.threads", f"is {t.threads}", "leave it unset or use a positive count")
    if not 0 <= t.neftune_alpha <= 100:  # also refuses nan; the paper's values are 5 to 15
        bad("train.neftune_alpha", f"is {t.neftune_alpha}", "use 0 (off) or a strength such as 5")
    if t.neftune_alpha and config.method != "sft":
        bad("train.neftune_alpha", f"is set for method {config.method}", "use it for SFT only: remove it here")
    return problems


def config_to_yaml(config: RunConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
