"""An audit event: who did what to which object, and what changed (no secrets: a diff is
taken from metadata and config only)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class AuditEvent:
    account_id: str
    user_id: str
    action: str  # created, changed, paused, resumed, run, deleted, rotated, reauthorized, purged
    object_type: str  # job, authorization, audience, alert_rule, alert_settings, token, user
    object_id: str
    label: str = ""
    diff: dict[str, Any] = field(default_factory=dict)  # field -> {"before", "after"}
    at_ns: int = field(default_factory=time.time_ns)  # one clock reading orders the events

    @property
    def at(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at_ns / 1e9))


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Fields whose values differ, as {"before", "after"} (both dicts hold no secrets)."""
    return {k: {"before": before.get(k), "after": after.get(k)}
            for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)}
