"""A runner killed between a job's state change (the transaction that fails it, or records
its recovery) and the PutEvents of its alert (docs/alerts.md). Before the fix the
redelivered message saw no state change and the alert was lost; now the transaction leaves
the alert pending on the job, the redelivery sends it, and a repeat (killed right after
PutEvents) carries the same `transition_id`, which the alerts worker delivers once.

The kill is a BaseException raised from a botocore hook on PutEvents, like
tests/proof/crash.py's injector (whose `Killed` it raises): nothing in the app catches it."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from chalicelib.providers.base import ProviderError
from chalicelib.runs.engine import Delivery
from chalicelib.services import alerts
from chalicelib.store.alerts import EventBus
from tests.api.test_alerts import _email_stand_in, _take
from tests.engine.sources import people
from tests.proof.crash import Killed, killed_at_put_events


def _run_until_killed(drain: Any) -> None:
    """Deliver the runs queue until the runner dies; its message stays (SQS redelivers it)."""
    while True:
        msgs = drain.sqs.receive_message(QueueUrl=drain.url, MaxNumberOfMessages=1,
                                         VisibilityTimeout=30).get("Messages", [])
        assert msgs, "the runner was never killed"
        m = msgs[0]
        try:
            drain.engine.handle(Delivery(body=json.loads(m["Body"]), message_id=m["MessageId"]))
        except Killed:
            drain.sqs.change_message_visibility(QueueUrl=drain.url, ReceiptHandle=m["ReceiptHandle"],
                                                VisibilityTimeout=0)
            return
        drain.sqs.delete_message(QueueUrl=drain.url, ReceiptHandle=m["ReceiptHandle"])


def _job_events(job_id: str) -> list[dict[str, Any]]:
    return [e for e in _take("switchyard-test-alerts") if e["detail"].get("job_id") == job_id]


def _mail(inbox: str) -> list[str]:
    sqs = boto3.client("sqs", region_name="us-east-1")
    out = []
    while msgs := sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10).get("Messages", []):
        for m in msgs:
            out.append(m["Body"])
            sqs.delete_message(QueueUrl=inbox, ReceiptHandle=m["ReceiptHandle"])
    return out


@pytest.mark.parametrize("phase", ["before", "after"])
@pytest.mark.parametrize("change", ["Job Failed", "Job Recovered"])
def test_a_runner_killed_at_the_alert_of_a_job_change_alerts_once_after_redelivery(
        api, deps, tenant, drain, make_job, source, change, phase) -> None:
    # GIVEN an account with an alert address, and a job whose first run hits a config error
    assert api.put("/alerts", {"emails": ["ops@acme.example"], "version": 0}).status_code == 200
    inbox = _email_stand_in(tenant.account_id)
    _take("switchyard-test-alerts")
    source.errors = [ProviderError("bucket 'x' does not exist (NoSuchBucket)")]
    job = make_job(people(5))
    if change == "Job Recovered":
        # ... that failed (its alert went out normally) and was resumed: this run recovers
        drain.run()
        assert api.get(f"/jobs/{job['id']}").json["data"]["status"] == "failed"
        assert [e["detail-type"] for e in _job_events(job["id"])] == ["Job Failed"]
        assert api.post(f"/jobs/{job['id']}/resume").status_code == 200
    # WHEN the runner dies right before (or right after) the PutEvents of the change's alert
    with killed_at_put_events(phase) as fired:
        _run_until_killed(drain)
    assert fired
    state = api.get(f"/jobs/{job['id']}").json["data"]
    assert state["last_run"]["status"] == ("failed" if change == "Job Failed" else "succeeded")
    # AND SQS redelivers its message (and the job runs on: nothing more to alert)
    drain.run()
    assert drain.errors == []
    # THEN the alert reached the queue once (twice with one transition id when the dead
    # runner's PutEvents had gone through) ...
    events = _job_events(job["id"])
    assert {e["detail-type"] for e in events} == {change}, events
    assert len(events) == (1 if phase == "before" else 2)
    ids = {e["detail"]["transition_id"] for e in events}
    assert len(ids) == 1 and all(ids)
    assert events[0]["detail"]["run_id"] == state["last_run"]["id"]
    # ... and the subscriber got exactly one e-mail
    assert sum(alerts.deliver(deps, e)["emails"] for e in events) == 1
    mail = _mail(inbox)
    assert len(mail) == 1 and change in mail[0]
    # AND nothing is left pending on the job
    assert deps.jobs.get(tenant.account_id, job["id"], consistent=True).pending_alert is None


def test_an_alert_eventbridge_refused_is_sent_when_sqs_brings_the_message_back(
        api, tenant, drain, make_job, source, monkeypatch) -> None:
    # GIVEN EventBridge refusing the first alert event (emit logs it; the failure commits)
    _take("switchyard-test-alerts")
    real = EventBus.publish
    refused: list[str] = []

    def refuse_once(self: Any, account_id: str, detail_type: str, detail: dict[str, Any]) -> None:
        if not refused:
            refused.append(detail_type)
            raise RuntimeError("EventBridge refused the event: ThrottlingException")
        real(self, account_id, detail_type, detail)

    monkeypatch.setattr(EventBus, "publish", refuse_once)
    source.errors = [ProviderError("bucket 'x' does not exist (NoSuchBucket)")]
    job = make_job(people(5))
    # WHEN the runner delivers (the refusal fails the delivery, SQS brings it back)
    drain.run()
    # THEN the job failed once, and its alert went out on the redelivery, once
    assert refused == ["Job Failed"]
    assert [type(e).__name__ for e in drain.errors] == ["AlertNotSent"]
    assert api.get(f"/jobs/{job['id']}").json["data"]["status"] == "failed"
    events = _job_events(job["id"])
    assert [e["detail-type"] for e in events] == ["Job Failed"] and events[0]["detail"]["transition_id"]


def test_the_alerts_worker_delivers_one_transition_once(api, deps, tenant) -> None:
    # GIVEN an account with an alert address
    assert api.put("/alerts", {"emails": ["ops@acme.example"], "version": 0}).status_code == 200
    inbox = _email_stand_in(tenant.account_id)
    event = {"id": "e1", "detail-type": "Authorization Unhealthy", "time": "2026-01-01T00:00:00Z",
             "detail": {"account_id": tenant.account_id, "authorization_id": "auth_x", "label": "k",
                        "reason": "revoked", "transition_id": "2026-01-01T00:00:00.000001Z#abc123"}}
    # WHEN the same transition's event arrives twice (a repeat from an at-least-once sender)
    first = alerts.deliver(deps, event)
    second = alerts.deliver(deps, {**event, "id": "e2"})
    # THEN it is delivered once; another transition, or an event without one, is not held back
    assert (first["emails"], second["emails"]) == (1, 0)
    other = {**event, "detail": {**event["detail"], "transition_id": "2026-01-01T00:00:01.000001Z#def456"}}
    assert alerts.deliver(deps, other)["emails"] == 1
    assert alerts.deliver(deps, {"id": "t", "detail-type": "Test Alert",
                                 "detail": {"account_id": tenant.account_id, "message": "hi"}})["emails"] == 1
    assert len(_mail(inbox)) == 3


def test_a_delivery_claimed_by_a_worker_that_died_is_sent_after_its_lease(deps, tenant) -> None:
    from chalicelib.store.alerts import DELIVERY_LEASE_SECONDS, AlertDeliveries

    repo = AlertDeliveries(deps.table)
    # GIVEN a worker that claimed a transition's delivery and died before sending it
    assert repo.claim(tenant.account_id, "Job Failed", "t1", now=1_000_000)
    # THEN a repeat within the lease is dropped, one after it takes over; once sent, never again
    assert not repo.claim(tenant.account_id, "Job Failed", "t1", now=1_000_000 + DELIVERY_LEASE_SECONDS - 1)
    assert repo.claim(tenant.account_id, "Job Failed", "t1", now=1_000_000 + DELIVERY_LEASE_SECONDS + 1)
    repo.sent(tenant.account_id, "Job Failed", "t1", now=1_000_000 + DELIVERY_LEASE_SECONDS + 2)
    assert not repo.claim(tenant.account_id, "Job Failed", "t1", now=1_000_000 + 10 * DELIVERY_LEASE_SECONDS)
