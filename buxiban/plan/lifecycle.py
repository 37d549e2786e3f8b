"""When a hosted model can no longer be fine-tuned or served: the dates in the price file's
`lifecycle` section, each with the source it was read from. A price is only useful while the model it
prices exists, so `plan` and `eval` say how long that is and point at the local path.

Hosted model ids name their base in several shapes (`gpt-4o-mini`, `gpt-4o-mini-2024-07-18`,
`ft:gpt-4o-mini-2024-07-18:acme::abc123`); `table_name` finds the price-file entry they belong to."""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import PlanError

DATE_KEYS = ("new_jobs_end", "shutdown")
SNAPSHOT = re.compile(r"^-\d{4}-\d{2}-\d{2}$")  # OpenAI's dated snapshots of one model


@dataclass(frozen=True)
class Lifecycle:
    models: dict[str, dict[str, datetime.date]] = field(default_factory=dict)
    source: str = ""
    read_on: str = ""
    note: str = ""
    new_organisations_end: datetime.date | None = None


def parse_lifecycle(raw: Any, where: str) -> Lifecycle | None:
    """The `lifecycle` section, or None when the file has none (a user's own price file may not)."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("models"), dict):
        raise PlanError(f"{where}: lifecycle needs a 'models' mapping of model name to {{new_jobs_end, shutdown}}")
    missing = [key for key in ("source", "read_on") if not raw.get(key)]
    if missing:
        raise PlanError(
            f"{where}: lifecycle is missing {', '.join(missing)}: an end date without its source cannot be trusted"
        )
    models = {}
    for name, dates in raw["models"].items():
        if not isinstance(dates, dict) or not set(dates) <= set(DATE_KEYS):
            raise PlanError(f"{where}: lifecycle.models.{name} must hold only {' and '.join(DATE_KEYS)} (YYYY-MM-DD)")
        models[name] = {key: _date(value, f"{where}: lifecycle.models.{name}.{key}") for key, value in dates.items()}
    first = raw.get("new_organisations_end")
    return Lifecycle(
        models,
        str(raw["source"]),
        str(raw["read_on"]),
        str(raw.get("note", "")),
        _date(first, f"{where}: lifecycle.new_organisations_end") if first else None,
    )


def _date(value: Any, where: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise PlanError(f"{where} is {value!r}; write the date as YYYY-MM-DD") from None


def table_name(model_id: str, names: Iterable[str]) -> str | None:
    """The price-file entry a hosted model id belongs to: the exact name, or a dated snapshot of it,
    also inside a fine-tuned name (ft:BASE:org:suffix:id); the longest match wins, so gpt-4o-mini is
    never priced as gpt-4o."""
    base = model_id.split(":")[1] if model_id.startswith("ft:") and model_id.count(":") >= 1 else model_id
    matches = [name for name in names if base == name or (base.startswith(name) and SNAPSHOT.match(base[len(name) :]))]
    return max(matches, key=len) if matches else None


def availability(model: str, lifecycle: Lifecycle | None, today: datetime.date) -> dict[str, Any] | None:
    """What the price file says about `model`'s end, as of `today`; None when it says nothing."""
    if lifecycle is None:
        return None
    name = table_name(model, lifecycle.models)
    if name is None:
        return None
    dates = lifecycle.models[name]
    out: dict[str, Any] = {"model": name, "source": lifecycle.source, "read_on": lifecycle.read_on}
    if "new_jobs_end" in dates:
        out["new_jobs_end"] = dates["new_jobs_end"].isoformat()
        out["new_jobs_open"] = today < dates["new_jobs_end"]
    if "shutdown" in dates:
        out["shutdown"] = dates["shutdown"].isoformat()
        out["served"] = today < dates["shutdown"]
        out["days_left"] = max(0, (dates["shutdown"] - today).days)
    return out


def availability_line(found: dict[str, Any]) -> str:
    """One sentence for a person: the dates, in the right tense for today, and where they come from."""
    parts = []
    if "new_jobs_end" in found:
        verb = "end on" if found["new_jobs_open"] else "ended on"
        parts.append(f"new jobs {verb} {found['new_jobs_end']} (self-serve fine-tuning)")
    if "shutdown" in found:
        verb = "shut down on" if found["served"] else "were shut down on"
        parts.append(f"{found['model']} and every model fine-tuned on it {verb} {found['shutdown']}")
    return f"{'; '.join(parts)} ({found['source']}, read {found['read_on']})"
