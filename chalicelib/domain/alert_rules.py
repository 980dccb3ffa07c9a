"""An alert rule on a job's metric: bounds per time bucket, and its state (ok or breached)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class AlertRule:
    account_id: str
    job_id: str
    metric: str  # added | removed | omitted
    granularity: str  # hour | day | week
    min: int | None
    max: int | None
    allowable_violations: int
    id: str = ""
    created_at: str = ""
    created_by: str = ""
    alert_state: str = "ok"  # ok | breached
    state_changed_at: str | None = None
    # The breach alert recorded with the move to `breached`, not known to have left yet:
    # {transition_id, detail_json} (services/alert_rules.py sends and clears it).
    pending_alert: dict[str, Any] | None = None

    def describe(self) -> str:
        bounds = []
        if self.min is not None:
            bounds.append(f"{self.metric} ≥ {self.min}")
        if self.max is not None:
            bounds.append(f"{self.metric} ≤ {self.max}")
        return f"{' and '.join(bounds)} per {self.granularity}"
