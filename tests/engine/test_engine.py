"""The job engine through its real parts: the API queues, SQS delivers, the engine steps,
DynamoDB commits. Only the import source is a test double (tests/engine/sources.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.providers.base import ProviderError
from chalicelib.runs.engine import Delivery, Engine, EngineOptions, PoisonMessage, StepBusy
from chalicelib.store import aws
from tests.engine.sources import people
from tests.seeds import replay_hint, seeded


def _job(api, job_id):
    return api.get(f"/jobs/{job_id}").json["data"]


def _runs(api, job_id):
    return api.get(f"/jobs/{job_id}/runs").json["data"]


def _logs(api, job_id, level=None):
    q = f"?level={level}" if level else ""
    return api.get(f"/jobs/{job_id}/logs{q}").json["data"]


def test_one_time_import_runs_in_steps_to_completed(api, deps, tenant, drain, make_job):
    # GIVEN a one-time import of 2,500 people, 1,000 per step
    job = make_job(people(2500))
    # WHEN the queue is drained
    drain.run()
    # THEN the job completed, its run succeeded after 3 steps with exact counts
    final = _job(api, job["id"])
    assert final["status"] == "completed", final
    assert final["last_run"]["added"] == 2500 and final["last_run"]["status"] == "succeeded"
    [run] = _runs(api, job["id"])
    assert run["status"] == "succeeded" and run["added"] == 2500 and run["omitted"] == 0
    assert run["progress"] == {"steps": 3, "processed": 2500, "read": 2500, "total": 2500, "unit": "rows"}
    assert run["cost"]["steps"] == 3 and run["cost"]["aws_dynamodb"] > 0
    # the credentials, read beside each step's lease, still count in its cost: one read a step
    assert run["cost"]["aws_secretsmanager"] == 3
    # AND the profiles exist, the activity counts them, the logs tell the story
    assert deps.profiles.find(tenant.account_id, "email", "person2499@example.com") is not None
    day = api.get(f"/jobs/{job['id']}/activity?granularity=hour").json["data"]["series"]
    assert sum(p["added"] for p in day) == 2500
    codes = [line["code"] for line in _logs(api, job["id"])]
    assert codes == ["run.succeeded", "run.step", "run.step", "run.step", "run.started", "job.created"]
    assert drain.errors == []


def test_omitted_records_carry_reason_codes(api, drain, make_job):
    job = make_job(people(100, missing_every=10))
    drain.run()
    [run] = _runs(api, job["id"])
    assert run["added"] == 90 and run["omitted"] == 10
    assert run["omitted_reasons"] == {"missing_identifier": 10}


def test_continuous_job_runs_sleeps_and_runs_again(api, deps, tenant, drain, make_job):
    # GIVEN an hourly job
    job = make_job(people(50), schedule={"type": "interval", "every_minutes": 60})
    drain.run()
    first = _job(api, job["id"])
    assert first["status"] == "sleeping" and first["next_run_at"]
    # WHEN its schedule fires (what EventBridge Scheduler sends)
    deps.runs_queue.send({"account_id": tenant.account_id, "job_id": job["id"], "trigger": "schedule"})
    drain.run()
    # THEN it ran again; nothing changed, so every record is omitted as unchanged
    runs = _runs(api, job["id"])
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"]
    assert runs[0]["trigger"] == "schedule" and runs[0]["omitted_reasons"] == {"unchanged": 50}
    assert _job(api, job["id"])["status"] == "sleeping"


def test_pause_during_a_run_then_resume_finishes_exactly(api, deps, tenant, drain, make_job, options):
    # GIVEN a run that has committed its first step
    job = make_job(people(3000))
    options.max_records = 1000
    drain.run(limit=1)
    assert _job(api, job["id"])["status"] == "running"
    # WHEN the user pauses it, and the queue goes on
    r = api.post(f"/jobs/{job['id']}/pause")
    assert r.status_code == 200 and r.json["data"]["status"] == "paused"
    drain.run()
    # THEN the run stopped between steps
    [run] = _runs(api, job["id"])
    assert run["status"] == "paused" and run["added"] == 1000
    # WHEN resumed THEN it continues from its checkpoint and the totals are exact
    assert api.post(f"/jobs/{job['id']}/resume").status_code == 200
    drain.run()
    [run] = _runs(api, job["id"])
    assert run["status"] == "succeeded" and run["added"] == 3000 and run["omitted"] == 0
    assert _job(api, job["id"])["status"] == "completed"


def test_config_error_fails_at_once_with_a_clear_line(api, drain, make_job, source):
    source.errors = [ProviderError("bucket 'x' does not exist (NoSuchBucket)")]
    job = make_job(people(10))
    drain.run()
    final = _job(api, job["id"])
    assert final["status"] == "failed" and final["fault_count"] == 1
    [line] = _logs(api, job["id"], level="error")
    assert line["code"] == "run.config_error" and "does not exist" in line["message"]
    assert "resume" in line["message"]


def test_an_auth_error_fails_the_job_and_marks_the_authorization_unhealthy_at_once(api, drain, make_job, source):
    # GIVEN a job whose provider answers that the key was revoked
    source.errors = [ProviderError("the API key was revoked (401)", auth=True)]
    job = make_job(people(10))
    # WHEN its run is delivered
    drain.run()
    # THEN the job failed once, with no retry
    final = _job(api, job["id"])
    assert final["status"] == "failed" and final["fault_count"] == 1
    # AND the authorization is unhealthy now, the run named as the witness
    auth_id = final["authorization_id"]
    summary = api.get(f"/authorizations/{auth_id}").json["data"]
    assert summary["health"]["status"] == "unhealthy"
    assert "revoked" in summary["health"]["reason"]
    [transition] = api.get(f"/authorizations/{auth_id}/health").json["data"]
    assert transition["to"] == "unhealthy" and transition["by"] == f"run {final['last_run']['id']}"
    # AND every job row using it carries the warning
    [row] = [r for r in api.get("/jobs").json["data"] if r["id"] == job["id"]]
    assert row["warning"] and "unhealthy" in row["warning"] and "revoked" in row["warning"]
    assert api.get(f"/jobs/{job['id']}").json["data"]["warning"] == row["warning"]


def test_a_failed_job_alerts_once_and_its_recovery_once(api, tenant, drain, make_job, source):
    from tests.api.test_alerts import _take

    _take("switchyard-test-alerts")
    # GIVEN a job whose first run hits a configuration error
    source.errors = [ProviderError("bucket 'x' does not exist (NoSuchBucket)")]
    job = make_job(people(10))
    drain.run()
    assert _job(api, job["id"])["status"] == "failed"
    # WHEN it is resumed and its run succeeds
    assert api.post(f"/jobs/{job['id']}/resume").status_code == 200
    drain.run()
    assert _job(api, job["id"])["last_run"]["status"] == "succeeded"
    # THEN the alerts queue got exactly: failed, then recovered
    ours = [e for e in _take("switchyard-test-alerts") if e["detail"].get("job_id") == job["id"]]
    assert [e["detail-type"] for e in ours] == ["Job Failed", "Job Recovered"]
    assert "does not exist" in ours[0]["detail"]["reason"]
    assert ours[1]["detail"]["previous_error"] == ours[0]["detail"]["reason"]


def test_run_outcomes_are_counted_per_provider_for_cloudwatch(api, drain, make_job, source):
    from chalicelib.store.metrics import metrics

    # GIVEN nothing counted yet, and a job whose first run hits a configuration error
    metrics().flush()
    source.errors = [ProviderError("bucket 'x' does not exist (NoSuchBucket)")]
    job = make_job(people(10))
    # WHEN it fails, then is resumed and succeeds
    drain.run()
    api.post(f"/jobs/{job['id']}/resume")
    drain.run()
    # THEN one failure and one success are waiting for the Lambda's EMF flush, per provider,
    # with as many provider requests as the authorization's activity counted in DynamoDB
    pending = metrics().pending()[(("provider", "test_source"),)]
    counted, _errors = _requests(api, job["authorization_id"])
    assert counted > 0
    assert pending == {"RunFailed": 1, "RunSucceeded": 1, "ProviderRequests": counted}
    metrics().flush()


def test_transient_errors_back_off_then_succeed(api, deps, tenant, drain, make_job, source, options):
    # GIVEN a source that fails twice with throttling, then works
    source.errors = [ProviderError("429 slow down", transient=True, retry_after=120),
                     ProviderError("503", transient=True)]
    job = make_job(people(20))
    drain.run()
    # THEN the job sleeps, backing off, with the fault shown and Retry-After honoured
    state = _job(api, job["id"])
    assert state["status"] == "sleeping" and state["fault_count"] == 1
    wait = datetime.strptime(state["next_run_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) - datetime.now(UTC)
    assert wait >= timedelta(seconds=110)
    attrs = drain.sqs.get_queue_attributes(QueueUrl=drain.url,
                                           AttributeNames=["ApproximateNumberOfMessagesDelayed"])
    assert int(attrs["Attributes"]["ApproximateNumberOfMessagesDelayed"]) >= 1  # the retry, delayed
    retry = {"account_id": tenant.account_id, "job_id": job["id"], "trigger": "retry"}
    # WHEN time passes and the retries are delivered
    for _ in range(2):
        options.now = lambda: datetime.now(UTC) + timedelta(hours=1)
        Engine(deps, options).handle(Delivery(body={**retry, "not_before": None}, message_id=f"m-{_}"))
        drain.run()
    # THEN it succeeded on the third attempt, resuming the same run, and the faults reset
    final = _job(api, job["id"])
    assert final["status"] == "completed" and final["fault_count"] == 0
    [run] = _runs(api, job["id"])
    assert run["status"] == "succeeded" and run["added"] == 20
    assert [ln["code"] for ln in _logs(api, job["id"], level="warning")].count("run.transient_error") == 2


def test_failure_window_passed_fails_the_job(api, deps, tenant, drain, make_job, source, options):
    source.errors = [ProviderError("503", transient=True)] * 2
    job = make_job(people(5))
    drain.run()
    assert _job(api, job["id"])["status"] == "sleeping"
    options.now = lambda: datetime.now(UTC) + timedelta(hours=11)
    Engine(deps, options).handle(Delivery(
        body={"account_id": tenant.account_id, "job_id": job["id"], "trigger": "retry"}, message_id="late"))
    final = _job(api, job["id"])
    assert final["status"] == "failed" and final["fault_count"] == 2
    assert _logs(api, job["id"], level="error")[0]["code"] == "run.failure_window_passed"
    # AND a failed job is resumable
    assert api.post(f"/jobs/{job['id']}/resume").json["data"]["status"] == "sleeping"


def test_poison_messages_raise_for_the_dlq(deps):
    engine = Engine(deps)
    for body in (None, [], {"job_id": "x"}, {"account_id": "a", "job_id": "j", "trigger": "explode"},
                 {"account_id": "a", "job_id": "j", "trigger": "continue"}):
        with pytest.raises(PoisonMessage):
            engine.handle(Delivery(body=body, message_id="p"))


def test_never_two_steps_of_one_run_at_once(api, deps, tenant, drain, make_job, options):
    # GIVEN a run whose step 1 is leased by one delivery that is still working on it
    job = make_job(people(2500))
    drain.run(limit=1)
    run = deps.runs.get(tenant.account_id, job["id"], _runs(api, job["id"])[0]["id"])
    assert deps.runs.acquire(run, "worker-a", 300)
    # WHEN a duplicate delivery of the same step arrives
    dup = {"account_id": tenant.account_id, "job_id": job["id"], "trigger": "continue",
           "run_id": run.id, "step": run.step}
    # THEN it backs off (SQS redelivers later) and writes nothing
    with pytest.raises(StepBusy):
        Engine(deps, options).handle(Delivery(body=dup, message_id="worker-b"))
    assert deps.runs.get(tenant.account_id, job["id"], run.id).step == run.step


def test_a_new_run_holds_its_first_lease_from_its_start(api, deps, tenant, make_job, options):
    # GIVEN a job whose first delivery starts the run and dies right after it holds the lease
    job = make_job(people(10))

    def crash(point: str) -> None:
        if point == "after_lease":
            raise RuntimeError("killed")

    start = {"account_id": tenant.account_id, "job_id": job["id"], "trigger": "create"}
    sent = aws.track_requests()  # this thread's requests
    with pytest.raises(RuntimeError, match="killed"):
        Engine(deps, EngineOptions(max_records=1000, fault=crash)).handle(Delivery(body=start, message_id="m-1"))
    # the job read and the start transaction: no separate lease update
    assert sent.by_service() == {"dynamodb": 2}
    run = deps.runs.get(tenant.account_id, job["id"], _runs(api, job["id"])[0]["id"])
    assert run.step == 0
    # THEN another delivery cannot take step 0 (the run was created holding it) ...
    assert not deps.runs.acquire(run, "m-2", 300)
    # ... while the delivery that started it takes it back at once (its redelivery)
    assert deps.runs.acquire(run, "m-1", 300)


@seeded(7)
def test_crash_anywhere_never_loses_or_double_counts(api, deps, tenant, drain, make_job, options, seed):
    """Kill the step at random points (50 crashes) in a 2,000-profile import of 50 steps.

    At most 3 crashes in a row hit one message: a 5th failed receive would (rightly) send
    it to the DLQ, which is the poison-message path, not what this test is about. Each later
    reach of a point crashes with chance 0.3: some 120 crashes expected where 50 are asked,
    so every seed fires them all (at 0.2, some 84 expected, about 1 seed in 3,000 fell short).
    """
    import random

    rng = random.Random(seed)
    state = {"left": 50, "row": 0, "seen": set()}

    def fault(point: str) -> None:
        if point == "after_enqueue":
            state["row"] = 0
        # the first reach of each point always crashes (every seed covers every point)
        if state["left"] and state["row"] < 3 and (point not in state["seen"] or rng.random() < 0.3):
            state["left"] -= 1
            state["row"] += 1
            state["seen"].add(point)
            raise RuntimeError(f"crash at {point}")

    options.max_records = 40
    options.fault = fault
    job = make_job(people(2000))
    # A redelivery may be delayed (a busy step is retried later): wait for it, bounded.
    import time

    give_up = time.monotonic() + 180
    while _job(api, job["id"])["status"] != "completed" and time.monotonic() < give_up:
        if not drain.run(limit=2000):
            time.sleep(0.5)
    assert state["left"] == 0, f"not every crash fired ({replay_hint(seed)})"
    assert state["seen"] == {"after_lease", "before_write", "after_write", "after_commit",
                             "before_enqueue", "after_enqueue"}, replay_hint(seed)
    [run] = _runs(api, job["id"])
    assert run["status"] == "succeeded" and _job(api, job["id"])["status"] == "completed"
    assert run["added"] == 2000 and run["omitted"] == 0, run
    assert run["progress"]["processed"] == 2000
    assert deps.profiles.count(tenant.account_id) == 2000
    series = api.get(f"/jobs/{job['id']}/activity?granularity=day").json["data"]["series"]
    assert sum(p["added"] for p in series) == 2000


def _requests(api, auth_id, granularity="day"):
    series = api.get(f"/authorizations/{auth_id}/activity?granularity={granularity}").json["data"]["series"]
    return sum(p["api_requests"] for p in series), sum(p["errors"] for p in series)


def test_requests_of_a_step_are_counted_once_even_when_it_is_replayed(
        api, deps, tenant, drain, make_job, source, options):
    # GIVEN a 3-step import (one source request per step) whose step 1 crashes before its
    # commit (replayed: the source is read again) and whose last step crashes after its
    # commit (redelivered: nothing to do)
    crashed = set()

    def fault(point: str) -> None:
        if source.reads == 2 and point == "after_write" and "replay" not in crashed:
            crashed.add("replay")
            raise RuntimeError("crash before the commit of step 1")
        if source.reads == 4 and point == "after_commit" and "late" not in crashed:
            crashed.add("late")
            raise RuntimeError("crash after the commit of the last step")

    options.max_records = 100
    options.fault = fault
    job = make_job(people(250))
    # WHEN the run is delivered, crashes included
    for _ in range(5):
        drain.run()
    assert crashed == {"replay", "late"} and _job(api, job["id"])["status"] == "completed"
    # THEN the source was read 4 times, but the authorization shows one request per
    # committed step: 3, the hour and the day agreeing
    assert source.reads == 4
    assert _requests(api, job["authorization_id"]) == (3, 0)
    assert _requests(api, job["authorization_id"], "hour") == (3, 0)
    [run] = _runs(api, job["id"])
    assert run["cost"]["provider_calls"] == 3


def test_requests_of_a_failed_step_are_counted_with_their_error(
        api, deps, tenant, drain, make_job, source, options):
    # GIVEN a source that fails once (transient), then works
    source.errors = [ProviderError("503", transient=True)]
    job = make_job(people(20))
    drain.run()
    assert _job(api, job["id"])["status"] == "sleeping"
    # THEN the failed attempt is on the authorization's activity, as an error
    assert _requests(api, job["authorization_id"]) == (1, 1)
    # WHEN the retry is delivered now (and delivered again: a duplicate)
    retry = {"account_id": tenant.account_id, "job_id": job["id"], "trigger": "retry"}
    Engine(deps, options).handle(Delivery(body=retry, message_id="r-1"))
    drain.run()
    Engine(deps, options).handle(Delivery(body=retry, message_id="r-1"))
    # THEN one more request, no more errors
    assert _job(api, job["id"])["status"] == "completed"
    assert _requests(api, job["authorization_id"]) == (2, 1)


def test_a_schedule_fire_during_backoff_is_skipped_not_a_second_attempt(api, deps, tenant, drain, make_job, source,
                                                                         options):
    # GIVEN an every-10-minutes job whose first run hit a transient error: backing off
    source.errors = [ProviderError("503", transient=True)]
    job = make_job(people(5), schedule={"type": "interval", "every_minutes": 10})
    drain.run()
    state = _job(api, job["id"])
    assert state["status"] == "sleeping" and state["fault_count"] == 1
    reads = source.reads
    # WHEN its schedule fires before the retry is due
    fire = {"account_id": tenant.account_id, "job_id": job["id"], "trigger": "schedule"}
    Engine(deps, options).handle(Delivery(body=fire, message_id="fire-1"))
    # THEN nothing ran: the job still waits for its retry, and the log says why
    assert source.reads == reads and _job(api, job["id"])["fault_count"] == 1
    assert _logs(api, job["id"])[0]["code"] == "run.skipped_backing_off"
    # WHEN a fire comes after the retry was due (the retry itself got lost) THEN it runs
    options.now = lambda: datetime.now(UTC) + timedelta(hours=2)
    Engine(deps, options).handle(Delivery(body=fire, message_id="fire-2"))
    drain.run()
    final = _job(api, job["id"])
    assert source.reads == reads + 1 and final["fault_count"] == 0 and final["last_run"]["status"] == "succeeded"


def test_a_retry_made_stale_by_another_attempt_is_dropped(api, deps, tenant, drain, make_job, source, options):
    # GIVEN a scheduled job backing off after a transient error, its retry queued for fault 1
    source.errors = [ProviderError("503", transient=True)]
    job = make_job(people(5), schedule={"type": "interval", "every_minutes": 60})
    drain.run()
    [queued] = [m for m in _held_retries(drain) if m["job_id"] == job["id"]]
    assert queued["fault_count"] == 1
    # WHEN the user runs it now, and that run succeeds
    assert api.post(f"/jobs/{job['id']}/run").status_code == 200
    drain.run()
    assert _job(api, job["id"])["fault_count"] == 0
    runs = len(_runs(api, job["id"]))
    # AND the old retry arrives when it was due
    options.now = lambda: datetime.now(UTC) + timedelta(hours=2)
    Engine(deps, options).handle(Delivery(body={**queued, "not_before": None}, message_id="late-retry"))
    drain.run()
    # THEN it started nothing: no run nobody asked for
    assert len(_runs(api, job["id"])) == runs and source.reads == 2


def _held_retries(drain) -> list[dict]:
    """The delayed messages of the runs queue, read from moto's backend (a receive cannot
    see them before their delay is over)."""
    import json as _json

    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sqs.models import sqs_backends

    queue = sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].queues["switchyard-test-runs"]
    with queue._messages_lock:
        bodies = [_json.loads(m.body) for m in queue._messages]
    return [b for b in bodies if b.get("trigger") == "retry"]
