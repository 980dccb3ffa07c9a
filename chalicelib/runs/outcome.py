"""What one step of a run did, before anything about it is committed (runs/commit.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chalicelib.domain.runs import LogLine


@dataclass
class StepOutcome:
    """A stage's result: the checkpoint to move to, the step's counters and log lines.

    `state` is the job's state once the run succeeds (used when `done`)."""

    cursor: dict[str, Any]
    processed: int
    total: int | None  # None while a source cannot tell how much it will read
    done: bool
    state: dict[str, Any]
    added: int = 0
    removed: int = 0
    omitted_reasons: dict[str, int] = field(default_factory=dict)
    lines: list[LogLine] = field(default_factory=list)
    total_unit: str = "rows"
    read: int | None = None  # what the run's "read" counter moves by; None: `processed`
    # Store costs of the step's own writes (DynamoDB units), added to the step's cost record.
    store_cost: dict[str, float] = field(default_factory=dict)
    # The finishing log line counts removals only for stages that remove (imports do not).
    reports_removed: bool = True
    # Fields of the "step committed" log line (the commit adds provider calls and duration),
    # for stages that write one.
    summary: dict[str, Any] | None = None
    # Best-effort housekeeping once the run's last commit is in (it may not fail the run).
    after_success: Callable[[], None] | None = None

    @property
    def omitted(self) -> int:
        return sum(self.omitted_reasons.values())
