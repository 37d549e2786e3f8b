"""What this server serves, in OpenAI's model-object shape: the base model and every registered
adapter, each adapter with whether it can be served here and why not. Read by /v1/models and by the
dashboard's playground."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..app import ServeState


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
