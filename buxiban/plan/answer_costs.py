"""What 1,000 answers cost each system an evaluation measured: the number to weigh against the scores
before a hosted fine-tune is switched off.

Hosted: the tokens each request really used (as the endpoint's `usage` counted them) at the price
file's input and output prices for the model. Local: the seconds per answer measured on this
machine during the evaluation (answered in batches, as a busy server answers) at the machine's price
per hour, which assumes the machine is kept busy; an idle server costs the same per hour with fewer
answers to share it. An endpoint that is a server of your own is billed the local way with
`price=hourly`."""

from __future__ import annotations

import datetime
from typing import Any

from .hosted import PriceTable
from .inference import per_request_usd
from .lifecycle import availability, availability_line, table_name

HOURLY = "hourly"
REQUESTS = 1000


def answer_costs(
    costs: dict[str, dict[str, Any]],
    systems: list[dict[str, Any]],
    endpoint_prices: dict[str, str | None],
    table: PriceTable,
    price_per_hour: float | None,
    today: datetime.date | None = None,
) -> dict[str, dict[str, Any]]:
    """Per system: `usd` for 1,000 requests (None with `why` when it cannot be priced) and how.
    `costs` is an evaluation's per-system token and time summary, `systems` its system list, and
    `endpoint_prices` each endpoint system's `price=` option."""
    today = today or datetime.date.today()
    out = {}
    for system in systems:
        name = system["name"]
        if name not in costs:
            continue
        measured = costs[name]
        endpoint = system.get("endpoint")
        wanted = endpoint_prices.get(name) if endpoint else HOURLY
        if wanted is None:
            wanted = table_name(endpoint["model"], table.models)
        if wanted == HOURLY:
            out[name] = _hourly(measured, price_per_hour, local=endpoint is None)
        elif wanted is None:
            out[name] = {
                "usd": None,
                "why": f"no price in {table.path} for the model '{endpoint['model']}': add price=MODEL "
                f"(one of {', '.join(sorted(table.models))}) or price=hourly to the --endpoint",
            }
        else:
            out[name] = _hosted(measured, wanted, table, today)
    return out


def _hourly(measured: dict[str, Any], price_per_hour: float | None, local: bool) -> dict[str, Any]:
    if price_per_hour is None:
        return {"usd": None, "why": "give --price-per-hour to price answers by the time they took"}
    seconds = measured["seconds_per_request_batched"]
    return {
        "usd": round(REQUESTS * seconds * price_per_hour / 3600, 6),
        "basis": "measured time",
        "seconds_per_request": seconds,
        "price_per_hour": price_per_hour,
        "how": (
            "answered in batches on this machine" if local else "answered one request at a time through the endpoint"
        ),
    }


def _hosted(measured: dict[str, Any], model: str, table: PriceTable, today: datetime.date) -> dict[str, Any]:
    if model not in table.models:
        return {
            "usd": None,
            "why": f"price={model} is not in {table.path} (known: {', '.join(sorted(table.models))})",
        }
    prices = table.models[model]
    prompt, answer = measured["prompt_tokens_per_request"], measured["new_tokens_per_request"]
    out = {
        "usd": round(REQUESTS * per_request_usd(prompt, answer, prices), 6),
        "basis": "price file",
        "price_model": model,
        "prices": prices,
        "prompt_tokens": prompt,
        "answer_tokens": answer,
        "prices_read_on": table.read_on,
        "price_source": table.source,
    }
    if not prompt:
        out["warning"] = "the endpoint reported no token usage, so the prompt and answer are priced as 0 tokens"
    found = availability(model, table.lifecycle, today)
    if found:
        out["availability"] = found
    return out


def cost_lines(priced: dict[str, dict[str, Any]]) -> list[str]:
    """For the terminal: one line per system."""
    if not priced:
        return []
    lines = [f"cost per {REQUESTS:,} requests (answers as long as this test's):"]
    for name, cost in priced.items():
        if cost["usd"] is None:
            lines.append(f"  {name}: not priced: {cost['why']}")
        elif cost["basis"] == "price file":
            prices = cost["prices"]
            lines.append(
                f"  {name}: ${cost['usd']:.4f} at {cost['price_model']} prices (${prices['input']:g} in, "
                f"${prices['output']:g} out per 1M tokens, read {cost['prices_read_on']}) for "
                f"{cost['prompt_tokens']:.0f} prompt + {cost['answer_tokens']:.0f} answer tokens per request"
            )
            if "warning" in cost:
                lines.append(f"    warning: {cost['warning']}")
            if "availability" in cost:
                lines.append(f"    note: {availability_line(cost['availability'])}")
        else:
            lines.append(
                f"  {name}: ${cost['usd']:.4f} at ${cost['price_per_hour']:g}/hour for "
                f"{cost['seconds_per_request']:.3f} s per answer ({cost['how']}; the machine kept busy)"
            )
    return lines
