"""Using the model: what each request costs hosted (with the few-shot prompt, or fine-tuned with
the short one) against a self-hosted server billed by the hour, and the volume where they cross.

A self-hosted server costs the same whether it is busy or idle, so it wins above a break-even
volume; its capacity is the answers per second measured while the baseline ran on this machine.
The seeds' rule of thumb (a server beats a cloud API above about 25 million tokens a day) is shown
next to the break-even computed from the user's own numbers.
"""

from __future__ import annotations

import math
from typing import Any

from .hosted import dollars

DAYS_PER_MONTH = 30
HOURS_PER_MONTH = 24 * DAYS_PER_MONTH
SEED_RULE_TOKENS_PER_DAY = 25_000_000


def per_request_usd(input_tokens: float, output_tokens: float, prices: dict[str, float]) -> float:
    return dollars(input_tokens, prices["input"]) + dollars(output_tokens, prices["output"])


def servers_needed(daily_requests: int, requests_per_second: float | None) -> int:
    """Machines to keep up with the average load (peaks need headroom on top: see the output)."""
    if not requests_per_second:
        return 1
    return max(1, math.ceil(daily_requests / 86_400 / requests_per_second))


def using_it(
    daily_requests: int,
    shots_tokens: float,
    short_tokens: float,
    output_tokens: float,
    prices: dict[str, float],
    price_per_hour: float | None,
    requests_per_second: float | None,
) -> dict[str, Any]:
    """Per-request and monthly costs of the three ways to serve, and the break-even volume."""
    few_shot = per_request_usd(shots_tokens, output_tokens, prices)
    fine_tuned = per_request_usd(short_tokens, output_tokens, prices)
    result: dict[str, Any] = {
        "daily_requests": daily_requests,
        "prompt_tokens_saved_per_request": round(shots_tokens - short_tokens, 1),
        "tokens_per_request": {
            "few_shot_prompt": shots_tokens,
            "fine_tuned_prompt": short_tokens,
            "output": output_tokens,
        },
        "per_request_usd": {"hosted_few_shot": few_shot, "hosted_fine_tuned": fine_tuned},
        "monthly_usd": {
            "hosted_few_shot": round(DAYS_PER_MONTH * daily_requests * few_shot, 2),
            "hosted_fine_tuned": round(DAYS_PER_MONTH * daily_requests * fine_tuned, 2),
        },
        "self_hosted_requests_per_second": requests_per_second,
        "seed_rule_tokens_per_day": SEED_RULE_TOKENS_PER_DAY,
        "your_tokens_per_day": round(daily_requests * (short_tokens + output_tokens)),
    }
    if price_per_hour is None:
        return result
    machines = servers_needed(daily_requests, requests_per_second)
    result["servers"] = machines
    result["monthly_usd"]["self_hosted"] = round(machines * price_per_hour * HOURS_PER_MONTH, 2)
    # One always-on server costs price_per_hour × 24 a day; the hosted bill grows with every request.
    one_server_per_day = price_per_hour * 24
    capacity = round(requests_per_second * 86_400) if requests_per_second else None
    result["one_server_capacity_per_day"] = capacity
    result["break_even_daily_requests"] = {
        name: break_even(one_server_per_day, cost, capacity)
        for name, cost in (("vs_hosted_few_shot", few_shot), ("vs_hosted_fine_tuned", fine_tuned))
    }
    return result


def break_even(server_per_day: float, hosted_per_request: float, capacity_per_day: int | None) -> int | None:
    """Daily requests above which a server is cheaper; None when it never is on this hardware: a
    full server's requests would cost less hosted than the server does (adding servers adds cost
    in the same proportion)."""
    if hosted_per_request <= 0:
        return None
    volume = math.ceil(server_per_day / hosted_per_request)
    if capacity_per_day is not None and volume > capacity_per_day:
        return None
    return volume
