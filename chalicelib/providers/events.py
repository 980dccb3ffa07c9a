"""Audience enter/exit events: the one JSON shape every event destination sends
(Kinesis, SQS, webhooks). Pure.

An export run's plan row is (action, profile_id, values of the job's exported fields); a
destination that takes events turns each row into one event. `event_id` is derived from
(run, part, position), so a redelivered step sends the same events with the same ids and a
consumer can drop duplicates (delivery is at least once). A destination that may send only
part of the rows it is given (webhooks stop at the step's deadline) passes `first_row`:
ids then come from the row's position in the run's plan, the same whichever part sends it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from chalicelib.providers.roles import StepContext

EVENT_TYPES = {"add": "audience.entered", "remove": "audience.exited"}
SCHEMA_VERSION = 1


def event_id(run_id: str, part: int, index: int) -> str:
    return "evt_" + hashlib.sha256(f"{run_id}\x1f{part}\x1f{index}".encode()).hexdigest()[:32]


def row_event_id(run_id: str, row: int) -> str:
    return "evt_" + hashlib.sha256(f"{run_id}\x1frow\x1f{row}".encode()).hexdigest()[:32]


def build_events(ctx: StepContext, frozen: dict[str, Any], part: int,
                 rows: Sequence[tuple[str, str, list[Any]]], *,
                 first_row: int | None = None) -> list[dict[str, Any]]:
    """One event per plan row, in order. `frozen["fields"]` names the values."""
    names: list[str] = list(frozen.get("fields") or [])
    out = []
    for i, (action, profile_id, values) in enumerate(rows):
        out.append({
            "schema_version": SCHEMA_VERSION,
            "event_id": event_id(ctx.run_id, part, i) if first_row is None
            else row_event_id(ctx.run_id, first_row + i),
            "type": EVENT_TYPES[action],
            "account_id": ctx.account_id,
            "job_id": ctx.job_id,
            "run_id": ctx.run_id,
            "audience_id": frozen.get("audience_id"),
            "profile_id": profile_id,
            "fields": dict(zip(names, values, strict=False)),
        })
    return out


def encode(event: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON, keys sorted: the same event always makes the same bytes."""
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


__all__ = ["EVENT_TYPES", "build_events", "encode", "event_id", "row_event_id"]
