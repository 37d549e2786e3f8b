"""The pieces of leaving hosted fine-tuning that need no server: the end dates in the price file and
what `plan` prints from them, the cost per 1,000 requests `eval` adds, and `serve --alias` checks."""

from __future__ import annotations

import datetime
import json

import pytest

from buxiban.cli.serve import _aliases
from buxiban.errors import AdapterError, PlanError, ServeError
from buxiban.plan.answer_costs import answer_costs, cost_lines
from buxiban.plan.build import hosted_section
from buxiban.plan.hosted import load_prices
from buxiban.plan.lifecycle import availability, table_name
from buxiban.plan.report import hosted_lines
from buxiban.serve.api.catalog import aliases_to_base_checked, check_aliases

BEFORE = datetime.date(2026, 12, 1)


def test_plan_on_the_seeds_worked_example_still_costs_sixty_cents_and_says_when_jobs_end():
    # 100 conversations × 500 tokens × 4 epochs on GPT-4o mini = 200,000 training tokens = $0.60
    hosted = hosted_section([500] * 100, "gpt-4o-mini", load_prices(), epochs=4, note="n", today=BEFORE)
    text = "\n".join(hosted_lines(hosted))
    assert "= 200,000 billed tokens × $3/1M = $0.60" in text
    assert "new jobs end on 2027-01-06" in text
    assert "gpt-4o-mini and every model fine-tuned on it shut down on 2027-01-14" in text
    assert "OpenAI deprecations page, as quoted in buxiban issue 22, read 2026-12-01" in text
    assert "`buxiban migrate`" in text and "section 4" in text
    assert hosted["availability"] == {
        "model": "gpt-4o-mini",
        "source": "OpenAI deprecations page, as quoted in buxiban issue 22",
        "read_on": "2026-12-01",
        "new_jobs_end": "2027-01-06",
        "new_jobs_open": True,
        "shutdown": "2027-01-14",
        "served": True,
        "days_left": 44,
    }


def test_after_the_dates_plan_speaks_of_them_in_the_past():
    hosted = hosted_section([500] * 100, "gpt-4o-mini", load_prices(), epochs=4, today=datetime.date(2027, 2, 1))
    text = "\n".join(hosted_lines(hosted))
    assert "new jobs ended on 2027-01-06" in text and "were shut down on 2027-01-14" in text
    assert "can no longer be started" in text and "$0.60" in text


def test_the_price_file_records_the_end_dates_with_their_source():
    table = load_prices()
    life = table.lifecycle
    assert life.source == "OpenAI deprecations page, as quoted in buxiban issue 22" and life.read_on == "2026-12-01"
    assert life.new_organisations_end == datetime.date(2026, 5, 7)
    for model in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini"):
        assert life.models[model] == {"new_jobs_end": datetime.date(2027, 1, 6), "shutdown": datetime.date(2027, 1, 14)}
    assert life.models["gpt-3.5-turbo"] == {"new_jobs_end": datetime.date(2027, 1, 6)}  # no shutdown date stated
    assert set(table.models) == {"gpt-4o", "gpt-4o-mini", "gpt-3.5-turbo"}  # no invented prices for GPT-4.1


@pytest.mark.parametrize(
    "lifecycle, message",
    [
        ({"models": {}}, "lifecycle is missing source, read_on"),
        ({"source": "s", "read_on": "r", "models": {"m": {"shutdown": "14/01/2027"}}}, "lifecycle.models.m.shutdown"),
        ({"source": "s", "read_on": "r", "models": {"m": {"retired": "2027-01-14"}}}, "must hold only"),
    ],
)
def test_a_bad_lifecycle_section_is_refused_naming_the_field(tmp_path, lifecycle, message):
    raw = json.loads(json.dumps({"version": 2, "read_on": "x", "source": "y", "models": {}, "lifecycle": lifecycle}))
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(PlanError, match=message):
        load_prices(path)


@pytest.mark.parametrize(
    "model, name",
    [
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("ft:gpt-4o-mini-2024-07-18:acme::abc123", "gpt-4o-mini"),
        ("ft:gpt-4o-2024-08-06:acme:support:xyz", "gpt-4o"),
        ("gpt-4o-minion", None),
        ("ft:SmolLM2-135M-Instruct:acme:ftjob-x", None),
    ],
)
def test_hosted_model_ids_find_their_price_file_entry(model, name):
    assert table_name(model, load_prices().models) == name


