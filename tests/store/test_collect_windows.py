"""A collection job's hour window runs, as `RunRepo` writes them (against moto): one item an
hour, made once, with exactly a run's attributes plus the window's counters; the API side
(counts, closing the last hour) is tests/api/test_collect_api.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib.domain.runs import Run, RunStatus
from chalicelib.store import keys as K
from chalicelib.store.runs import RUN_TTL_DAYS, run_sk


def test_an_hours_window_is_one_run_item_made_once(deps: Any) -> None:
    at = datetime(2026, 3, 1, 9, 15, tzinfo=UTC)
    first = deps.runs.open_window("acct_w", "job_w", at, "2026-03-01T09:15:00Z")
    again = deps.runs.open_window("acct_w", "job_w", at.replace(minute=50), "2026-03-01T09:50:00Z")
    item = deps.table.get(K.account_pk("acct_w"), run_sk("job_w", first), consistent=True)
    assert first == again == "win_2026030109"
    assert sorted(item) == sorted(["PK", "SK", "type", "id", "job_id", "account_id", "trigger", "status",
                                   "started_at", "step", "processed", "added", "removed", "omitted",
                                   "omitted_reasons", "cost", "enqueued_step", "expires_at", "read", "duplicates"])
    assert (item["trigger"], item["status"], item["started_at"], item["read"], item["duplicates"]) == (
        "collect", "running", "2026-03-01T09:15:00Z", 0, 0)  # the first hand-off's time stays
    assert item["expires_at"] == int(at.timestamp()) + RUN_TTL_DAYS * 86400
    run = deps.runs.get("acct_w", "job_w", first)
    assert (run.status, run.trigger) == (RunStatus.RUNNING, "collect")


def test_a_kind_of_run_adds_attributes_but_replaces_none(deps: Any) -> None:
    run = Run(id="run_x", job_id="job_x", account_id="acct_x", trigger="run", status=RunStatus.RUNNING,
              started_at="2026-03-01T09:00:00Z")
    assert deps.runs.new_run_op(run, extra={"read": 0})["Put"]["Item"]["read"] == {"N": "0"}
    with pytest.raises(ValueError, match="status"):
        deps.runs.new_run_op(run, extra={"status": "succeeded"})
