"""The plan as text for a person: five sections, each number with what it was measured or
computed from."""

from __future__ import annotations

from typing import Any

from .lifecycle import availability_line


def usd(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.6f}"


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def format_plan(plan: dict[str, Any]) -> str:
    lines = [f"plan for {plan['train_file']} on {plan['model']} ({plan['method']})", ""]
    lines += _data(plan["data"])
    if "baseline" in plan:
        lines += _baseline(plan["baseline"])
    else:
        lines += [
            "2. Baseline: not measured (give --test with held-out conversations to see whether a prompt is enough)",
            "",
        ]
    lines += hosted_lines(plan["hosted"])
    lines += _local(plan["local"], plan["method"])
    if "using" in plan:
        lines += _using(plan["using"], plan["hosted"].get("availability"))
    return "\n".join(lines).rstrip() + "\n"


def _data(data: dict[str, Any]) -> list[str]:
    level, advice = data["sufficiency"]["level"], data["sufficiency"]["advice"]
    lines = [
        "1. Data",
        f"   verdict: {'format ok' if data['ok'] else 'format errors'}; {data['examples']} examples, "
        f"{data.get('total_tokens') or 0:,} tokens",
    ]
    lines.append(f"   {'WARNING: ' if level == 'warning' else ''}{advice}")
    for finding in data["findings"]:
        if finding["kind"] != "too little data":
            lines.append(f"   finding: {finding['kind']}: {finding['message']}")
    language = data.get("language")
    if language:
        lines.append(f"   Chinese text: {language['tokens_per_character']:.2f} tokens per character")
        if "warning" in language:
            lines.append(f"   WARNING: {language['warning']}")
    return lines + [""]


def _baseline(baseline: dict[str, Any]) -> list[str]:
    lines = [
        "2. Baseline, measured (the base model before any training)",
        f"   {baseline['used']} of {baseline['available']} test questions from {baseline['test_file']}"
        + ("" if baseline["used"] == baseline["available"] else " (--limit)"),
    ]
    for name, scores in baseline["scores"].items():
        fields = f"   JSON fields {scores['field_match']:.3f}" if "field_match" in scores else ""
        lines.append(
            f"   {name:<10} exact match {scores['exact_match']:.3f}   token F1 {scores['token_f1']:.3f}   "
            f"ROUGE-L {scores.get('rouge_l', 0):.3f}{fields}   "
            f"prompt {baseline['prompt_tokens'][name]:.0f} tokens   ({baseline['seconds'][name]:.0f} s)"
        )
    if baseline.get("verdict"):
        lines.append(f"   {baseline['verdict']}")
    return lines + [""]


def hosted_lines(hosted: dict[str, Any]) -> list[str]:
    """Section 3: the bill, where the prices come from, and how long the hosted model lasts."""
    prices, source = hosted["prices"], hosted["price_file"]
    lines = [
        "3. Hosted fine-tuning cost",
        f"   {hosted['model']}: {hosted['dataset_tokens']:,} tokens per epoch × {hosted['epochs']} epochs "
        f"({hosted['epochs_chosen']}) = {hosted['billed_tokens']:,} billed tokens × "
        f"${prices['training']:g}/1M = {usd(hosted['cost_usd'])}",
        f"   note: {hosted['tokenizer_note']}",
        f"   prices read {source['read_on']} from {source['source']} ({source['path']}, version {source['version']})",
    ]
    found = hosted.get("availability")
    if found:
        lines.append(f"   note: {availability_line(found)}")
        if not found.get("new_jobs_open", True):
            lines.append("   a new hosted job can no longer be started: the bill above is what it would have cost")
        lines.append(
            "   the local alternative: section 4 trains the same data on this machine; `buxiban migrate` brings "
            "a hosted fine-tune's job, data and settings home"
        )
    return lines + [""]


