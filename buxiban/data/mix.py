"""Replay mixing against catastrophic forgetting: interleave general instructions with company data,
so the model keeps practising what it already knew while it learns the new things."""

from __future__ import annotations

import json
import random
from importlib.resources import files
from pathlib import Path
from typing import Any

from ..errors import DataError, Problem
from .records import collect, iter_raw_chat_records, require_clean

BUILTIN = "builtin"


def builtin_general_path() -> Path:
    return Path(str(files("buxiban.data.general") / "general.jsonl"))


def _valid_records(path: Path) -> list[dict[str, Any]]:
    items, problems = collect(iter_raw_chat_records(path))
    require_clean(path, problems)
    return [record for _, record in items]


def mix_records(train: list[dict], general: list[dict], ratio: float, seed: int = 0) -> tuple[list[dict], int]:
    """`ratio` is the general share of the result: 0.2 means one general example in five. When the
    general set is too small for the ratio, all of it is used (each example once: repeating replay
    data would overfit it). Returns the mixed records and how many general ones went in."""
    if not 0 <= ratio < 1:
        raise DataError("bad mixing ratio", [Problem("--ratio", f"is {ratio}", fix="use a share in [0, 1), e.g. 0.2")])
    wanted = round(ratio / (1 - ratio) * len(train))
    rng = random.Random(seed)
    chosen = rng.sample(general, min(wanted, len(general)))
    mixed = list(train) + chosen
    rng.shuffle(mixed)
    return mixed, len(chosen)


def mix_files(
    train_path: str | Path, out_path: str | Path, general: str = BUILTIN, ratio: float = 0.2, seed: int = 0
) -> dict[str, int]:
    train_path, out_path = Path(train_path), Path(out_path)
    general_path = builtin_general_path() if general == BUILTIN else Path(general)
    train, pool = _valid_records(train_path), _valid_records(general_path)
    mixed, used = mix_records(train, pool, ratio, seed)
    if out_path.exists() and out_path.resolve() in (train_path.resolve(), general_path.resolve()):
        raise DataError(
            "refusing to overwrite an input",
            [Problem(str(out_path), "is one of the inputs", fix="write to a new file")],
        )
    out_path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in mixed), encoding="utf-8")
    wanted = round(ratio / (1 - ratio) * len(train)) if ratio < 1 else 0
    return {
        "train": len(train),
        "general": used,
        "general_wanted": wanted,
        "general_available": len(pool),
        "total": len(mixed),
    }