def test_the_dates_reach_a_fine_tuned_model_id():
    found = availability("ft:gpt-4.1-mini-2025-04-14:acme::x", load_prices().lifecycle, BEFORE)
    assert found["model"] == "gpt-4.1-mini" and found["shutdown"] == "2027-01-14"


def test_cost_per_thousand_requests_hosted_from_the_price_file_local_from_measured_time():
    costs = {
        "fine-tuned": {
            "prompt_tokens_per_request": 40.0,
            "new_tokens_per_request": 12.0,
            "seconds_per_request_batched": 0.36,
        },
        "hosted": {
            "prompt_tokens_per_request": 50.0,
            "new_tokens_per_request": 10.0,
            "seconds_per_request_batched": 0.8,
        },
        "other": {
            "prompt_tokens_per_request": 50.0,
            "new_tokens_per_request": 10.0,
            "seconds_per_request_batched": 0.8,
        },
    }
    systems = [
        {"name": "fine-tuned", "weights": "fine-tuned"},
        {"name": "hosted", "weights": None, "endpoint": {"url": "u", "model": "ft:gpt-4o-mini-2024-07-18:acme::abc"}},
        {"name": "other", "weights": None, "endpoint": {"url": "u", "model": "llama"}},
    ]
    priced = answer_costs(costs, systems, {"hosted": None, "other": None}, load_prices(), 0.5, BEFORE)
    assert priced["fine-tuned"]["usd"] == pytest.approx(1000 * 0.36 * 0.5 / 3600)  # $0.05
    assert priced["hosted"]["usd"] == pytest.approx(1000 * (50 * 0.15 + 10 * 0.60) / 1e6)  # $0.0135
    assert priced["hosted"]["price_model"] == "gpt-4o-mini" and priced["hosted"]["availability"]["served"]
    assert priced["other"]["usd"] is None and "price=MODEL" in priced["other"]["why"]
    text = "\n".join(cost_lines(priced))
    assert "hosted: $0.0135 at gpt-4o-mini prices" in text and "fine-tuned: $0.0500 at $0.5/hour" in text
    assert "shut down on 2027-01-14" in text

    without_hourly = answer_costs(costs, systems[:1], {}, load_prices(), None, BEFORE)
    assert without_hourly["fine-tuned"] == {
        "usd": None,
        "why": "give --price-per-hour to price answers by the time they took",
    }


def test_eval_refuses_an_unknown_price_before_loading_anything(tmp_path, capsys, monkeypatch):
    from buxiban.cli import main

    code = main(
        [
            "eval",
            str(tmp_path / "no-run"),
            "--test",
            str(tmp_path / "t.jsonl"),
            "--endpoint",
            "h=http://x/v1,price=gpt-9",
        ]
    )
    assert code == 1 and "price=gpt-9 is not in prices.json" in capsys.readouterr().err


# --- serve --alias ---------------------------------------------------------------------------------


class FakeRegistry:
    def __init__(self, names):
        self.names = set(names)

    def get(self, name):
        if name not in self.names:
            raise AdapterError(f"no adapter named {name!r}")
        return name

    def list(self):
        return [type("Entry", (), {"name": n}) for n in sorted(self.names)]


def test_aliases_are_split_at_the_last_equals_sign():
    assert _aliases(["ft:gpt-4o-mini:acme::abc=acme"]) == {"ft:gpt-4o-mini:acme::abc": "acme"}
    for bad in ("acme", "=acme", "old="):
        with pytest.raises(ServeError, match="is not OLD_NAME=MODEL"):
            _aliases([bad])
    with pytest.raises(ServeError, match="given twice"):
        _aliases(["a=b", "a=c"])


def test_an_alias_must_name_something_served_and_hide_nothing():
    registry = FakeRegistry({"acme"})
    base = {"tiny", "embedded"}
    aliases = {"ft:gpt-4o-mini-2024-07-18:acme::abc": "acme", "gpt-4o-mini": "tiny"}
    check_aliases(aliases, registry)
    assert aliases_to_base_checked(aliases, registry, base) == aliases
    with pytest.raises(ServeError, match="neither the base model nor a registered adapter"):
        aliases_to_base_checked({"old": "nope"}, registry, base)
    with pytest.raises(ServeError, match="already a registered adapter"):
        check_aliases({"acme": "tiny"}, registry)
    with pytest.raises(ServeError, match="the base model's own name"):
        aliases_to_base_checked({"tiny": "acme"}, registry, base)
    with pytest.raises(ServeError, match="the old name must be"):
        check_aliases({"bad name\n": "acme"}, registry)