def _local(local: dict[str, Any], method: str) -> list[str]:
    settings = (
        local["config"]
        if local["config"] != "defaults"
        else "the defaults (--config YAML plans the run you will launch)"
    )
    lines = ["4. Local training on this machine", f"   settings: {settings}"]
    for name, choice in local.get("hyperparameters", {}).items():
        how = f"auto: {choice['reason']}" if choice["auto"] else "as configured"
        lines.append(f"   {name.replace('_', ' ')}: {choice['value']:g} ({how})")
    if "time" in local:
        t, c = local["time"], local["calibration"]
        lines.append(
            f"   time: {duration(t['seconds'])} for {t['steps']} steps ({t['epochs']:g} epochs × "
            f"{t['train_examples']} examples, batch {local['batch_size']}×{local['grad_accum']}, "
            f"{t['padded_tokens']:,} padded tokens; validation {duration(t['validation_seconds'])})"
        )
        lines.append(
            f"   measured: {c['measured_steps']} step(s) after {c['warmup_steps']} warm-up step(s), "
            f"{c['padded_tokens']:,} padded tokens in {c['seconds']:.1f} s, {c['threads']} threads"
        )
        if local.get("money_usd") is not None:
            lines.append(f"   money: {usd(local['money_usd'])} at the given price per hour")
    lines.append(
        f"   peak memory (estimate, the largest micro-batch of {local['batch_size']}; "
        f"{'bf16 autocast' if local['autocast_bf16'] else 'fp32'}):"
    )
    for name, estimate in local["memory"].items():
        parts = estimate["parts_mib"]
        marker = "→" if name == method else " "
        lines.append(
            f"   {marker} {name:<7} {estimate['peak_mib'] / 1024:5.2f} GiB  (trains {estimate['trainable_parameters']:,}"
            f" of {estimate['total_parameters']:,}; weights {parts['weights']:.0f} MiB, grads+AdamW "
            f"{parts['gradients'] + parts['optimizer']:.0f} MiB, activations {parts['activations']:.0f} MiB)"
            + (f"  {estimate['note']}" if estimate.get("note") else "")
        )
    if "calibration_check" in local:
        check = local["calibration_check"]
        lines.append(
            f"   check: the calibration run peaked at {check['measured_peak_rss_mib']:.0f} MiB resident; "
            f"the estimate for its batches is {check['estimated_peak_mib']:.0f} MiB"
        )
    lines += [f"   note: {note}" for note in local["notes"]]
    return lines + [""]


def _using(using: dict[str, Any], found: dict[str, Any] | None = None) -> list[str]:
    tokens, monthly, per = using["tokens_per_request"], using["monthly_usd"], using["per_request_usd"]
    lines = [
        "5. Using it",
        f"   prompt tokens saved per request: {using['prompt_tokens_saved_per_request']:.0f} "
        f"(few-shot prompt {tokens['few_shot_prompt']:.0f} → fine-tuned {tokens['fine_tuned_prompt']:.0f}; "
        f"answers about {tokens['output']:.0f} tokens)",
        f"   at {using['daily_requests']:,} requests a day, per month on {using['hosted_model']}: "
        f"few-shot {usd(monthly['hosted_few_shot'])} ({usd(per['hosted_few_shot'])}/request), "
        f"fine-tuned {usd(monthly['hosted_fine_tuned'])} ({usd(per['hosted_fine_tuned'])}/request)",
    ]
    if found and "shutdown" in found:
        lines.append(
            f"   hosted fine-tuned models on {found['model']} are served until {found['shutdown']} (see section 3); "
            "a self-hosted one is served as long as you run it"
        )
    if "self_hosted" in monthly:
        even = using["break_even_daily_requests"]
        lines.append(
            f"   self-hosted: {usd(monthly['self_hosted'])} a month for {using['servers']} always-on server(s); "
            f"it becomes cheaper than hosted fine-tuned {_count(even['vs_hosted_fine_tuned'])}, than the "
            f"few-shot prompt {_count(even['vs_hosted_few_shot'])}"
        )
        if None in even.values() and using.get("one_server_capacity_per_day"):
            lines.append(
                "   (never: a server like this one, busy all day, answers requests that would cost less hosted "
                "than the server's price per hour)"
            )
        if using.get("one_server_capacity_per_day"):
            lines.append(
                f"   one server like this one answers about {using['one_server_capacity_per_day']:,} requests a day "
                "(measured during the baseline; keep headroom for peaks)"
            )
    else:
        lines.append("   self-hosted: give --price-per-hour to compare with a server of your own")
    lines.append(
        f"   rule of thumb (seeds): above {using['seed_rule_tokens_per_day']:,} tokens a day a server beats a "
        f"cloud API; you would send about {using['your_tokens_per_day']:,}"
    )
    return lines


def _count(value: int | None) -> str:
    return "never" if value is None else f"above {value:,} requests a day"
