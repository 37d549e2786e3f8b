"""buxiban vs TRL SFTTrainer + PEFT: same model, data, hyperparameters and step count, run one after
the other in fresh processes, alternating, written as JSON.

    python bench/sft_bench.py                 # LoRA: buxiban, TRL default, TRL packed; then full and freeze
    python bench/sft_bench.py --quick         # LoRA only, one round

What is held equal: the embedded SmolLM2-135M-Instruct, the example training set with only the final
assistant turn trained (TRL's prompt-completion loss cannot train earlier turns, so buxiban's copy
marks them weight 0), LoRA r=16 / alpha 32 / dropout 0.05 on all linear layers, AdamW at a constant
1e-3 with no warmup or weight decay, gradient clipping at 1.0, bf16 autocast, 2 threads, the same
number of optimizer steps and about the same real tokens per step (8 examples; TRL's packed rows are
sized to hold about 8 examples' tokens). TRL default reads the examples in buxiban's order (its own
trainer with a sequential sampler over the rows laid out as buxiban draws them), so the two train on
the same batches step for step and their losses compare directly; packing regroups rows anyway.

Measured: real (non-padding) tokens per second of the training loop, its wall time, the process's
peak resident memory, the mean training loss of the last 10 steps, the loss of the trained model over
the whole training set computed identically for every run, the per-step losses of buxiban LoRA and
TRL default side by side (`same_order_losses`), and model FLOPs utilization:
FLOPs per real token = 6·N_trained + 4·N_frozen + attention (N = matmul parameters including the output
head, counted where the head actually runs), divided by the peak measured with a 2048³ bf16 matmul
on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "yunshan" / "train.jsonl"
STEPS = 20
EXAMPLES_PER_STEP = 8
MAX_LENGTH = 256
LR = 1e-3


def final_turn_only(source: Path, target: Path) -> None:
    """buxiban's copy of the data: earlier assistant turns become context (weight 0)."""
    with open(source, encoding="utf-8") as lines, open(target, "w", encoding="utf-8") as out:
        for line in lines:
            record = json.loads(line)
            last = max(i for i, m in enumerate(record["messages"]) if m["role"] == "assistant")
            for i, message in enumerate(record["messages"]):
                if message["role"] == "assistant" and i != last:
                    message["weight"] = 0
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


def prompt_completion(source: Path) -> list[dict]:
    rows = []
    for line in open(source, encoding="utf-8"):
        messages = json.loads(line)["messages"]
        rows.append({"prompt": messages[:-1], "completion": messages[-1:]})
    return rows


def train_set_loss(model, tokenizer, workdir: Path) -> float:
    """Token-mean loss of the trained model over the whole training set, computed the same way for
    both frameworks (buxiban's loss on the final assistant turns), so final losses compare like for
    like whatever order each framework drew the examples in."""
    import torch

    from buxiban.data.prepare import prepare
    from buxiban.data.records import load_chat_jsonl
    from buxiban.train.batching import collate
    from buxiban.train.losses import summed_token_loss

    data = workdir / "final_turn_eval.jsonl"
    final_turn_only(DATA, data)
    examples = prepare(load_chat_jsonl(data), tokenizer, MAX_LENGTH).examples
    model.eval()
    total = count = 0.0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for start in range(0, len(examples), 16):
            summed, n = summed_token_loss(model, **collate(examples[start : start + 16], tokenizer.pad_token_id))
            total += summed.item()
            count += n
    return total / count


CHECKPOINTING = {"ckpt": "true", "selective": "selective"}  # by the mode's last word


def run_buxiban(mode: str, steps: int, workdir: Path, extra: list[str]) -> dict:
    from buxiban.config import load_config
    from buxiban.runs import read_metrics
    from buxiban.train.sft import train_sft

    data = workdir / "final_turn.jsonl"
    final_turn_only(DATA, data)
    adapter = {
        "buxiban-lora": "lora",
        "buxiban-lora-ckpt": "lora",
        "buxiban-lora-padded": "lora",
        "buxiban-lora-selective": "lora",
        "buxiban-full": "full",
        "buxiban-freeze": "freeze",
    }[mode]
    out = workdir / mode
    config = load_config(
        None,
        [
            f"data.train={data}",
            f"output_dir={out}",
            "data.validation_fraction=0",
            f"data.max_length={MAX_LENGTH}",
            f"adapter={adapter}",
            "freeze.layers=4",
            f"train.max_steps={steps}",
            f"train.batch_size={EXAMPLES_PER_STEP}",
            f"train.learning_rate={LR if adapter != 'full' else 5e-5}",
            "train.lr_schedule=constant",
            "train.warmup_ratio=0",
            "train.checkpoint_every=100000",
            "train.precision=bf16",
            f"train.gradient_checkpointing={CHECKPOINTING.get(mode.rsplit('-', 1)[-1], 'false')}",
            f"train.padding_free={'false' if mode.endswith('-padded') else 'true'}",
            *extra,
        ],
    )
    result = train_sft(config, progress=False, log=lambda _: None)
    losses = [m["loss"] for m in read_metrics(out) if "loss" in m]
    from buxiban.runs.load import load_trained

    model, tokenizer, _ = load_trained(out)
    return {
        "seconds": result.seconds,
        "tokens": result.tokens_per_second * result.seconds,
        "losses": losses,
        "train_set_loss": train_set_loss(model, tokenizer, workdir),
    }


