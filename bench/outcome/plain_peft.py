"""The plain PEFT loop the outcome issue compared buxiban with ("lr 3e-4, 2 epochs, fp32": 0.85 on its
triage set), written by hand the way a user would: fp32, padded batches, AdamW, linear decay, LoRA on the
query and value projections (PEFT's default for Llama-style models), loss on the answer only
(--full-loss: on every token). It prints exact match on a data set's test.jsonl, a baseline outside
buxiban for the `auto` runs on the same set (bench/outcome/results.jsonl).
    .venv/bin/python bench/outcome/plain_peft.py [--data bench/outcome/data/harbor] [--full-loss]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model

from buxiban.models.generate import generate_with_stats
from buxiban.models.load import load
from buxiban.text import exact_match


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def encode(tokenizer, messages, full_loss: bool) -> tuple[list[int], list[int]]:
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    whole = tokenizer.apply_chat_template(messages, tokenize=False)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = tokenizer(whole, add_special_tokens=False)["input_ids"]
    labels = list(ids) if full_loss else [-100] * len(prompt_ids) + ids[len(prompt_ids) :]
    return ids, labels


def padded(batch, pad_id: int):
    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id)
    labels = torch.full((len(batch), width), -100)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (ids, target) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(target)] = torch.tensor(target)
        attention[row, : len(ids)] = 1
    return input_ids, labels, attention


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--r", type=int, default=8)
    parser.add_argument("--full-loss", action="store_true")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parent / "data" / "harbor")
    args = parser.parse_args()
    torch.manual_seed(0)
    random.seed(0)
    model, tokenizer, _ = load("embedded")
    lora = LoraConfig(
        r=args.r, lora_alpha=2 * args.r, lora_dropout=0.05, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"
    )
    model = get_peft_model(model, lora)
    data = [encode(tokenizer, c["messages"], args.full_loss) for c in read_jsonl(args.data / "train.jsonl")]
    test = read_jsonl(args.data / "test.jsonl")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
    steps = args.epochs * math.ceil(len(data) / args.batch)
    warmup = max(1, int(0.05 * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) * (steps - s) / steps)
    model.train()
    started = time.time()
    for _ in range(args.epochs):
        order = list(range(len(data)))
        random.shuffle(order)
        for start in range(0, len(order), args.batch):
            input_ids, labels, attention = padded(
                [data[i] for i in order[start : start + args.batch]], tokenizer.pad_token_id
            )
            model(input_ids=input_ids, attention_mask=attention, labels=labels).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
    model.eval()
    references = [c["messages"][-1]["content"] for c in test]
    answers = generate_with_stats(model, tokenizer, [c["messages"][:-1] for c in test], 40).answers
    right = sum(exact_match(answer, reference) for answer, reference in zip(answers, references))
    print(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "exact_match": right / len(test),
                "right": right,
                "n": len(test),
                "seconds": round(time.time() - started),
            }
        )
    )


if __name__ == "__main__":
    main()
