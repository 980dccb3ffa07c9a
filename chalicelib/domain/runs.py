"""A run of a job and what its steps record: the run's status, a step's commit, log lines.

Plain data and the rules about them; the store writes them (store/runs.py) and the engine
decides when (chalicelib/runs/).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from chalicelib.domain.ids import new_transition_id


class RunStatus(StrEnum):
    RUNNING = "running"
    RETRYING = "retrying"  # a transient error: the run resumes from its checkpoint
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


# A run in one of these is picked up again by the job's next start instead of a new run.
RESUMABLE: frozenset[RunStatus] = frozenset({RunStatus.PAUSED, RunStatus.RETRYING})
# A run in one of these has finished: it has a finished_at and no lease.
ENDED: frozenset[RunStatus] = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})


@dataclass
class Run:
    id: str
    job_id: str
    account_id: str
    trigger: str
    status: RunStatus
    started_at: str
    requested_by: str | None = None
    finished_at: str | None = None
    step: int = 0
    cursor: dict[str, Any] | None = None
    processed: int = 0
    total: int | None = None
    total_unit: str = "rows"
    read: int = 0  # progress in total_unit (rows, or bytes of the source)
    added: int = 0
    removed: int = 0
    omitted: int = 0
    omitted_reasons: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    cost: dict[str, float] = field(default_factory=dict)
    lease_owner: str | None = None
    enqueued_step: int = 0
    origin: str | None = None  # id of the message that started (or resumed) it

    def resume(self, origin: str | None) -> None:
        self.status = RunStatus.RUNNING
        self.origin = origin

    def summary(self, status: RunStatus, finished_at: str | None, *, added: int = 0, removed: int = 0,
                omitted: int = 0, error: str | None = None,
                cost: dict[str, float] | None = None) -> dict[str, Any]:
        """The job's `last_run`: this run's totals with a step's counters added."""
        out: dict[str, Any] = {
            "id": self.id, "status": status.value, "started_at": self.started_at, "finished_at": finished_at,
            "added": self.added + added, "removed": self.removed + removed, "omitted": self.omitted + omitted,
            "error": error,
        }
        if cost is not None:
            total = dict(self.cost)
            for k, v in cost.items():
                total[k] = round(total.get(k, 0) + v, 4)
            out["cost"] = total
        return out


@dataclass
class StepCommit:
    """What one step adds to its run; turned into one UpdateItem."""

    step: int  # the step being committed (its number before the commit)
    cursor: dict[str, Any] | None
    processed: int
    total: int | None
    total_unit: str
    read: int = 0
    added: int = 0
    removed: int = 0
    omitted_reasons: dict[str, int] = field(default_factory=dict)
    cost: dict[str, float] = field(default_factory=dict)
    status: RunStatus | None = None  # set when the run ends with this step
    error: str | None = None


@dataclass
class LogLine:
    level: str  # debug | info | warning | error
    code: str
    message: str
    run_id: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    user: str | None = None


def pending_alert(detail_type: str, detail: dict[str, Any]) -> dict[str, Any]:
    """A job alert to record in the state change's own transaction (docs/alerts.md)."""
    return {"transition_id": new_transition_id(), "type": detail_type,
            "detail_json": json.dumps(detail, sort_keys=True, default=str)}
