"""`buxiban plan`: do I need fine-tuning, and what will it cost? Errors travel up to cli.main."""

from __future__ import annotations

import json
import sys


def add_plan_commands(commands) -> None:
    plan = commands.add_parser(
        "plan", help="do I need fine-tuning? measured baseline, hosted and local cost, time, memory"
    )
    plan.add_argument("train", help="training data, OpenAI chat JSONL")
    plan.add_argument("--test", help="held-out conversations: measures the base model zero-shot and few-shot")
    plan.add_argument("--model", help="base model (default: the config's, else embedded)")
    plan.add_argument(
        "--template",
        help="chat template for a model without one, or instead of its own: auto (default), a family (chatml, llama3, gemma, phi3, granite, mistral) or a .jinja file",
    )
    plan.add_argument(
        "--method", choices=("lora", "qlora", "full", "freeze"), help="what training would update (default lora)"
    )
    plan.add_argument(
        "--config", help="a training YAML (e.g. examples/yunshan/lora.yaml): batch, length, epochs, precision"
    )
    plan.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.batch_size=4 (repeatable)",
    )
    plan.add_argument(
        "--target", type=float, help="exact match you need (0-1): says whether a prompt already reaches it"
    )
    plan.add_argument(
        "--epochs",
        type=int,
        help="epochs for both estimates (default: OpenAI's automatic rule hosted, the config locally)",
    )
    plan.add_argument("--shots", type=int, default=3, help="training examples in the few-shot prompt (default 3)")
    plan.add_argument("--limit", type=int, help="only the first N test questions (the baseline is the slow part)")
    plan.add_argument("--hosted-model", default="gpt-4o-mini", help="model in the price file (default gpt-4o-mini)")
    plan.add_argument("--prices", dest="price_file", help="your own price file (format of buxiban/plan/prices.json)")
    plan.add_argument(
        "--price-per-hour", type=float, help="USD per hour of this machine (or the server you would rent)"
    )
    plan.add_argument("--daily-requests", type=int, default=1000, help="expected requests per day (default 1000)")
    plan.add_argument("--calibration-steps", type=int, default=5, help="timed optimizer steps (default 5)")
    plan.add_argument("--warmup-steps", type=int, default=3, help="untimed optimizer steps before them (default 3)")
    plan.add_argument("--max-new-tokens", type=int, default=96, help="answer length limit in the baseline (default 96)")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.set_defaults(handler=cmd_plan)


def cmd_plan(args) -> int:
    from ..plan.build import PlanOptions, build_plan
    from ..plan.report import format_plan

    if args.template:
        args.overrides.append(f"template={args.template}")
    options = PlanOptions(
        train=args.train,
        test=args.test,
        model=args.model,
        method=args.method,
        config=args.config,
        overrides=args.overrides,
        target=args.target,
        epochs=args.epochs,
        shots=args.shots,
        limit=args.limit,
        hosted_model=args.hosted_model,
        price_file=args.price_file,
        price_per_hour=args.price_per_hour,
        daily_requests=args.daily_requests,
        calibration_steps=args.calibration_steps,
        warmup_steps=args.warmup_steps,
        max_new_tokens=args.max_new_tokens,
    )
    plan = build_plan(options, log=lambda message: print(message, file=sys.stderr))
    if args.json:
        print(json.dumps(plan, indent=2, ensure_ascii=False, default=str))
    else:
        print(format_plan(plan), end="")
    return 0
