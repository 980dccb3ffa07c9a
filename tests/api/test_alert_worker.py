"""The alerts queue's Lambda reports partial batch failures: one alert that cannot be
delivered is redelivered alone, and the others of its batch are done (SQS deletes them)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from chalicelib.store import keys as K
from devserver.events import batch_failures


def _record(body: str) -> dict[str, Any]:
    return {"messageId": f"m-{uuid.uuid4().hex}", "receiptHandle": "r", "body": body,
            "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1764918000000",
                           "SenderId": "s", "ApproximateFirstReceiveTimestamp": "1764918000000"},
            "messageAttributes": {}, "md5OfBody": "x", "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:switchyard-alerts", "awsRegion": "us-east-1"}


def _alert(account_id: str, transition_id: str) -> str:
    """What the alerts rule puts on the queue: the EventBridge event as is."""
    return json.dumps({"version": "0", "id": f"e-{transition_id}", "detail-type": "Job Failed",
                       "source": "switchyard", "account": "123456789012", "time": "2026-12-05T07:00:00Z",
                       "region": "us-east-1", "resources": [],
                       "detail": {"account_id": account_id, "job_id": "job_1", "transition_id": transition_id}})


def _delivery(deps: Any, account_id: str, transition_id: str) -> str | None:
    row = deps.table.get(f"{K.account_pk(account_id)}#ALERTSENT", f"Job Failed#{transition_id}", consistent=True)
    return row.get("delivery") if row else None


def test_one_failed_delivery_is_reported_alone_and_the_others_are_done(client, deps, monkeypatch) -> None:
    # GIVEN a batch of three alerts, and the settings of the second one's account unreadable
    ok1, bad, ok2 = (f"acct_{uuid.uuid4().hex[:10]}" for _ in range(3))
    tids = {a: uuid.uuid4().hex for a in (ok1, bad, ok2)}
    real_get = deps.alert_settings.get

    def get(account_id: str) -> Any:
        if account_id == bad:
            raise RuntimeError("settings unreadable")
        return real_get(account_id)

    monkeypatch.setattr(deps.alert_settings, "get", get)
    records = [_record(_alert(a, tids[a])) for a in (ok1, bad, ok2)]
    # WHEN the Lambda handles the batch
    answer = client.lambda_.invoke("deliver_alerts", {"Records": records}).payload
    # THEN only the second record is reported failed, which the event loop (like Lambda)
    # leaves on the queue while it deletes the others
    assert answer == {"batchItemFailures": [{"itemIdentifier": records[1]["messageId"]}]}
    assert batch_failures(answer, [r["messageId"] for r in records]) == {records[1]["messageId"]}
    # AND the others were delivered (marked sent), the failed one is still being sent
    assert [_delivery(deps, a, tids[a]) for a in (ok1, bad, ok2)] == ["sent", "sending", "sent"]


def test_messages_that_are_not_alert_events_are_dropped_not_retried(client, deps) -> None:
    # GIVEN a batch holding a non-JSON body, JSON that is no EventBridge event, and one alert
    account = f"acct_{uuid.uuid4().hex[:10]}"
    tid = uuid.uuid4().hex
    records = [_record("not json"), _record(json.dumps({"detail-type": "Job Failed"})), _record(_alert(account, tid))]
    # WHEN the Lambda handles it
    answer = client.lambda_.invoke("deliver_alerts", {"Records": records}).payload
    # THEN nothing is reported failed (the malformed two are dropped), and the alert went out
    assert answer == {"batchItemFailures": []}
    assert _delivery(deps, account, tid) == "sent"


def test_an_event_without_its_account_field_is_delivered(client, deps) -> None:
    # GIVEN an alert event as the local EventBridge (moto) delivers it: no `account` field
    account = f"acct_{uuid.uuid4().hex[:10]}"
    tid = uuid.uuid4().hex
    event = json.loads(_alert(account, tid))
    del event["account"]
    # WHEN the Lambda handles it, THEN it is delivered, not dropped
    answer = client.lambda_.invoke("deliver_alerts", {"Records": [_record(json.dumps(event))]}).payload
    assert answer == {"batchItemFailures": []}
    assert _delivery(deps, account, tid) == "sent"


def test_a_batch_whose_every_delivery_failed_fails_whole(client, deps, monkeypatch) -> None:
    # GIVEN settings that cannot be read for anyone
    def get(account_id: str) -> Any:
        raise RuntimeError("settings unreadable")

    monkeypatch.setattr(deps.alert_settings, "get", get)
    account = f"acct_{uuid.uuid4().hex[:10]}"
    records = [_record(_alert(account, uuid.uuid4().hex)) for _ in range(2)]
    # WHEN the Lambda handles the batch, THEN it raises: SQS redelivers the batch whole
    with pytest.raises(Exception, match="All records failed"):
        client.lambda_.invoke("deliver_alerts", {"Records": records})
