"""The job's and the run's state changes, as pure domain methods (no store, no moto)."""

from __future__ import annotations

import pytest

from chalicelib.domain.catalog import JobType
from chalicelib.domain.errors import Conflict
from chalicelib.domain.models import Job
from chalicelib.domain.runs import RESUMABLE, Run, RunStatus
from chalicelib.domain.statuses import Action, JobStatus

NOW = "2026-12-05T10:00:00Z"


def job(status: JobStatus = JobStatus.SLEEPING, schedule: dict | None = None, **kw: object) -> Job:
    return Job(id="job_1", account_id="acct_1", provider="amazon_s3", job_type=JobType.IMPORT,
               workflow="s3_file_import", authorization_id="auth_1", label="J", description="",
               config={}, schedule=schedule, status=status, owner="usr_1", created_at=NOW, updated_at=NOW,
               **kw)  # type: ignore[arg-type]


def run(**kw: object) -> Run:
    return Run(id="run_1", job_id="job_1", account_id="acct_1", trigger="schedule", status=RunStatus.RUNNING,
               started_at=NOW, added=10, removed=2, omitted=3, cost={"lambda_ms": 1.5}, **kw)  # type: ignore[arg-type]


HOURLY = {"type": "recurring", "frequency": "hourly"}


def test_a_started_run_makes_the_job_running_and_leaves_the_read_job_alone():
    before = job()
    after = before.run_started("run_1")
    assert (after.status, after.current_run_id) == (JobStatus.RUNNING, "run_1")
    assert (before.status, before.current_run_id) == (JobStatus.SLEEPING, None)


def test_only_a_sleeping_job_starts_a_run():
    with pytest.raises(Conflict):
        job(JobStatus.PAUSED).run_started("run_1")


@pytest.mark.parametrize(("schedule", "status"), [(None, JobStatus.COMPLETED), ({"type": "once"}, JobStatus.COMPLETED),
                                                  (HOURLY, JobStatus.SLEEPING)])
def test_a_succeeded_run_completes_a_one_time_job_and_puts_a_scheduled_one_to_sleep(schedule, status):
    before = job(JobStatus.RUNNING, schedule, fault_count=2, first_fault_at=NOW, current_run_id="run_1")
    last = run().summary(RunStatus.SUCCEEDED, NOW, added=5, cost={"lambda_ms": 2.25, "steps": 1.0})
    after = before.run_succeeded(state={"cursor": 1}, last_run=last, next_run_at="2026-12-05T11:00:00Z",
                                 pending_alert=None)
    assert after.status is status
    assert (after.fault_count, after.first_fault_at, after.current_run_id) == (0, None, None)
    assert after.state == {"cursor": 1} and after.next_run_at == "2026-12-05T11:00:00Z"
    # the run's totals include the last step's, and the cost adds up per key
    assert after.last_run == {"id": "run_1", "status": "succeeded", "started_at": NOW, "finished_at": NOW,
                              "added": 15, "removed": 2, "omitted": 3, "error": None,
                              "cost": {"lambda_ms": 3.75, "steps": 1.0}}


def test_a_fault_counts_then_either_retries_or_gives_up():
    before = job(JobStatus.RUNNING, HOURLY, fault_count=1, current_run_id="run_1")
    faulted = before.step_faulted("2026-12-05T09:00:00Z")
    assert (faulted.fault_count, faulted.first_fault_at, faulted.status) == (2, "2026-12-05T09:00:00Z",
                                                                              JobStatus.RUNNING)
    retry = faulted.retries_at("2026-12-05T10:05:00Z", run().summary(RunStatus.RETRYING, None, error="x"))
    assert (retry.status, retry.next_run_at, retry.current_run_id) == (JobStatus.SLEEPING, "2026-12-05T10:05:00Z",
                                                                       "run_1")
    assert retry.last_run is not None and "cost" not in retry.last_run and retry.last_run["finished_at"] is None
    alert = {"transition_id": "t", "type": "Job Failed", "detail_json": "{}"}
    failed = faulted.gave_up(run().summary(RunStatus.FAILED, NOW, error="x"), alert)
    assert (failed.status, failed.next_run_at, failed.current_run_id) == (JobStatus.FAILED, None, None)
    assert failed.pending_alert == alert and failed.fault_count == 2


@pytest.mark.parametrize(("action", "status", "next_run", "faults"), [
    (Action.PAUSE, JobStatus.PAUSED, None, 3),
    (Action.RUN_NOW, JobStatus.SLEEPING, NOW, 3),
])
def test_user_actions(action, status, next_run, faults):
    after = job(JobStatus.SLEEPING, HOURLY, fault_count=3, next_run_at="x").acted(action, NOW)
    assert (after.status, after.next_run_at, after.fault_count) == (status, next_run, faults)


def test_resume_forgets_faults_and_waits_for_a_future_start():
    after = job(JobStatus.FAILED, fault_count=4).acted(Action.RESUME, NOW, start_at="2026-12-06T00:00:00Z")
    assert (after.status, after.next_run_at, after.fault_count) == (JobStatus.SLEEPING, "2026-12-06T00:00:00Z", 0)
    with pytest.raises(Conflict):
        job(JobStatus.COMPLETED).acted(Action.RESUME, NOW)


def test_a_paused_or_retrying_run_is_resumed_with_its_new_origin():
    assert {RunStatus.PAUSED, RunStatus.RETRYING} == RESUMABLE
    r = run()
    r.status = RunStatus.PAUSED
    r.resume("msg_2")
    assert (r.status, r.origin) == (RunStatus.RUNNING, "msg_2")


def test_an_edit_changes_only_the_plain_settings_that_differ_and_names_them():
    before = job(schedule=HOURLY, provider_account="111111111111")
    after, changed = before.edited({"label": "New", "description": "", "schedule": HOURLY,
                                    "failure_window_hours": 2.0, "status": "failed", "config": {"x": 1}})
    # description and schedule are sent unchanged; status and config are not plain settings
    assert changed == ["label", "failure_window_hours"]
    assert (after.label, after.failure_window_hours, after.status, after.config) == ("New", 2.0,
                                                                                     JobStatus.SLEEPING, {})
    assert (before.label, before.failure_window_hours) == ("J", 10.0)
    assert before.edited({}) == (before, [])


def test_a_new_authorization_and_config_leave_the_read_job_alone():
    from chalicelib.domain.models import Authorization, Health, HealthStatus

    before = job(provider_account="111111111111")
    other = Authorization(id="auth_2", account_id="acct_1", provider="amazon_s3", method="access_key",
                          label="Second", description="", owner="usr_1", created_at=NOW, updated_at=NOW,
                          secret_name="s", health=Health(HealthStatus.HEALTHY, None, NOW))
    moved = before.reauthorized(other, "222222222222")
    assert (moved.authorization_id, moved.authorization_label, moved.provider_account) == (
        "auth_2", "Second", "222222222222")
    # a check that named no account keeps the one the job reaches
    assert before.reauthorized(other, None).provider_account == "111111111111"
    assert before.reconfigured({"bucket": "b"}).config == {"bucket": "b"}
    assert (before.authorization_id, before.config) == ("auth_1", {})


def test_a_served_resync_forgets_its_marker_and_nothing_else():
    before = job(state={"resync": {"id": "rs_1"}, "generation": 3}).resync_asked({"id": "rs_2"}, drop_run=False)
    assert before.resync_requested == {"id": "rs_2"}
    after = before.resync_served()
    assert after.resync_requested is None and after.state == {"generation": 3}
    assert before.resync_requested == {"id": "rs_2"}
