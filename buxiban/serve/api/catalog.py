"""What this server serves, in OpenAI's model-object shape: the base model, every `--alias` (an old
model name, e.g. a hosted fine-tune's, answered by a registered adapter or the base) and every
registered adapter, each adapter with whether it can be served here and why not. Read by /v1/models
and by the dashboard's playground."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ...errors import AdapterError, ServeError

if TYPE_CHECKING:
    from ...adapters.registry import Registry
    from ..app import ServeState

# An alias is only ever compared with a request's `model`, never made into a path; bounded and
# printable so /v1/models stays readable. OpenAI's names (ft:gpt-4o-mini-2024-07-18:acme::abc) fit.
ALIAS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,255}$")


def served_models(state: ServeState) -> list[dict[str, Any]]:
    pool = state.pool
    data = [
        {
            "id": pool.base_id,
            "object": "model",
            "created": state.started,
            "owned_by": "buxiban",
            "buxiban": {"kind": "base", "spec": state.settings.model},
        }
    ]
    for alias, target in sorted(pool.model_aliases.items()):
        data.append(
            {
                "id": alias,
                "object": "model",
                "created": state.started,
                "owned_by": "buxiban",
                "parent": pool.base_id,
                "buxiban": {"kind": "alias", "target": target},
            }
        )
    for entry in state.registry.list():
        problem = pool.unservable(entry)
        data.append(
            {
                "id": entry.name,
                "object": "model",
                "created": int(entry.registered),
                "owned_by": "user",
                "parent": pool.base_id if not problem else entry.base_model,
                "buxiban": {
                    "kind": "adapter",
                    "servable": problem is None,
                    "reason": problem,
                    "method": entry.method,
                    "run_dir": str(entry.run_dir),
                },
            }
        )
    return data


def check_aliases(aliases: dict[str, str], registry: Registry) -> None:
    """--alias OLD=MODEL, before the model loads: OLD well formed and not already a registered name
    (an alias must never hide a model). Whether MODEL names the base is known once it has loaded."""
    for old in aliases:
        if not ALIAS.match(old):
            raise ServeError(
                f"--alias {old[:80]!r}: the old name must be 1-256 letters, digits or . _ : / @ + -, "
                "starting with a letter or digit"
            )
        try:
            registry.get(old)
        except AdapterError:
            continue
        raise ServeError(f"--alias {old}: that name is already a registered adapter; an alias must not hide it")


def aliases_to_base_checked(aliases: dict[str, str], registry: Registry, base_names: set[str]) -> dict[str, str]:
    """Every alias's MODEL is the base (by any of its names) or a registered adapter."""
    for old, target in aliases.items():
        if old in base_names:
            raise ServeError(f"--alias {old}: that is the base model's own name; an alias must not hide it")
        if target in base_names:
            continue
        try:
            registry.get(target)
        except AdapterError:
            known = ", ".join(sorted(base_names | {e.name for e in registry.list()}))
            raise ServeError(
                f"--alias {old}={target}: '{target}' is neither the base model nor a registered adapter "
                f"(known here: {known}); register the run with --adapter {target}=RUN_DIR"
            ) from None
    return dict(aliases)
