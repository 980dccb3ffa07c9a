"""The step's commit (chalicelib/runs/commit.py) called directly: a stage's outcome becomes
one transaction, all of it or none of it."""

from __future__ import annotations

import copy
import time

import pytest

from chalicelib.domain.runs import LogLine, Run
from chalicelib.runs.commit import commit_step
from chalicelib.runs.control import Delivery, RunControl
from chalicelib.runs.outcome import StepOutcome
from chalicelib.store.dynamo import TransactionFailed
from tests.engine.sources import people
from tests.engine.unit.conftest import World


def _mid_run(world: World) -> tuple[RunControl, Run]:
    """A running import at step 1 (step 0 committed, its successor still queued)."""
    world.options.max_records = 10
    job = world.import_job(people(30))
    world.drain(limit=1)
    world.d.runs_queue.messages.clear()
    [run] = world.runs(job)
    assert run.step == 1
    return RunControl(world.d, world.options), run


def _outcome() -> StepOutcome:
    return StepOutcome(cursor={"i": 20}, processed=20, total=30, done=False, state={}, added=7,
                       omitted_reasons={"unchanged": 3},
                       lines=[LogLine("info", "run.step", "step 1: 10 read, 7 added, 3 omitted")])


def _commit(world: World, ctl: RunControl, run: Run, owner: str) -> None:
    job = world.d.jobs.get(run.account_id, run.job_id)
    calls = world.d.calls(job.authorization_id)
    calls.add("test_source.read")
    # Each delivery reads its own copy of the run (the commit moves the copy it is given on).
    commit_step(ctl, job, copy.deepcopy(run), Delivery(body={}, message_id=owner), time.monotonic(), _outcome(), {}, calls)


def test_a_step_commits_once_however_often_it_is_delivered(world: World) -> None:
    ctl, run = _mid_run(world)
    assert world.d.runs.acquire(run, "m1", 60)
    _commit(world, ctl, run, "m1")
    after = world.d.runs.get(run.account_id, run.job_id, run.id)
    assert (after.step, after.added, after.omitted_reasons, after.cursor) == (2, 17, {"unchanged": 3}, {"i": 20})
    [queued] = world.d.runs_queue.messages
    assert (queued.body["trigger"], queued.body["step"]) == ("continue", 2)
    lines = len(world.d.runs.lines(run.account_id, run.job_id))
    # WHEN the same step's outcome is committed again (a late duplicate)
    _commit(world, ctl, run, "m1")
    # THEN nothing of it landed: counters, log lines, requests and the queue are as they were
    again = world.d.runs.get(run.account_id, run.job_id, run.id)
    assert (again.step, again.added, again.omitted) == (2, 17, 3)
    assert len(world.d.runs.lines(run.account_id, run.job_id)) == lines
    auth_id = world.d.jobs.get(run.account_id, run.job_id).authorization_id
    series = world.d.runs.request_activity(run.account_id, auth_id, "hour", now=world.clock.at)
    assert sum(p["api_requests"] for p in series) == 2  # step 0's read and this step's, once
    assert len(world.d.runs_queue.messages) == 1


def test_a_commit_without_the_lease_is_refused_and_raised_for_redelivery(world: World) -> None:
    ctl, run = _mid_run(world)
    assert world.d.runs.acquire(run, "m1", 60)
    with pytest.raises(TransactionFailed) as refused:
        _commit(world, ctl, run, "m2")
    assert refused.value.refused == ["run"]
    still = world.d.runs.get(run.account_id, run.job_id, run.id)
    assert (still.step, still.added, still.lease_owner) == (1, 10, "m1")
    assert world.d.runs_queue.messages == []
