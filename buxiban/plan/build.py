"""`buxiban plan`: everything a user should know before training, in one pass over their data —
the data verdict, the measured baseline, the hosted cost, the local time/memory/money, and what
serving it would cost. Validation first; the model is touched only once the inputs are right."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError, PlanError, Problem
from .hosted import PriceTable, hosted_training, load_prices
from .lifecycle import availability
from .memory import METHODS, estimate_peak, parameter_counts

METHOD_TO_ADAPTER = {"lora": "lora", "qlora": "qlora", "full": "full", "freeze": "freeze"}


@dataclass
class PlanOptions:
    train: str
    test: str | None = None
    model: str | None = None  # None: the config's model (embedded by default)
    method: str | None = None  # lora | qlora | full | freeze; None: the config's adapter
    config: str | None = None  # a training YAML whose settings the local estimate uses
    overrides: list[str] = field(default_factory=list)
    target: float | None = None
    epochs: int | None = None
    shots: int = 3
    limit: int | None = None
    hosted_model: str = "gpt-4o-mini"
    price_file: str | None = None
    price_per_hour: float | None = None
    daily_requests: int = 1000
    calibration_steps: int = 5
    warmup_steps: int = 3
    max_new_tokens: int = 96
    today: datetime.date | None = None  # the day the end dates are read against; None: today


def check_options(options: PlanOptions) -> list[Problem]:
    problems = []

    def bad(name: str, message: str, fix: str) -> None:
        problems.append(Problem(name, message, fix=fix))

    if not Path(options.train).is_file():
        bad(options.train, "does not exist", "give the training JSONL file")
    if options.test is not None and not Path(options.test).is_file():
        bad(
            options.test,
            "does not exist",
            "give held-out conversations with --test, or leave it out to skip the baseline",
        )
    if options.method is not None and options.method not in METHODS:
        bad("--method", f"is '{options.method}'", f"use one of {', '.join(METHODS)}")
    if options.target is not None and not 0.0 <= options.target <= 1.0:
        bad("--target", f"is {options.target}", "give the exact-match score to reach, between 0 and 1 (e.g. 0.8)")
    if options.epochs is not None and not 1 <= options.epochs <= 50:
        bad("--epochs", f"is {options.epochs}", "use 1 to 50, or leave it out for OpenAI's automatic choice")
    if options.shots < 0:
        bad("--shots", f"is {options.shots}", "use 0 (zero-shot only) or more")
    if options.limit is not None and options.limit < 1:
        bad("--limit", f"is {options.limit}", "use a positive number of test questions")
    if options.price_per_hour is not None and options.price_per_hour < 0:
        bad("--price-per-hour", f"is {options.price_per_hour}", "give the machine's cost in USD per hour")
    if options.daily_requests < 0:
        bad("--daily-requests", f"is {options.daily_requests}", "give the expected requests per day")
    if options.max_new_tokens < 1:
        bad("--max-new-tokens", f"is {options.max_new_tokens}", "let answers have at least 1 token")
    if options.calibration_steps < 1 or options.warmup_steps < 0:
        bad(
            "--calibration-steps",
            f"is {options.calibration_steps} (warm-up {options.warmup_steps})",
            "time at least 1 step after at least 0 warm-up steps",
        )
    return problems


def run_config(options: PlanOptions):
    from ..config import load_config

    overrides = [f"data.train={options.train}", *options.overrides]
    if options.model:
        overrides.append(f"model={options.model}")
    if options.method:
        overrides.append(f"adapter={METHOD_TO_ADAPTER[options.method]}")
    config = load_config(options.config, overrides)
    if config.method != "sft":
        raise PlanError(f"plan estimates supervised fine-tuning; the config says method: {config.method}")
    return config


def build_plan(options: PlanOptions, log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    problems = check_options(options)
    if problems:
        raise PlanError("cannot plan: " + "; ".join(str(p) for p in problems))
    config = run_config(options)
    prices = load_prices(options.price_file)
    prices.price(options.hosted_model)  # an unknown model fails now, not after the baseline

    from ..data.check import check_file
    from ..models.load import load_tokenizer, resolve

    source = resolve(config.model, config.trust_remote_code)
    tokenizer = load_tokenizer(source, config.trust_remote_code, config.template)
    # The calibration runs first, in a process that has done nothing else yet: after the full data
    # check had run, the same training steps measured 1.4-2.2x slower than in `buxiban train`
    # (three runs on a shared 2-core machine). Malformed data still stops it: run_data reads the
    # files with the same validating reader and raises every problem before any model loads.
    local = local_section(config, tokenizer, source, options, log)
    check = check_file(options.train, tokenizer, config.data.max_length, test_file=options.test)
    if not check.ok:
        raise DataError(
            f"{options.train} has {len(check.problems)} problem(s); fix them before planning", check.problems
        )
    plan: dict[str, Any] = {
        "train_file": options.train,
        "model": source.name,
        "method": config.adapter,
        "data": data_section(check),
    }
    from ..data.records import load_chat_jsonl
    from .language import language_fit

    fit = language_fit(load_chat_jsonl(options.train), tokenizer, source.name)
    if fit is not None:
        plan["data"]["language"] = fit

    lengths = example_lengths(options.train, tokenizer)
    note = (
        f"token counts use {source.name}'s tokenizer and chat template, not OpenAI's; OpenAI's own count for "
        f"{options.hosted_model} differs (another tokenizer, a few tokens of overhead per message)"
    )
    plan["hosted"] = hosted_section(lengths, options.hosted_model, prices, options.epochs, note, options.today)

    plan["local"] = local

    if options.test:
        plan["baseline"], plan["using"] = baseline_sections(config, options, prices.price(options.hosted_model), log)
    return plan


def hosted_section(
    lengths: list[int],
    model: str,
    prices: PriceTable,
    epochs: int | None = None,
    note: str = "",
    today: datetime.date | None = None,
) -> dict[str, Any]:
    """Section 3: the hosted bill, the price file it came from, and until when the hosted model can
    be fine-tuned and served (with the local path as the alternative)."""
    hosted = hosted_training(lengths, model, prices, epochs, note).to_dict()
    hosted["price_file"] = {
        "path": prices.path,
        "version": prices.version,
        "read_on": prices.read_on,
        "source": prices.source,
        "note": prices.note,
    }
    hosted["availability"] = availability(model, prices.lifecycle, today or datetime.date.today())
    return hosted


def data_section(check) -> dict[str, Any]:
    stats = check.stats
    return {
        "ok": check.ok,
        "examples": stats.get("examples", 0),
        "sufficiency": stats.get("sufficiency"),
        "total_tokens": stats.get("total_tokens"),
        "tokens_per_example": stats.get("tokens_per_example"),
        "findings": [{"kind": f.kind, "message": f.message, "count": f.count} for f in check.findings],
    }


def example_lengths(train_file: str, tokenizer) -> list[int]:
    """Every training conversation's full rendered length: what a hosted API bills (it keeps no
    validation slice and drops nothing for length below its per-example cap)."""
    from ..data.records import load_chat_jsonl
    from ..data.tokenize import encode_many

    conversations = load_chat_jsonl(train_file)
    encoded = encode_many(tokenizer, [c.messages for c in conversations], [c.where for c in conversations])
    return [len(e.input_ids) for e in encoded]


def local_section(config, tokenizer, source, options: PlanOptions, log) -> dict[str, Any]:
    from ..errors import ModelLoadError
    from ..models.adapt import check_adapter_supported
    from ..train.session import autocast_dtype, pick_device
    from .local import calibrate, local_money, predict_time, resident_mib, run_data

    data = run_data(config, tokenizer)
    chosen = resolve_auto(config, source, len(data.train_lengths))  # before anything reads the numbers
    section: dict[str, Any] = {
        "config": options.config or "defaults",
        "hyperparameters": chosen.record(),
        "batch_size": config.train.batch_size,
        "grad_accum": config.train.grad_accum,
        "max_length": config.data.max_length,
        "notes": [],
    }
    calibration = None
    try:
        check_adapter_supported(config.adapter)
        calibration = calibrate(config, data, options.warmup_steps, options.calibration_steps, log)
    except ModelLoadError as exc:
        section["notes"].append(f"time not measured: {exc}")
    if calibration is not None:
        section["calibration"] = dict(calibration.__dict__)
        section["time"] = predict_time(config, data, calibration, options.epochs)
        section["money_usd"] = local_money(section["time"]["seconds"], options.price_per_hour)
        section["notes"].extend(calibration.notes)
    framework = (calibration.framework_rss_mib if calibration else resident_mib()) * 1024 * 1024
    autocast = autocast_dtype(config.train.precision, pick_device()) is not None
    from .local import run_step_stats, total_steps

    _, steps = total_steps(config, len(data.train_lengths))
    stats = run_step_stats(config, data, steps)
    memory = {}
    for method in METHODS:
        shape, counts = parameter_counts(source.path, method, config, config.trust_remote_code)
        memory[method] = estimate_peak(
            shape,
            counts,
            method,
            stats.most_batch_tokens,
            stats.most_trained,
            autocast,
            int(framework),
            config.lora.r,
            config.train.gradient_checkpointing,
        )
        if method == "qlora":
            memory[method]["note"] = "needs a CUDA GPU (bitsandbytes NF4); on CPU use lora"
    section["memory"] = memory
    section["autocast_bf16"] = autocast
    if calibration is not None:  # the estimate checked against what the calibration run really used
        calib = run_step_stats(config, data, calibration.warmup_steps + calibration.measured_steps)
        shape, counts = parameter_counts(source.path, config.adapter, config, config.trust_remote_code)
        section["calibration_check"] = {
            "estimated_peak_mib": estimate_peak(
                shape,
                counts,
                config.adapter,
                calib.most_batch_tokens,
                calib.most_trained,
                autocast,
                int(framework),
                config.lora.r,
                config.train.gradient_checkpointing,
            )["peak_mib"],
            "measured_peak_rss_mib": calibration.peak_rss_mib,
        }
    return section


def resolve_auto(config, source, train_examples: int):
    """`auto` learning rate, epochs and batch size resolved exactly as `buxiban train` will: the same
    function over the same example count and the same base size, counted on the meta device."""
    from ..train.auto import base_parameters, resolve_config

    adapter = "lora" if config.adapter == "qlora" else config.adapter
    _, counts = parameter_counts(source.path, adapter, config, config.trust_remote_code)
    return resolve_config(config, train_examples, base_parameters(config.adapter, counts.trainable, counts.total))


def baseline_sections(config, options: PlanOptions, prices: dict[str, float], log) -> tuple[dict, dict]:
    from ..models.load import load
    from .baseline import measure_baseline, target_verdict
    from .inference import using_it

    model, tokenizer, _ = load(config.model, config.trust_remote_code, config.template)
    log(f"baseline: answering {options.limit or 'all'} test questions zero-shot and {options.shots}-shot")
    baseline = measure_baseline(
        model, tokenizer, options.train, options.test, options.shots, options.limit, options.max_new_tokens
    )
    del model
    section = baseline.to_dict()
    section["best"] = baseline.best[0]
    section["verdict"] = target_verdict(baseline, options.target)
    names = list(baseline.prompt_tokens)
    short, longest = baseline.prompt_tokens[names[0]], baseline.prompt_tokens[names[-1]]
    using = using_it(
        options.daily_requests,
        longest,
        short,
        baseline.answer_tokens,
        prices,
        options.price_per_hour,
        baseline.requests_per_second,
    )
    using["hosted_model"] = options.hosted_model
    return section, using
