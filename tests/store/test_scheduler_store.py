"""SchedulerStore against moto's EventBridge Scheduler: one schedule per job, kept in line idempotently."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from chalicelib.domain.ids import new_id
from chalicelib.domain.schedules import ScheduleError
from chalicelib.store.scheduler import SchedulerStore

GROUP = "switchyard-test"  # the test stage's group (conftest.STAGE = "test")
DAILY = {"type": "daily", "at": "07:15", "timezone": "Europe/Paris", "quiet_hours": None}
WEEKLY = {"type": "weekly", "day": "fri", "at": "18:00", "timezone": "America/New_York"}
EVERY_2H = {"type": "interval", "every_minutes": 120, "timezone": "UTC", "quiet_hours": None}


@pytest.fixture()
def store(aws_endpoint):
    # moto's CloudFormation skips AWS::Scheduler::ScheduleGroup: create the template's group by API.
    sched = boto3.client("scheduler", region_name="us-east-1")
    names = [g["Name"] for g in sched.list_schedule_groups()["ScheduleGroups"]]
    if GROUP not in names:
        sched.create_schedule_group(Name=GROUP)
    return SchedulerStore()


@pytest.fixture()
def ids():
    return new_id("acc"), new_id("job")


def test_a_recurring_schedule_is_created_in_the_stage_group_targeting_the_runs_queue(store, ids):
    account_id, job_id = ids
    # GIVEN an active job with a daily schedule
    # WHEN its schedule is synced
    outcome = store.sync(account_id, job_id, DAILY, active=True)
    # THEN a schedule named after the job exists in switchyard-<stage>
    assert outcome == "created"
    found = boto3.client("scheduler", region_name="us-east-1").get_schedule(Name=f"job-{job_id}", GroupName=GROUP)
    assert found["ScheduleExpression"] == "cron(15 7 * * ? *)"
    assert found["ScheduleExpressionTimezone"] == "Europe/Paris"
    assert found["State"] == "ENABLED" and found["FlexibleTimeWindow"] == {"Mode": "OFF"}
    # AND its target is the runs queue, through the role infra/template.json creates
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.get_queue_url(QueueName="switchyard-test-runs")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    role = boto3.client("iam", region_name="us-east-1").get_role(RoleName="switchyard-test-scheduler")["Role"]
    assert found["Target"]["Arn"] == queue_arn
    assert found["Target"]["RoleArn"] == role["Arn"]


def test_the_input_names_the_job_and_nothing_else(store, ids):
    account_id, job_id = ids
    # GIVEN a synced schedule
    store.sync(account_id, job_id, WEEKLY, active=True)
    # WHEN its target input is read back
    found = store.get(job_id)
    assert found is not None
    message = json.loads(found["Target"]["Input"])
    # THEN it is a run request with ids, the trigger and Scheduler's time placeholder only
    assert message == {
        "account_id": account_id,
        "job_id": job_id,
        "trigger": "schedule",
        "requested_at": "<aws.scheduler.scheduled-time>",
    }
    # AND nothing else in the schedule carries anything but ids
    assert found["Description"] == f"Switchyard job {job_id} of account {account_id}"


def test_sync_is_idempotent_and_updates_only_on_change(store, ids):
    account_id, job_id = ids
    # GIVEN a synced weekly schedule
    assert store.sync(account_id, job_id, WEEKLY, active=True) == "created"
    first = store.get(job_id)
    # WHEN the same schedule is synced again
    again = store.sync(account_id, job_id, WEEKLY, active=True)
    # THEN nothing is written
    assert again == "unchanged"
    assert store.get(job_id)["LastModificationDate"] == first["LastModificationDate"]
    # WHEN the job's schedule changes
    changed = store.sync(account_id, job_id, dict(WEEKLY, day="mon", at="06:00"), active=True)
    # THEN the schedule is updated in place
    assert changed == "updated"
    assert store.get(job_id)["ScheduleExpression"] == "cron(0 6 ? * MON *)"


def test_a_rate_schedule_starts_one_interval_after_sync_and_keeps_its_start(store, ids):
    account_id, job_id = ids
    now = datetime.now(UTC).replace(microsecond=0)
    # GIVEN an interval job synced now (the job's own first run is queued by the service)
    store.sync(account_id, job_id, EVERY_2H, active=True, now=now)
    found = store.get(job_id)
    # THEN the rate counts from one interval later, not from now (no double first run)
    assert found["ScheduleExpression"] == "rate(2 hours)"
    assert abs(found["StartDate"] - (now + timedelta(hours=2))) < timedelta(seconds=2)
    # WHEN it is synced again later, unchanged
    store.sync(account_id, job_id, EVERY_2H, active=True, now=now + timedelta(minutes=30))
    # THEN its start (the rate's anchor) is kept
    assert store.get(job_id)["StartDate"] == found["StartDate"]


def test_inactive_jobs_and_jobs_without_schedule_have_none(store, ids):
    account_id, job_id = ids
    # GIVEN a synced schedule
    store.sync(account_id, job_id, DAILY, active=True)
    # WHEN the job is paused (not active)
    outcome = store.sync(account_id, job_id, DAILY, active=False)
    # THEN the schedule is deleted, and deleting again is not an error
    assert outcome == "deleted" and store.get(job_id) is None
    assert store.sync(account_id, job_id, DAILY, active=False) == "absent"
    assert store.remove(account_id, job_id) is False
    # AND a job without a schedule (one run, now) never gets one
    assert store.sync(account_id, job_id, None, active=True) == "absent"
    assert store.sync(account_id, job_id, {"type": "once", "at": None}, active=True) == "absent"


def test_resume_recreates_and_remove_deletes(store, ids):
    account_id, job_id = ids
    # GIVEN a paused job whose schedule was removed
    store.sync(account_id, job_id, DAILY, active=True)
    store.sync(account_id, job_id, DAILY, active=False)
    # WHEN it is resumed
    assert store.sync(account_id, job_id, DAILY, active=True) == "created"
    # THEN the schedule is back; WHEN the job is deleted THEN remove() deletes it
    assert store.get(job_id) is not None
    assert store.remove(account_id, job_id) is True
    assert store.get(job_id) is None


def test_a_future_one_time_run_is_an_at_schedule_that_deletes_itself(store, ids):
    account_id, job_id = ids
    now = datetime(2026, 1, 1, tzinfo=UTC)
    # GIVEN a job to run once, in the future
    once = {"type": "once", "at": "2030-06-01T09:30:00+02:00"}
    # WHEN synced
    assert store.sync(account_id, job_id, once, active=True, now=now) == "created"
    found = store.get(job_id)
    # THEN it is an at() in UTC that EventBridge deletes after it fires
    assert found["ScheduleExpression"] == "at(2030-06-01T07:30:00)"
    assert found["ScheduleExpressionTimezone"] == "UTC"
    assert found["ActionAfterCompletion"] == "DELETE"
    # WHEN that time has passed THEN there is nothing left to schedule
    later = datetime(2030, 6, 1, 8, tzinfo=UTC)
    assert store.sync(account_id, job_id, once, active=True, now=later) == "deleted"


def test_a_schedule_that_cannot_be_expressed_is_refused_before_any_write(store, ids):
    account_id, job_id = ids
    # GIVEN a malformed schedule
    # WHEN synced
    # THEN ScheduleError, and no schedule exists
    with pytest.raises(ScheduleError):
        store.sync(account_id, job_id, {"type": "daily", "at": "25:00", "timezone": "UTC"}, active=True)
    assert store.get(job_id) is None


@pytest.mark.parametrize("job_id", ["job_01hx", "x" * 60, "x" * 61, "job id with spaces", "jöb"])
def test_schedule_names_are_deterministic_and_valid(job_id):
    # GIVEN any job id
    # WHEN its schedule name is derived twice
    name = SchedulerStore.name_for(job_id)
    # THEN it is the same, at most 64 characters of EventBridge's alphabet, and unique per id
    assert name == SchedulerStore.name_for(job_id)
    assert 1 <= len(name) <= 64
    assert all(c.isascii() and (c.isalnum() or c in "-_.") for c in name)
    assert name != SchedulerStore.name_for(job_id + "2")
