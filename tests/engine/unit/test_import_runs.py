"""Import runs through the engine and the step's commit, on the in-memory store: steps,
checkpoints, counters, log lines, the job's state changes and what a replayed or refused
step leaves. The moto-backed tests/engine/test_engine.py runs the same engine on DynamoDB."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.domain.runs import RunStatus
from chalicelib.domain.statuses import Action, JobStatus
from chalicelib.providers.base import ProviderError
from chalicelib.runs.control import Delivery, PoisonMessage, StepBusy
from chalicelib.runs.engine import Engine, parse_message
from chalicelib.services import alerts
from tests.engine.sources import people
from tests.engine.unit.conftest import World


def test_a_one_time_import_runs_in_steps_to_completed(world: World) -> None:
    # GIVEN a one-time import of 2,500 people, 1,000 a step
    job = world.import_job(people(2500))
    # WHEN the queue is drained
    world.drain()
    # THEN the run took 3 steps and counted every row once
    [run] = world.runs(job)
    assert (run.status, run.step, run.added, run.omitted) == (RunStatus.SUCCEEDED, 3, 2500, 0)
    assert (run.processed, run.read, run.total, run.total_unit) == (2500, 2500, 2500, "rows")
    assert run.cost["steps"] == 3 and run.lease_owner is None
    # AND the job completed, its last run and usage say so
    final = world.reread(job)
    assert final.status is JobStatus.COMPLETED and final.current_run_id is None
    assert final.last_run is not None and (final.last_run["status"], final.last_run["added"]) == ("succeeded", 2500)
    assert final.last_run["cost"]["steps"] == 3 and final.state == {"imported": 2500}
    auth = world.d.auths.get(job.account_id, job.authorization_id)
    assert auth.usage["completed"] == 1 and auth.usage["sleeping"] == auth.usage["running"] == 0
    # AND the log tells the story, newest first; the activity counts the rows
    assert world.codes(job) == ["run.succeeded", "run.step", "run.step", "run.step", "run.started"]
    [done] = world.lines(job, "run.succeeded")
    assert done["message"] == "run finished: 2500 added, 0 omitted"
    assert sum(p["added"] for p in world.d.runs.activity(job.account_id, job.id, "hour", now=world.clock.at)) == 2500
    assert world.d.profiles.find(job.account_id, "email", "person2499@example.com") is not None
    assert world.errors == [] and world.d.runs_queue.messages == []


def test_omitted_rows_are_counted_by_reason(world: World) -> None:
    job = world.import_job(people(100, missing_every=10))
    world.drain()
    [run] = world.runs(job)
    assert (run.added, run.omitted, run.omitted_reasons) == (90, 10, {"missing_identifier": 10})
    [step] = world.lines(job, "run.step")
    assert step["context"]["omitted_reasons"] == {"missing_identifier": 10}


def test_a_scheduled_job_sleeps_then_its_next_run_finds_nothing_changed(world: World) -> None:
    job = world.import_job(people(50), schedule={"type": "interval", "every_minutes": 60})
    world.drain()
    first = world.reread(job)
    assert first.status is JobStatus.SLEEPING and first.next_run_at
    # WHEN its schedule fires
    world.trigger(job, "schedule")
    world.drain()
    # THEN a second run read every row again and stored nothing new
    runs = {r.trigger: r for r in world.runs(job)}
    assert sorted(runs) == ["create", "schedule"] and runs["create"].added == 50
    assert (runs["schedule"].status, runs["schedule"].added) == (RunStatus.SUCCEEDED, 0)
    assert runs["schedule"].omitted_reasons == {"unchanged": 50}


def test_a_crash_after_the_write_replays_the_step_without_counting_twice(world: World, crash_once: Any) -> None:
    # GIVEN a step that dies after writing its profiles, before its commit
    crash_once("after_write")
    job = world.import_job(people(300))
    # WHEN SQS delivers the message again
    world.drain()
    # THEN the replay wrote with the same step tag: each row counted once
    assert [str(e) for e in world.errors] == ["crash at after_write"]
    [run] = world.runs(job)
    assert (run.status, run.added, run.omitted, run.step) == (RunStatus.SUCCEEDED, 300, 0, 1)
    assert sum(p["added"] for p in world.d.runs.activity(job.account_id, job.id, "hour", now=world.clock.at)) == 300


def test_a_crash_between_commit_and_enqueue_requeues_the_next_step_once(world: World, crash_once: Any) -> None:
    world.options.max_records = 100
    crash_once("before_enqueue")
    job = world.import_job(people(250))
    world.drain()
    # THEN the redelivered first step found its step committed and queued the next one only
    assert [str(e) for e in world.errors] == ["crash at before_enqueue"]
    [run] = world.runs(job)
    assert (run.status, run.step, run.added, run.enqueued_step) == (RunStatus.SUCCEEDED, 3, 250, 2)
    assert world.codes(job).count("run.step") == 3


def test_a_late_duplicate_of_the_starting_message_queues_nothing_more(world: World) -> None:
    world.options.max_records = 100
    job = world.import_job(people(250))
    [start] = world.d.runs_queue.messages
    world.drain(limit=1)  # step 0 committed, step 1 queued
    assert [m.body["step"] for m in world.d.runs_queue.messages] == [1]
    # WHEN SQS delivers the starting message again (at least once)
    Engine(world.d, world.options).handle(Delivery(body=start.body, message_id=start.message_id))
    # THEN the run it started carries on: step 1 was queued already, nothing is queued twice
    assert [m.body["step"] for m in world.d.runs_queue.messages] == [1]
    world.drain()
    [run] = world.runs(job)
    assert (run.status, run.added, run.step) == (RunStatus.SUCCEEDED, 250, 3) and world.errors == []


def test_a_second_delivery_waits_for_the_lease_until_it_lapses(world: World) -> None:
    world.options.max_records = 100
    job = world.import_job(people(200))
    world.drain(limit=1)  # step 0 committed, step 1 queued
    [run] = world.runs(job)
    # GIVEN another delivery holds step 1's lease
    assert world.d.runs.acquire(run, "other-delivery", 60)
    # WHEN step 1's message arrives THEN it is busy, and nothing moved
    world.drain(limit=1)
    assert [type(e) for e in world.errors] == [StepBusy]
    assert world.runs(job)[0].step == 1
    # WHEN the lease lapses THEN the step is taken over and the run finishes
    world.clock.move(seconds=61)
    world.drain()
    [run] = world.runs(job)
    assert (run.status, run.added) == (RunStatus.SUCCEEDED, 200)


def test_a_transient_error_backs_off_then_resumes_from_the_checkpoint(world: World) -> None:
    world.options.max_records = 100
    job = world.import_job(people(300))
    world.drain(limit=1)  # step 0 committed
    world.source.errors = [ProviderError("rate limited (429)", transient=True)]
    world.drain()
    # THEN the run is retrying, one fault counted, a retry queued with a delay for then
    [run] = world.runs(job)
    retrying = world.reread(job)
    assert (run.status, run.step, retrying.status, retrying.fault_count) == (
        RunStatus.RETRYING, 1, JobStatus.SLEEPING, 1)
    [retry] = world.d.runs_queue.messages
    assert retry.delay_seconds > 0 and retry.body["trigger"] == "retry" and retry.body["fault_count"] == 1
    assert retry.body["not_before"] == retrying.next_run_at
    [warning] = world.lines(job, "run.transient_error")
    assert warning["level"] == "warning" and "rate limited" in warning["message"]
    # WHEN its time comes THEN the same run resumes at step 1 and finishes with exact counts
    world.clock.move(seconds=retry.delay_seconds + 5)
    world.drain(delayed=True)
    [run] = world.runs(job)
    final = world.reread(job)
    assert (run.status, run.added, final.status, final.fault_count) == (
        RunStatus.SUCCEEDED, 300, JobStatus.COMPLETED, 0)
    assert "run.resumed" in world.codes(job)


def test_a_permanent_error_fails_the_job_and_sends_one_alert(world: World) -> None:
    world.source.errors = [ProviderError("bucket 'x' does not exist (NoSuchBucket)")]
    job = world.import_job(people(10), schedule={"type": "interval", "every_minutes": 60})
    world.drain()
    [run] = world.runs(job)
    final = world.reread(job)
    assert (run.status, final.status, final.fault_count) == (RunStatus.FAILED, JobStatus.FAILED, 1)
    assert final.pending_alert is None  # sent, then cleared
    [event] = world.d.event_bus.take(job.account_id)
    assert event["detail-type"] == alerts.JOB_FAILED and event["detail"]["run_id"] == run.id
    assert world.d.scheduler.removed == [(job.account_id, job.id)]
    [line] = world.d.runs.logs(job.account_id, job.id, limit=10, cursor=None, level="error").items
    assert line["code"] == "run.config_error" and "does not exist" in line["message"]
    assert world.d.runs_queue.messages == []  # no retry


def test_a_job_paused_during_its_last_step_commits_nothing_of_it(world: World) -> None:
    # GIVEN a one-step run whose job is paused while the step writes
    job = world.import_job(people(20))

    def pause(point: str) -> None:
        if point == "after_write":
            running = world.reread(job)
            world.d.jobs.save(running, running.acted(Action.PAUSE, "2026-03-02T09:00:00Z"), expected_version=None)

    world.options.fault = pause
    world.drain()
    # THEN the step's transaction was refused as one: no counters, no activity, no step line
    [run] = world.runs(job)
    assert (run.status, run.step, run.added) == (RunStatus.PAUSED, 0, 0)
    assert world.d.runs.activity(job.account_id, job.id, "hour", now=world.clock.at)[-1]["added"] == 0
    assert world.codes(job) == ["run.paused", "run.started"]
    assert world.reread(job).status is JobStatus.PAUSED and world.errors == []


def test_a_trigger_for_a_running_job_is_ignored_with_a_line(world: World) -> None:
    world.options.max_records = 10
    job = world.import_job(people(30))
    world.drain(limit=1)
    world.trigger(job, "run")
    world.drain()
    assert [r.status for r in world.runs(job)] == [RunStatus.SUCCEEDED]
    [ignored] = world.lines(job, "run.trigger_ignored")
    assert ignored["message"] == "run ignored: the job is running"


def test_each_step_counts_its_provider_requests_once(world: World, crash_once: Any) -> None:
    world.options.max_records = 100
    crash_once("after_write")  # the first attempt's read is not committed: the replay's is
    job = world.import_job(people(300))
    world.drain()
    series = world.d.runs.request_activity(job.account_id, job.authorization_id, "hour", now=world.clock.at)
    assert sum(p["api_requests"] for p in series) == 3 and sum(p["errors"] for p in series) == 0


@pytest.mark.parametrize(("body", "why"), [
    ("not an object", "message body is not an object"),
    ({"account_id": "a", "trigger": "run"}, "message has no job_id"),
    ({"account_id": "a", "job_id": "j", "trigger": "later"}, "unknown trigger 'later'"),
    ({"account_id": "a", "job_id": "j", "trigger": "continue", "run_id": "r"}, "a continuation names its run and step"),
])
def test_a_message_no_retry_can_fix_is_poison(body: Any, why: str) -> None:
    with pytest.raises(PoisonMessage, match=why):
        parse_message(body)
