"""What every training loop shares, so that sft.py and dpo.py show only their own math: the run
directory (new, overwritten or resumed), the model made trainable, the optimizer and schedule,
checkpoints, validation bookkeeping with early stopping, metrics, and the final save."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

from ..allocator import advice
from ..config import RunConfig, config_to_yaml
from ..errors import ModelLoadError, RunDirError
from ..models.adapt import (check_adapter_supported, count_parameters, load_trainable_state, make_trainable,
                            quantization_config, save_trained, store_frozen_linears_in, trainable_state)
from ..models.load import load_model, load_tokenizer, resolve
from .batching import collate
from ..runs import CONFIG, Manifest, file_sha256, is_run_dir, prepare_run_dir, read_manifest, write_manifest
from ..runs.checkpoints import is_complete_checkpoint
from .checkpoint import latest_checkpoint, load_checkpoint, rng_state, save_checkpoint
from .distributed import World, init_world
from .dropout import use_masked_dropout
from .flops import utilization
from .packing import collate_packed, packs_rows, use_varlen_attention
from .recompute import checkpointing_kwargs
from .schedule import learning_rate
from .sharding import full_model_state, full_optimizer_state, shard_model
from .tracking import MetricsLog, check_trackers

# Keys that may change between a run and its resume without changing what is computed.
RESUME_MAY_CHANGE = {"train.threads", "output_dir", "train.tracking"}


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast where the hardware runs it natively (measured 2.2–2.8× faster for LoRA on an
    AVX512-BF16 CPU); fp32 elsewhere, because emulated bf16 is slower than fp32."""
    if precision == "fp32":
        return None
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
    else:
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return torch.bfloat16 if precision == "bf16" or native else None


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def data_hashes(config: RunConfig) -> dict[str, str]:
    files = {"data.train": config.data.train, "data.validation": config.data.validation,
             "mix.general": config.mix.general if config.mix.general not in (None, "builtin") else None}
    hashes = {key: file_sha256(path) for key, path in files.items() if path}
    if config.dpo.from_run:
        hashes["dpo.from_run"] = file_sha256(Path(config.dpo.from_run) / "adapter" / "adapter_model.safetensors")
    return hashes


def _flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    train_loss: float
    val_loss: float | None
    seconds: float
    tokens_per_second: float
    utilization: dict | None = None  # model FLOPs utilization (train/flops.py)


