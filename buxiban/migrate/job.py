"""The source's fine-tuning job object, checked field by field before anything is downloaded: what
it names becomes folder names, config values and requests, so every field is bounded and typed here,
and every problem is reported at once with the field it is in."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import MigrateError
from .source import printable

# Job and file ids become a folder name and request paths: letters, digits, '-' and '_' only.
ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
MAX_NAME = 256
KNOWN_STATUSES = ("validating_files", "queued", "running", "succeeded", "failed", "cancelled")
# what each method's numbers may be; the bounds are wide (any real job fits) and only keep out nonsense
HYPERPARAMETERS = {
    "n_epochs": (int, 1, 50),
    "batch_size": (int, 1, 1024),
    "learning_rate_multiplier": (float, 1e-4, 10.0),
    "beta": (float, 1e-4, 10.0),
}
METHOD_KEYS = {"supervised": ("n_epochs", "batch_size", "learning_rate_multiplier"), "dpo": tuple(HYPERPARAMETERS)}


@dataclass(frozen=True)
class SourceJob:
    id: str
    model: str
    status: str
    method: str  # supervised | dpo
    hyperparameters: dict[str, int | float | str]  # each a number or "auto"
    training_file: str
    validation_file: str | None
    fine_tuned_model: str | None
    suffix: str | None
    seed: int | None
    created_at: int | None
    unmapped: dict[str, str] = field(default_factory=dict)  # settings the source had that have no local meaning

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def check_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not ID.match(value):
        raise MigrateError(
            f"{what} {printable(value, 80)!r} is not an id of letters, digits, '-' and '_' (at most 128); "
            "the source sent something else"
        )
    return value


def parse_job(obj: Any, where: str) -> SourceJob:
    """`where` names the answer in messages (e.g. GET …/fine_tuning/jobs/ftjob-abc)."""
    problems: list[str] = []
    if not isinstance(obj, dict):
        raise MigrateError(f"{where}: the source answered a {type(obj).__name__}, not a fine-tuning job object")

    def text(key: str, optional: bool = False, pattern: re.Pattern | None = None) -> str | None:
        value = obj.get(key)
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value or len(value) > MAX_NAME or not value.isprintable():
            problems.append(f"{key} is {printable(value, 80)!r}, not a string of 1-{MAX_NAME} printable characters")
            return None
        if pattern is not None and not pattern.match(value):
            problems.append(f"{key} is {printable(value, 80)!r}, not an id of letters, digits, '-' and '_'")
            return None
        return value

    job_id = text("id", pattern=ID)
    model = text("model")
    status = text("status")
    training = text("training_file", pattern=ID)
    validation = text("validation_file", optional=True, pattern=ID)
    fine_tuned = text("fine_tuned_model", optional=True)
    suffix = text("user_provided_suffix", optional=True)
    seed = obj.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63):
        problems.append(f"seed is {_shown(seed)}, not a whole number")
        seed = None
    created = obj.get("created_at")
    created = created if isinstance(created, int) and not isinstance(created, bool) else None
    method, hyper, unmapped = _method(obj, problems)
    if problems:
        raise MigrateError(
            f"{where}: the source's job object cannot be used: " + "; ".join(problems) + "; nothing was written"
        )
    return SourceJob(
        job_id, model, status, method, hyper, training, validation, fine_tuned, suffix, seed, created, unmapped
    )


def _method(obj: dict, problems: list[str]) -> tuple[str, dict[str, Any], dict[str, str]]:
    """OpenAI's `method: {"type": T, T: {"hyperparameters": {...}}}`, or the older top-level
    `hyperparameters` (supervised)."""
    method = obj.get("method")
    if method is None:
        kind, given = "supervised", obj.get("hyperparameters")
    elif isinstance(method, dict):
        kind = method.get("type")
        section = method.get(kind) if isinstance(kind, str) else None
        given = section.get("hyperparameters") if isinstance(section, dict) else None
        if given is None:
            given = obj.get("hyperparameters")
    else:
        problems.append(f"method is {printable(method, 80)!r}, not an object")
        return "supervised", {}, {}
    if kind not in METHOD_KEYS:
        if kind == "reinforcement":
            raise MigrateError(
                f"job {printable(obj.get('id'), 80)} is reinforcement fine-tuning (graders): it has no local "
                "equivalent in buxiban; supervised and dpo jobs migrate"
            )
        problems.append(f"method.type is {printable(kind, 80)!r}; supervised and dpo jobs migrate")
        return "supervised", {}, {}
    if given is None:
        given = {}
    if not isinstance(given, dict):
        problems.append(f"method.{kind}.hyperparameters is {printable(given, 80)!r}, not an object")
        return kind, {}, {}
    hyper: dict[str, Any] = {}
    unmapped: dict[str, str] = {}
    for key, value in given.items():
        where = f"method.{kind}.hyperparameters.{printable(key, 60)}"
        if key not in METHOD_KEYS[kind]:
            unmapped[printable(key, 60)] = printable(value, 80)
            continue
        number = _number(value, *HYPERPARAMETERS[key])
        if number is None:
            kind_word = "whole number" if HYPERPARAMETERS[key][0] is int else "number"
            low, high = HYPERPARAMETERS[key][1:]
            problems.append(f'{where} is {_shown(value)}, not "auto" or a {kind_word} from {low:g} to {high:g}')
            continue
        hyper[key] = number
    return kind, {key: hyper.get(key, "auto") for key in METHOD_KEYS[kind]}, unmapped


def _shown(value: Any) -> str:
    """A value the source sent, as it would read in JSON: strings quoted, numbers not."""
    return repr(printable(value, 40)) if isinstance(value, str) else printable(value, 40)


def _number(value: Any, kind: type, low: float, high: float) -> int | float | str | None:
    if value in ("auto", None):
        return "auto"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    if kind is int and not float(value).is_integer():
        return None
    if not low <= value <= high:
        return None
    return kind(value)


def job_line(obj: Any) -> dict[str, str]:
    """One job of a listing, whatever shape it came in: a listing shows every job, and says which
    cannot be migrated and why, instead of failing on the first odd one."""
    if not isinstance(obj, dict):
        return {"id": "?", "problem": f"not a job object: {printable(obj, 60)}"}
    out = {
        key: printable(obj.get(key) if obj.get(key) is not None else "-", 120)
        for key in ("id", "status", "model", "fine_tuned_model", "training_file", "validation_file")
    }
    method = obj.get("method")
    out["method"] = printable(method.get("type"), 40) if isinstance(method, dict) else "supervised"
    try:
        parse_job(obj, "job")
    except MigrateError as exc:
        out["problem"] = str(exc)
    return out