def buxiban_order(steps: int, workdir: Path) -> list[int]:
    """The training-set rows in the order buxiban's loop draws them for `steps` steps of 8."""
    from buxiban.data.prepare import prepare
    from buxiban.data.records import load_chat_jsonl
    from buxiban.models.load import load_tokenizer, resolve
    from buxiban.train.batching import batch_stream

    data = workdir / "final_turn_order.jsonl"
    final_turn_only(DATA, data)
    conversations = load_chat_jsonl(data)
    examples = prepare(conversations, load_tokenizer(resolve("embedded")), MAX_LENGTH).examples
    assert len(examples) == len(conversations), "an example was dropped: indices would not match the file's rows"
    stream = batch_stream([len(e.input_ids) for e in examples], EXAMPLES_PER_STEP, 42)
    return [i for _, (_, batch) in zip(range(steps), stream) for i in batch]


def run_trl(mode: str, steps: int, workdir: Path, extra: list[str]) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from torch.utils.data import SequentialSampler
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from buxiban.models.load import resolve

    class InGivenOrder(SFTTrainer):
        """TRL's trainer reading its dataset front to back, so it sees buxiban's batches."""

        def _get_train_sampler(self, *args, **kwargs):
            return SequentialSampler(self.train_dataset)

    source = resolve("embedded")
    tokenizer = AutoTokenizer.from_pretrained(source.path)
    model = AutoModelForCausalLM.from_pretrained(source.path, dtype=torch.float32)
    packed = mode == "trl-packed"
    mean_tokens = 95  # measured by `buxiban data check`: p50 97, mean about 90
    rows_per_step = max(1, round(EXAMPLES_PER_STEP * mean_tokens / MAX_LENGTH)) if packed else EXAMPLES_PER_STEP
    args = SFTConfig(
        output_dir=str(workdir / mode),
        max_steps=steps,
        per_device_train_batch_size=rows_per_step,
        learning_rate=LR,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        bf16=True,
        use_cpu=True,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=42,
        max_length=MAX_LENGTH,
        packing=packed,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    peft_config = LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear")
    rows = prompt_completion(DATA)
    trainer_class = SFTTrainer
    if not packed:  # one random order is as good as another: buxiban's lets the losses compare step by step
        rows, trainer_class = [rows[i] for i in buxiban_order(steps, workdir)], InGivenOrder
        torch.manual_seed(42)  # buxiban seeds before LoRA's initialisation too
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    counted = {"tokens": 0}
    collate = trainer.data_collator

    def counting_collator(features):
        batch = collate(features)
        mask = batch.get("attention_mask")
        counted["tokens"] += int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())
        return batch

    trainer.data_collator = counting_collator
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "seconds": seconds,
        "tokens": counted["tokens"],
        "losses": losses,
        "train_set_loss": train_set_loss(trainer.model, tokenizer, workdir),
    }


def flops_per_token(mode: str) -> float:
    """6·N for trained matmul weights, 4·N for frozen ones the backward passes through (input
    gradients only), 2·N for frozen ones it never reaches, 6·N_adapter for LoRA; attention is left out
    (about 2 % of the FLOPs at ~95 tokens per sequence)."""
    hidden, inter, layers, vocab, kv = 576, 1536, 30, 49152, 192
    per_layer = hidden * hidden * 2 + hidden * kv * 2 + 3 * hidden * inter
    blocks = layers * per_layer
    head = hidden * vocab * 0.25  # the head runs on trained positions only (about a quarter) in buxiban
    if mode.startswith("trl"):
        head = hidden * vocab  # TRL computes logits for every position
    lora = layers * 16 * ((hidden + hidden) * 2 + (hidden + kv) * 2 + 2 * (hidden + inter) + (inter + hidden))
    if mode.endswith("full"):
        return 6 * (blocks + head)
    if mode.endswith("freeze"):  # backward stops at the first trained block: the blocks below only run forward
        trained = 4 * per_layer
        return 6 * trained + 2 * (blocks - trained) + 4 * head
    return 4 * (blocks + head) + 6 * lora