@dataclass
class TrainRun:
    config: RunConfig
    out: Path
    world: World
    device: torch.device
    dtype: torch.dtype | None
    source: Any
    tokenizer: Any
    log: Callable[[str], None]
    resume_path: Path | None = None
    model: Any = None
    params: list = field(default_factory=list)
    optimizer: Any = None
    metrics: MetricsLog | None = None
    manifest: Manifest | None = None
    start_step: int = 0
    total_steps: int = 0
    steps_per_epoch: int = 1
    warmup_steps: int = 0
    eval_every: int = 1
    checkpoint_every: int = 1
    best_val: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0
    history: list[tuple[float, float]] = field(default_factory=list)  # (train loss, val loss) per validation
    best_state: dict | None = None
    started: float = 0.0
    bar: Any = None
    quiet: bool = False
    sharded_root: Any = None  # the FSDP root when train.sharding splits the model over processes

    # --- setting up -----------------------------------------------------------------------------

    def build(self, train_examples: int, examples_per_step: int, init_adapter: Path | None = None,
              extra_manifest: dict[str, Any] | None = None) -> None:
        """Load the model, make it trainable, set up the optimizer and schedule; restore a checkpoint."""
        config, t = self.config, self.config.train
        model = load_model(self.source, config.trust_remote_code, quantization=quantization_config(config.adapter))
        if init_adapter is not None:  # continue training an earlier run's adapter (SFT → DPO)
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
        else:
            model = make_trainable(model, config)
        self.model = model.to(self.device) if config.adapter != "qlora" else model
        if self.dtype is not None and config.adapter == "lora" and t.sharding == "none":
            store_frozen_linears_in(self.model, self.dtype)
        self.padding_free = packs_rows(config) and use_varlen_attention(self.model)
        if t.gradient_checkpointing:  # recomputed blocks keep no dropout noise, and torch's recomputes faster
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=checkpointing_kwargs(
                "selective" if t.gradient_checkpointing == "selective" else "full"))
        else:
            use_masked_dropout(self.model)
        self.sharded_root = shard_model(self.model, t.sharding, self.world.size)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=t.learning_rate, weight_decay=t.weight_decay)
        self.steps_per_epoch = max(1, math.ceil(train_examples / examples_per_step))
        self.total_steps = t.max_steps or max(1, math.ceil(t.epochs * self.steps_per_epoch))
        self.warmup_steps = math.ceil(t.warmup_ratio * self.total_steps)
        self.eval_every = t.eval_every or self.steps_per_epoch
        self.checkpoint_every = t.checkpoint_every or self.steps_per_epoch
        trainable, total = count_parameters(self.model)
        if self.resume_path is not None:
            state = load_checkpoint(self.resume_path, self.model, self.optimizer, self.world.rank)
            self.start_step = state["step"]
            self.best_val, self.best_step = state.get("best_val"), state.get("best_step")
            self.evals_since_best = state.get("evals_since_best", 0)
            self.history = [tuple(h) for h in state.get("history", [])]
            self.manifest = read_manifest(self.out)
            self.manifest.status, self.manifest.resumed_from = "running", self.resume_path.name
            self.log(f"resuming from {self.resume_path} at step {self.start_step} of {self.total_steps}")
        else:
            self.manifest = Manifest.from_dict({
                "status": "running", "method": config.method, "adapter": config.adapter,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "base_model": self.source.identity(),
                "trust_remote_code": config.trust_remote_code, "data_hashes": data_hashes(config),
                "parameters": {"trainable": trainable, "total": total}, **(extra_manifest or {})})
        if self.world.is_main:
            (self.out / CONFIG).write_text(config_to_yaml(config), encoding="utf-8")
            write_manifest(self.out, self.manifest)
            self.metrics = MetricsLog(self.out / "metrics.jsonl", self.start_step if self.resume_path else None,
                                      t.tracking, self.out, _flatten(config.to_dict()))
        self.log(f"{config.method} with {config.adapter} on {self.source.name}: {trainable:,} of {total:,} parameters "
                 f"trained; {self.total_steps} steps, {'bf16 autocast' if self.dtype else 'fp32'} on {self.device.type} "
                 f"with {torch.get_num_threads()} threads" + (f", {self.world.size} processes" if self.world.size > 1 else "")
                 + (", padding-free batches" if self.padding_free else ""))
        note = advice() if self.device.type == "cpu" and self.world.is_main else None
        if note:
            self.log(note)
        self.bar = _progress_bar(self.total_steps, self.start_step, self.world.is_main and not self.quiet)
        self.started = time.perf_counter()

    @property
    def sharded(self) -> bool:
        return self.sharded_root is not None

    def forward(self, loss_fn, **batch):
        """loss_fn(model, **batch), through the FSDP root when the model is sharded."""
        return self.sharded_root(loss_fn, **batch) if self.sharded else loss_fn(self.model, **batch)

    def collate(self, rows: list) -> dict[str, Any]:
        return collate_packed(rows) if self.padding_free else collate(rows, self.tokenizer.pad_token_id)

    def my_rows(self, rows: list) -> tuple[list, bool]:
        """This process's share of a micro-batch, and whether it is a stand-in. A sharded model runs
        collectives inside every forward, so a process whose share is empty (a short last batch)
        must still run one: it gets `[rows[0]]` and True, and must weight that row 0 in the loss."""
        mine = self.world.shard(rows)
        if mine or not self.sharded or not rows:
            return mine, False
        return rows[:1], True

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype) if self.dtype else contextlib.nullcontext()

    # --- each step ------------------------------------------------------------------------------

    def optimizer_step(self, step: int) -> tuple[float, float]:
        """Sum gradients across processes (FSDP already has), clip their global norm, take the step at
        this step's learning rate and clear them; returns (gradient norm before clipping, rate)."""
        t = self.config.train
        if not self.sharded:
            self.world.sum_gradients(self.params)
        limit = t.max_grad_norm if t.max_grad_norm > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, limit))
        rate = learning_rate(step, self.total_steps, t.learning_rate, self.warmup_steps, t.lr_schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = rate
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm, rate

    def log_step(self, step: int, **values: Any) -> None:
        if self.metrics is not None:
            self.metrics.write(step=step + 1, epoch=round((step + 1) / self.steps_per_epoch, 3), **values)
        if self.bar is not None:
            shown = " ".join(f"{k} {v:.3f}" for k, v in values.items() if k in ("loss", "margin"))
            if self.best_val is not None:
                shown += f" val {self.history[-1][1]:.3f}" if self.history else ""
            self.bar.set_postfix_str(shown, refresh=False)
            self.bar.update(1)

    def validation_due(self, step: int) -> bool:
        return (step + 1) % self.eval_every == 0 or step + 1 == self.total_steps

    def record_validation(self, step: int, train_loss: float, val_loss: float, **extra: Any) -> bool:
        """Log a validation pass; return True when early stopping says to stop."""
        if self.metrics is not None:
            self.metrics.write(step=step + 1, val_loss=round(val_loss, 5), **extra)
        self.history.append((train_loss, val_loss))
        t = self.config.train
        if len(self.history) >= 3:  # two rises in a row while training loss keeps falling
            (t0, v0), (t1, v1), (t2, v2) = self.history[-3:]
            if v2 > v1 > v0 and t2 < t1 < t0:
                self.log(f"warning: step {step + 1}: validation loss rose twice ({v0:.4f} → {v2:.4f}) while training "
                         "loss fell: the model is overfitting; fewer epochs, early stopping "
                         "(train.early_stopping_patience) or more data will help")
        if self.best_val is None or val_loss < self.best_val - t.early_stopping_min_delta:
            self.best_val, self.best_step, self.evals_since_best = val_loss, step + 1, 0
            if t.early_stopping_patience is not None:
                self.best_state = trainable_state(self.model)
            return False
        self.evals_since_best += 1
        if t.early_stopping_patience is not None and self.evals_since_best >= t.early_stopping_patience:
            self.log(f"early stopping at step {step + 1}: no validation improvement in {self.evals_since_best} passes; "
                     f"keeping the weights of step {self.best_step} (validation loss {self.best_val:.4f})")
            return True
        return False

    def checkpoint_due(self, step: int) -> bool:
        return (step + 1) % self.checkpoint_every == 0 and step + 1 < self.total_steps

    def save_checkpoint(self, step: int) -> None:
        rng_states = self.world.gather(rng_state())
        # gathering shards is collective: every process takes part, rank 0 writes
        trained = trainable_state(self.model, gather=self.sharded)
        optimizer_state = full_optimizer_state(self.optimizer)
        if self.world.is_main:
            save_checkpoint(self.out, step + 1, trained, optimizer_state,
                            {"best_val": self.best_val, "best_step": self.best_step,
                             "evals_since_best": self.evals_since_best, "history": self.history},
                            self.config.train.keep_checkpoints, rng_states)
        self.world.barrier()

    # --- the end --------------------------------------------------------------------------------

    def complete(self, steps_done: int, train_loss: float, val_loss: float | None, real_tokens: int,
                 trained_tokens: int | None = None) -> TrainResult:
        """Save the result and mark the run complete; real_tokens (this process's) are summed over
        processes first. trained_tokens, over all processes: the positions the output head ran on,
        for the FLOPs count (None: every position)."""
        all_tokens = self.world.sum(real_tokens)  # before finish(), which ends the process group
        seconds = self.elapsed()
        tokens_per_second = all_tokens / max(1e-9, seconds)
        mfu = None
        if self.world.is_main and all_tokens:  # a report, never a reason to lose a finished run
            head_share = 1.0 if trained_tokens is None else trained_tokens / all_tokens
            with contextlib.suppress(ModelLoadError):
                mfu = utilization(self.model, tokens_per_second, head_share, self.device, self.dtype, self.world.size)
        self.finish(steps_done, seconds, final_train_loss=round(train_loss, 5),
                    final_val_loss=None if val_loss is None else round(val_loss, 5),
                    tokens_per_second=round(tokens_per_second, 1), utilization=mfu)
        return TrainResult(self.out, steps_done, train_loss, val_loss, seconds, tokens_per_second, mfu)

    def finish(self, steps_done: int, seconds: float | None = None, **final: Any) -> dict:
        seconds = self.elapsed() if seconds is None else seconds
        if self.bar is not None:
            self.bar.close()
        if self.best_state is not None and self.best_step != steps_done:
            load_trainable_state(self.model, self.best_state)
        full_state = full_model_state(self.model) if self.sharded else None
        if self.world.is_main:
            saved = save_trained(self.model, self.tokenizer, self.config.adapter, self.out, full_state)
            m = self.manifest
            m.status, m.finished, m.steps = "complete", time.strftime("%Y-%m-%dT%H:%M:%S%z"), steps_done
            m.train_seconds, m.weights, m.best_step = round(seconds, 1), saved, self.best_step
            m.best_val_loss = None if self.best_val is None else round(self.best_val, 5)
            for key, value in final.items():
                setattr(m, key, value)
            write_manifest(self.out, m)
            self.metrics.close()
        self.world.barrier()
        self.world.close()
        return {"seconds": seconds}

    def fail(self, exc: BaseException) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.world.is_main and self.manifest is not None:
            self.manifest.status, self.manifest.error = "failed", f"{type(exc).__name__}: {exc}"
            write_manifest(self.out, self.manifest)
        if self.metrics is not None:
            self.metrics.close(failed=True)


def start_run(config: RunConfig, resume: str | None = None, force: bool = False, overwrite: bool = False,
              progress: bool = True, log: Callable[[str], None] = print) -> TrainRun:
    """Everything before the data is tokenized: the run directory, devices, base model identity and
    tokenizer. The caller has already validated its data files."""
    world = init_world()
    out = Path(config.output_dir)
    check_adapter_supported(config.adapter)
    check_trackers(config.train.tracking)
    quiet_log = log if world.is_main else (lambda _message: None)
    resume_path = _resume_point(config, out, resume, force, quiet_log) if resume else None
    if resume_path is None and world.is_main:
        prepare_run_dir(out, overwrite or bool(resume))
    world.barrier()
    torch.set_num_threads(config.train.threads or max(1, available_cores() // world.size))
    torch.manual_seed(config.train.seed)  # the same on every rank: the initial adapter must be identical
    device = pick_device()
    source = resolve(config.model, config.trust_remote_code)
    if resume_path is not None:
        _check_same_base(out, source, force)
    tokenizer = load_tokenizer(source, config.trust_remote_code)
    run = TrainRun(config, out, world, device, autocast_dtype(config.train.precision, device), source, tokenizer,
                   quiet_log, resume_path)
    run.quiet = not progress
    return run


def _resume_point(config: RunConfig, out: Path, resume: str, force: bool, log) -> Path | None:
    path = latest_checkpoint(out) if resume == "auto" else Path(resume)
    if path is None:
        if is_run_dir(out) and read_manifest(out).complete:
            raise RunDirError(f"{out} holds a finished run and no checkpoint: nothing to resume "
                              "(train into a new output_dir, or pass --overwrite to start over)")
        log(f"no complete checkpoint in {out}: starting from the beginning")
        return None
    if not is_complete_checkpoint(path):
        raise RunDirError(f"{path} is not a complete checkpoint; use --resume auto to pick the newest complete one")
    run_dir = path.parent.parent
    saved = yaml.safe_load((run_dir / CONFIG).read_text(encoding="utf-8"))
    before, after = _flatten(saved), _flatten(config.to_dict())
    changes = [f"  {key}: {before.get(key)!r} → {after.get(key)!r}" for key in sorted(set(before) | set(after))
               if before.get(key) != after.get(key) and key not in RESUME_MAY_CHANGE]
    old_hashes = read_manifest(run_dir).data_hashes
    new_hashes = data_hashes(config)
    changes += [f"  {key}: the file's content changed ({old_hashes.get(key, 'none')[:19]}… → {new_hashes.get(key, 'none')[:19]}…)"
                for key in sorted(set(old_hashes) | set(new_hashes)) if old_hashes.get(key) != new_hashes.get(key)]
    if changes and not force:
        raise RunDirError(f"refusing to resume {path}: the run would continue with different settings than it "
                          "started with:\n" + "\n".join(changes) + "\nrestore them, or pass --force to resume anyway")
    if changes:
        log("warning: resuming with changes (--force):\n" + "\n".join(changes))
    return path


def _check_same_base(out: Path, source, force: bool) -> None:
    saved = read_manifest(out).base_model.fingerprint
    if saved != source.fingerprint and not force:
        raise RunDirError(f"refusing to resume: the base model {source.spec} is not the one this run started with "
                          f"({saved[:19]}… → {source.fingerprint[:19]}…); pass --force to resume anyway")


def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    interactive = sys.stderr.isatty()  # in a log file a bar redraws as one line per update: update rarely there
    return tqdm(total=total, initial=initial, desc="train", unit="step", disable=not enabled, dynamic_ncols=True,
                mininterval=0.5 if interactive else 30.0)
