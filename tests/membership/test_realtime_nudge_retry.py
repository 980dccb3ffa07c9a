"""A nudge that is lost does not strand recorded changes: the stream handler reports the
records whose nudge the real-time queue refused, so the stream retries them (nothing is
recorded twice, the retry nudges again); a delivery that fails transiently is retried by
SQS; a backfill's last page nudges what earlier pages recorded.

States are held by driving the stream poller and the real-time queue from the test; the
failures are injected into the queue's send, never timed.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.membership.conftest import upsert
from tests.membership.test_realtime_exports import World, world  # noqa: F401  (fixture)
from tests.membership.test_stream_membership import log_of
from tests.providers.test_webhook import private_urls  # noqa: F401  (autouse: receivers on 127.0.0.1)


def refuse_sends(monkeypatch: pytest.MonkeyPatch, d: Any, times: int) -> list[int]:
    """The real-time queue refuses the next `times` nudge batches; returns the attempts made."""
    real = d.realtime_queue.send_batch
    attempts: list[int] = []

    def flaky(messages: list[dict[str, Any]]) -> None:
        attempts.append(len(messages))
        if len(attempts) <= times:
            raise RuntimeError("SQS: ServiceUnavailable")
        real(messages)

    monkeypatch.setattr(d.realtime_queue, "send_batch", flaky)
    return attempts


def test_a_refused_nudge_is_sent_again_by_the_stream_retry(world: World, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    aud, job, d = world.live()
    attempts = refuse_sends(monkeypatch, d, times=1)
    # WHEN bob enters and the nudge of his change is refused once
    bob = upsert(d, world.account_id, "bob@example.com", plan="pro")
    world.stack.deliver()
    # THEN the stream retried the record: one change recorded, a second nudge sent
    assert attempts == [1, 1]
    assert log_of(d, aud) == [("enter", bob)]
    # AND pumping the queue delivers it, once
    assert world.pump() == {job["id"]: 1}
    assert world.sent() == [("audience.entered", bob)]
    assert world.api.get(f"/jobs/{job['id']}").json["data"]["lag_seconds"] == 0


def test_without_the_retry_a_refused_nudge_would_strand_the_change(world: World,  # noqa: F811
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The control of the test above: the same refusal, with the handler no longer reporting
    the records whose nudge was refused, leaves the change recorded and undelivered."""
    from chalicelib.services.audience_members import ChangeBatch

    aud, job, d = world.live()
    refuse_sends(monkeypatch, d, times=1)
    real = ChangeBatch.nudge
    monkeypatch.setattr(ChangeBatch, "nudge", lambda self: real(self) and [])
    carol = upsert(d, world.account_id, "carol@example.com", plan="pro")
    world.stack.deliver()
    assert log_of(d, aud) == [("enter", carol)]
    assert world.pump() == {}
    assert world.sent() == []
    lag = world.api.get(f"/jobs/{job['id']}").json["data"]["lag_seconds"]
    assert lag is not None and lag >= 0 and d.realtime.get(world.account_id, aud.id, job["id"]).cursor == 0


def test_a_delivery_that_fails_transiently_raises_so_sqs_delivers_it_again(world: World,  # noqa: F811
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from app import app
    from chalicelib.store.audience_members import AudienceMemberRepo

    aud, job, d = world.live()
    dan = upsert(d, world.account_id, "dan@example.com", plan="pro")
    world.stack.deliver()
    real = AudienceMemberRepo.changes
    calls: list[int] = []

    def throttled(self: Any, *a: Any, **k: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("DynamoDB: ProvisionedThroughputExceededException")
        return real(self, *a, **k)

    monkeypatch.setattr(AudienceMemberRepo, "changes", throttled)
    # WHEN the worker's first delivery of the nudge fails reading the log
    handler = app.handler_map["deliver_realtime"]
    with pytest.raises(RuntimeError):
        world_pump_once(world, handler)
    # THEN nothing was sent, the lease is free, and the message is still on the queue
    assert world.sent() == [] and d.realtime.get(world.account_id, aud.id, job["id"]).lease is None
    # AND its redelivery sends dan's enter, once
    world_pump_once(world, handler)
    assert world.sent() == [("audience.entered", dan)]
    assert world_pump_once(world, handler) == 0


def world_pump_once(world: World, handler: Any) -> int:  # noqa: F811
    """Receive this account's nudges and hand each to the worker; a message is deleted once
    the handler returned (as the event source mapping does), else made visible again."""
    import json

    from chalicelib.store import aws
    from chalicelib.store.queues import queue_url
    from devserver.events import sqs_record

    sqs = aws.client("sqs")
    url = queue_url("switchyard-realtime")
    handled = 0
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=30).get("Messages", [])
        if not got:
            return handled
        m = got[0]
        if json.loads(m["Body"]).get("account_id") == world.account_id:
            event = {"Records": [sqs_record(m, "arn:aws:sqs:us-east-1:123456789012:switchyard-realtime",
                                            "us-east-1")]}
            try:
                handler(event, None)
            except Exception:
                sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
                raise
            handled += 1
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def test_a_backfill_page_whose_nudge_is_refused_is_retried_and_the_last_page_nudges(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from chalicelib.services import audience_members as S
    from tests.membership.test_stream_membership import audience

    d = world.d
    # GIVEN profiles written before the audience existed (their stream records not delivered)
    people = sorted(upsert(d, world.account_id, f"b{i}@example.com", plan="pro") for i in range(5))
    aud = audience(d, world.account_id)
    job = world.job(aud.id)
    world.pump()
    attempts = refuse_sends(monkeypatch, d, times=1)
    # WHEN its backfill runs page by page and the first nudge is refused
    page, outcomes = 0, []
    while True:
        try:
            outcome = S.backfill_page(d, S.backfill_message(world.account_id, aud.id, aud.version, page))
        except RuntimeError:
            outcomes.append("refused")
            continue  # SQS brings the page back
        outcomes.append(outcome)
        if outcome == "done":
            break
        page += 1
    # THEN the refused page was retried, and the nudges after it reached the job
    assert outcomes.count("refused") == 1 and len(attempts) >= 2
    world.pump()
    assert sorted(p for _, p in world.sent()) == people
    assert world.api.get(f"/jobs/{job['id']}").json["data"]["lag_seconds"] == 0