def one(mode: str, steps: int, out: Path, extra: list[str]) -> None:
    import torch

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as workdir:
        runner = run_trl if mode.startswith("trl") else run_buxiban
        measured = runner(mode, steps, Path(workdir), extra)
    measured["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out.write_text(json.dumps(measured))


def mode_env(mode: str) -> dict[str, str]:
    """Each framework as its users run it: buxiban's command line preloads jemalloc when the machine
    has it (buxiban/allocator.py), so its modes get it here too; a TRL mode gets it only when named
    with `+jemalloc` (e.g. trl-default+jemalloc, to see what the allocator alone gives TRL)."""
    from buxiban.allocator import with_jemalloc

    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    return with_jemalloc(env) if mode.startswith("buxiban") or mode.endswith("+jemalloc") else env


def summarize(mode: str, raw: dict, peak: float) -> dict:
    tokens_per_s = raw["tokens"] / raw["seconds"]
    achieved = tokens_per_s * flops_per_token(mode)
    return {
        "mode": mode,
        "tokens_per_s": round(tokens_per_s, 1),
        "train_seconds": round(raw["seconds"], 1),
        "real_tokens": int(raw["tokens"]),
        "peak_rss_mib": raw["peak_rss_mib"],
        "final_loss_last10": round(sum(raw["losses"][-10:]) / len(raw["losses"][-10:]), 4),
        "train_set_loss_after": round(raw["train_set_loss"], 4),
        "steps": len(raw["losses"]),
        "step_losses": [round(x, 4) for x in raw["losses"]],
        "achieved_tflops": round(achieved / 1e12, 3),
        "mfu": round(achieved / peak, 4),
    }


def same_order_losses(results: list[dict]) -> dict:
    """buxiban LoRA against TRL default, which trained on the same batches in the same order (first
    round of each): how far apart their losses are, relative to TRL's."""
    first = {}
    for row in results:
        first.setdefault(row["mode"], row)
    ours, theirs = first.get("buxiban-lora"), first.get("trl-default")
    if not ours or not theirs or len(ours["step_losses"]) != len(theirs["step_losses"]):
        return {}
    per_step = [abs(a - b) / b for a, b in zip(ours["step_losses"], theirs["step_losses"])]
    return {
        "loss_last10_rel_diff": round(abs(ours["final_loss_last10"] / theirs["final_loss_last10"] - 1), 4),
        "train_set_loss_rel_diff": round(abs(ours["train_set_loss_after"] / theirs["train_set_loss_after"] - 1), 4),
        "step_loss_rel_diff_max": round(max(per_step), 4),
        "step_loss_rel_diff_mean": round(sum(per_step) / len(per_step), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="LoRA only, one round")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results.json"))
    parser.add_argument(
        "--modes",
        help="comma-separated modes instead of the default set, e.g. "
        "buxiban-lora,buxiban-lora-padded (what padding-free batches gain)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override for the buxiban runs (repeatable), e.g. train.micro_batch_tokens=512",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args.one, args.steps, Path(args.result), args.set)
        return
    modes = ["buxiban-lora", "buxiban-lora-selective", "trl-default", "trl-packed"]  # buxiban-lora-ckpt: --modes
    if not args.quick:
        modes += ["buxiban-full", "buxiban-freeze"]
    if args.modes:
        modes = args.modes.split(",")
    import torch

    from buxiban.train.flops import measured_peak_flops

    peak = measured_peak_flops(torch.device("cpu"), torch.bfloat16)  # what `buxiban train` divides by too
    results = []
    for round_number in range(args.rounds):
        order = modes if round_number % 2 == 0 else list(reversed(modes))  # alternate against drift
        for mode in order:
            with tempfile.NamedTemporaryFile(suffix=".json") as handle:
                print(f"[bench] {mode} ({args.steps} steps)", flush=True)
                subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--one",
                        mode.removesuffix("+jemalloc"),
                        "--steps",
                        str(args.steps),
                        "--result",
                        handle.name,
                        *(f"--set={o}" for o in args.set),
                    ],
                    check=True,
                    env=mode_env(mode),
                )
                summary = summarize(mode, json.loads(Path(handle.name).read_text()), peak)
                results.append(summary)
                print(f"[bench]   {json.dumps(summary)}", flush=True)
    best = {}
    for row in results:
        best.setdefault(row["mode"], []).append(row)
    table = {
        mode: {
            k: (sum(r[k] for r in rows) / len(rows)) if isinstance(rows[0][k], (int, float)) else rows[0][k]
            for k in rows[0]
        }
        for mode, rows in best.items()
    }
    lora = table.get("buxiban-lora", {}).get("tokens_per_s")
    ratios = {
        f"{ours} / {m}": round(table[ours]["tokens_per_s"] / table[m]["tokens_per_s"], 2)
        for ours in ("buxiban-lora", "buxiban-lora-selective", "buxiban-lora-ckpt")
        if ours in table
        for m in table
        if m.startswith("trl")
    }
    for other in ("buxiban-full", "buxiban-freeze"):
        if other in table and lora:
            ratios[f"{other} / buxiban-lora"] = round(table[other]["tokens_per_s"] / lora, 2)
    report_loss_check = same_order_losses(results)
    report = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "peak_bf16_tflops_measured": round(peak / 1e12, 3),
        },
        "steps": args.steps,
        "buxiban_overrides": args.set,
        "examples_per_step": EXAMPLES_PER_STEP,
        "runs": results,
        "mean": table,
        "ratios": ratios,
        "same_order_losses": report_loss_check,
    }
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps({**ratios, **report_loss_check}, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
