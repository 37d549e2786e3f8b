"""What every training loop shares, so that sft.py and dpo.py show only their own math. TrainRun
puts together pieces with one job each: the run record (record.py), the optimizer and schedule
(optimization.py), early stopping (stopping.py), step counts (datasets.py), resuming (resume.py);
itself it builds the model, splits each micro-batch over processes, checkpoints and saves."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..allocator import advice
from ..config import RunConfig, config_to_yaml
from ..errors import ModelLoadError
from ..models.adapt import (
    check_adapter_supported,
    count_parameters,
    load_trainable_state,
    make_trainable,
    quantization_config,
    save_trained,
    store_frozen_linears_in,
    trainable_state,
)
from ..models.load import load_model, load_tokenizer, resolve
from ..runs import Manifest, prepare_run_dir, read_manifest
from .auto import Hyperparameters, base_parameters, resolve_config
from .batching import collate
from .checkpoint import load_checkpoint, rng_state, save_checkpoint
from .datasets import StepCounts, step_counts
from .distributed import World, init_world
from .dropout import use_masked_dropout
from .flops import utilization
from .neftune import use_neftune
from .optimization import Optimization
from .packing import collate_packed, packs_rows, use_varlen_attention
from .recompute import checkpointing_kwargs
from .record import RunRecord
from .resume import check_same_base, data_hashes, flatten, resume_point
from .sharding import full_model_state, full_optimizer_state, shard_model
from .stopping import EarlyStopping
from .tracking import MetricsLog, check_trackers


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
class Share:
    """This process's rows of a micro-batch, and the weight its loss counts with. A sharded model runs
    collectives inside every forward, so a process whose share is empty (a short last batch) still
    runs one on a stand-in row, with weight 0: it adds nothing to the loss or the gradients."""

    rows: list
    weight: float = 1.0

    @property
    def stand_in(self) -> bool:
        return self.weight == 0.0


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
    quiet: bool = False
    model: Any = None
    sharded_root: Any = None  # the FSDP root when train.sharding splits the model over processes
    padding_free: bool = False
    counts: StepCounts | None = None
    optimization: Optimization | None = None
    stopping: EarlyStopping | None = None
    record: RunRecord | None = None
    hyperparameters: Hyperparameters | None = None
    start_step: int = 0
    started: float = 0.0
    bar: Any = None

    # --- setting up -----------------------------------------------------------------------------

    def build(
        self, train_examples: int, init_adapter: Path | None = None, extra_manifest: dict[str, Any] | None = None
    ) -> RunRecord:
        """Load the model, make it trainable, set up the optimizer and schedule, restore a checkpoint;
        returns the run record, to be entered around the training loop."""
        config, t = self.config, self.config.train
        as_written = config_to_yaml(config)  # `auto` stays auto in config.yaml, so a resume compares alike
        self._build_model(init_adapter)
        trainable, total = count_parameters(self.model)
        self.hyperparameters = resolve_config(config, train_examples, base_parameters(config.adapter, trainable, total))
        for line in self.hyperparameters.lines():
            self.log(line)
        self.counts = step_counts(config, train_examples)
        self.optimization = Optimization.over(self.model, t, self.counts)
        self.stopping = EarlyStopping(t.early_stopping_patience, t.early_stopping_min_delta, self.log)
        if self.resume_path is not None:
            state = load_checkpoint(self.resume_path, self.model, self.optimization.optimizer, self.world.rank)
            self.start_step = state["step"]
            self.stopping.restore(state)
            manifest = read_manifest(self.out)
            manifest.status, manifest.resumed_from = "running", self.resume_path.name
            self.log(f"resuming from {self.resume_path} at step {self.start_step} of {self.total_steps}")
        else:
            manifest = Manifest.from_dict(
                {
                    "status": "running",
                    "method": config.method,
                    "adapter": config.adapter,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "base_model": self.source.identity(),
                    "trust_remote_code": config.trust_remote_code,
                    "data_hashes": data_hashes(config),
                    "parameters": {"trainable": trainable, "total": total},
                    "template": self.tokenizer.buxiban_template.record(),
                    "hyperparameters": self.hyperparameters.record(),
                    **(extra_manifest or {}),
                }
            )
        self.record = RunRecord(self.out, manifest, self.world.is_main)
        metrics = None
        if self.world.is_main:
            metrics = MetricsLog(
                self.out / "metrics.jsonl",
                self.start_step if self.resume_path else None,
                t.tracking,
                self.out,
                flatten(config.to_dict()),
            )
        self.record.open(as_written, metrics)
        self.log(
            f"{config.method} with {config.adapter} on {self.source.name}: {trainable:,} of {total:,} parameters "
            f"trained; {self.total_steps} steps, {'bf16 autocast' if self.dtype else 'fp32'} on {self.device.type} "
            f"with {torch.get_num_threads()} threads"
            + (f", {self.world.size} processes" if self.world.size > 1 else "")
            + (", padding-free batches" if self.padding_free else "")
        )
        note = advice() if self.device.type == "cpu" and self.world.is_main else None
        if note:
            self.log(note)
        self.bar = self.record.bar = _progress_bar(
            self.total_steps, self.start_step, self.world.is_main and not self.quiet
        )
        self.started = time.perf_counter()
        return self.record

    def _build_model(self, init_adapter: Path | None) -> None:
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
        # drawn from torch's generator, so checkpointing's replay of the RNG state recomputes the same masks
        use_masked_dropout(self.model)
        if t.neftune_alpha:
            use_neftune(self.model, t.neftune_alpha)
        if t.gradient_checkpointing:
            self.model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs=checkpointing_kwargs(
                    "selective" if t.gradient_checkpointing == "selective" else "full"
                )
            )
        self.sharded_root = shard_model(self.model, t.sharding, self.world.size)

    @property
    def total_steps(self) -> int:
        return self.counts.total_steps

    @property
    def sharded(self) -> bool:
        return self.sharded_root is not None

    def forward(self, loss_fn, **batch):
        """loss_fn(model, **batch), through the FSDP root when the model is sharded."""
        return self.sharded_root(loss_fn, **batch) if self.sharded else loss_fn(self.model, **batch)

    def collate(self, rows: list) -> dict[str, Any]:
        return collate_packed(rows) if self.padding_free else collate(rows, self.tokenizer.pad_token_id)

    def my_share(self, rows: list) -> Share:
        mine = self.world.shard(rows)
        if mine or not self.sharded or not rows:
            return Share(mine)
        return Share(rows[:1], 0.0)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype) if self.dtype else contextlib.nullcontext()

    # --- each step ------------------------------------------------------------------------------

    def optimizer_step(self, step: int) -> tuple[float, float]:
        return self.optimization.step(step, self.world, gradients_already_summed=self.sharded)

    def log_step(self, step: int, **values: Any) -> None:
        self.record.write_metrics(step=step + 1, epoch=round((step + 1) / self.counts.steps_per_epoch, 3), **values)
        if self.bar is not None:
            shown = " ".join(f"{k} {v:.3f}" for k, v in values.items() if k in ("loss", "margin"))
            if self.stopping.best_val is not None and self.stopping.history:
                shown += f" val {self.stopping.history[-1][1]:.3f}"
            self.bar.set_postfix_str(shown, refresh=False)
            self.bar.update(1)

    def validation_due(self, step: int) -> bool:
        return (step + 1) % self.counts.eval_every == 0 or step + 1 == self.total_steps

    def record_validation(self, step: int, train_loss: float, val_loss: float, **extra: Any) -> bool:
        """Log a validation pass; return True when early stopping says to stop."""
        self.record.write_metrics(step=step + 1, val_loss=round(val_loss, 5), **extra)
        return self.stopping.observe(step, train_loss, val_loss, self.model)

    def checkpoint_due(self, step: int) -> bool:
        return (step + 1) % self.counts.checkpoint_every == 0 and step + 1 < self.total_steps

    def save_checkpoint(self, step: int) -> None:
        rng_states = self.world.gather(rng_state())
        # gathering shards is collective: every process takes part, rank 0 writes
        trained = trainable_state(self.model, gather=self.sharded)
        optimizer_state = full_optimizer_state(self.optimization.optimizer)
        if self.world.is_main:
            save_checkpoint(
                self.out,
                step + 1,
                trained,
                optimizer_state,
                self.stopping.state(),
                self.config.train.keep_checkpoints,
                rng_states,
            )
        self.world.barrier()

    # --- the end --------------------------------------------------------------------------------

    def complete(
        self,
        steps_done: int,
        train_loss: float,
        val_loss: float | None,
        real_tokens: int,
        trained_tokens: int | None = None,
    ) -> TrainResult:
        """Save the result and mark the run complete; real_tokens (this process's) are summed over
        processes first. trained_tokens, over all processes: the positions the output head ran on,
        for the FLOPs count (None: every position)."""
        all_tokens = self.world.sum(real_tokens)  # before the process group ends
        seconds = self.elapsed()
        tokens_per_second = all_tokens / max(1e-9, seconds)
        mfu = None
        if self.world.is_main and all_tokens:  # a report, never a reason to lose a finished run
            head_share = 1.0 if trained_tokens is None else trained_tokens / all_tokens
            with contextlib.suppress(ModelLoadError):
                mfu = utilization(self.model, tokens_per_second, head_share, self.device, self.dtype, self.world.size)
        self.record.close_bar()
        stopping = self.stopping
        if stopping.best_state is not None and stopping.best_step != steps_done:
            load_trainable_state(self.model, stopping.best_state)
        full_state = full_model_state(self.model) if self.sharded else None
        saved = None
        if self.world.is_main:
            saved = save_trained(self.model, self.tokenizer, self.config.adapter, self.out, full_state)
        self.record.complete(
            steps=steps_done,
            train_seconds=round(seconds, 1),
            weights=saved or self.record.manifest.weights,
            best_val_loss=None if stopping.best_val is None else round(stopping.best_val, 5),
            best_step=stopping.best_step,
            final_train_loss=round(train_loss, 5),
            final_val_loss=None if val_loss is None else round(val_loss, 5),
            tokens_per_second=round(tokens_per_second, 1),
            utilization=mfu,
        )
        self.world.barrier()
        self.world.close()
        return TrainResult(self.out, steps_done, train_loss, val_loss, seconds, tokens_per_second, mfu)


def start_run(
    config: RunConfig,
    resume: str | None = None,
    force: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> TrainRun:
    """Everything before the data is tokenized: the run directory, devices, base model identity and
    tokenizer. The caller has already validated its data files."""
    world = init_world()
    out = Path(config.output_dir)
    check_adapter_supported(config.adapter)
    check_trackers(config.train.tracking)
    quiet_log = log if world.is_main else (lambda _message: None)
    resume_path = resume_point(config, out, resume, force, quiet_log) if resume else None
    if resume_path is None and world.is_main:
        prepare_run_dir(out, overwrite or bool(resume))
    world.barrier()
    torch.set_num_threads(config.train.threads or max(1, available_cores() // world.size))
    torch.manual_seed(config.train.seed)  # the same on every rank: the initial adapter must be identical
    device = pick_device()
    source = resolve(config.model, config.trust_remote_code)
    if resume_path is not None:
        check_same_base(out, source, force)
    tokenizer = load_tokenizer(source, config.trust_remote_code, config.template)
    return TrainRun(
        config,
        out,
        world,
        device,
        autocast_dtype(config.train.precision, device),
        source,
        tokenizer,
        quiet_log,
        resume_path,
        quiet=not progress,
    )


def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    interactive = sys.stderr.isatty()  # in a log file a bar redraws as one line per update: update rarely there
    return tqdm(
        total=total,
        initial=initial,
        desc="train",
        unit="step",
        disable=not enabled,
        dynamic_ncols=True,
        mininterval=0.5 if interactive else 30.0,
    )
