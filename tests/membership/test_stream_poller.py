"""The local stand-in for Lambda's DynamoDB event source mapping (devserver/streams.py)."""

from __future__ import annotations

import threading
from typing import Any

from chalicelib.domain.audiences import Audience
from chalicelib.store.dynamo import now_iso
from devserver.streams import first_failure, stream_record
from tests.membership.conftest import Stack, upsert


def test_lambda_retries_from_the_first_failed_record() -> None:
    seqs = ["100", "200", "300"]
    assert first_failure({"batchItemFailures": []}, seqs) is None
    assert first_failure(None, seqs) is None  # a handler that answers nothing succeeded
    assert first_failure({"batchItemFailures": [{"itemIdentifier": "300"}, {"itemIdentifier": "200"}]}, seqs) == 1
    # an answer naming no record of the batch fails it whole, as Lambda does
    assert first_failure({"batchItemFailures": [{"itemIdentifier": "999"}]}, seqs) == 0
    assert first_failure({"batchItemFailures": "x"}, seqs) == 0


def test_a_record_has_lambdas_shape_binary_as_base64() -> None:
    raw = {"eventID": "e1", "eventName": "MODIFY", "dynamodb": {
        "Keys": {"PK": {"S": "a"}}, "NewImage": {"b": {"B": b"\x00\x01"}}, "SequenceNumber": "100"}}
    rec = stream_record(raw, "arn:stream", "eu-west-1")
    assert rec["eventSource"] == "aws:dynamodb" and rec["eventSourceARN"] == "arn:stream"
    assert rec["dynamodb"]["NewImage"] == {"b": {"B": "AAE="}}


def test_the_stage_profiles_table_has_the_stream_the_event_loop_reads(aws_endpoint: str) -> None:
    from app import app
    from chalicelib.config import settings
    from chalicelib.store import aws
    from devserver.events import EventLoop

    # GIVEN the stack deployed from infra/template.json
    desc = aws.client("dynamodb").describe_table(TableName=settings().profiles_table_name)["Table"]
    assert desc["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    # THEN the event loop maps the profile_changes handler to it
    poller = EventLoop(app, threading.Event()).stream_poller()
    assert [(s.handler, s.table, s.partial) for s in poller.sources] == [
        ("profile_changes", settings().profiles_table_name, True)]


def test_the_polling_thread_delivers_a_change(stack: Stack) -> None:
    from chalicelib.services import audience_members as S

    d = stack.deps
    now = now_iso()
    a = Audience(id="aud_live", account_id="acct_l", name="All", description="", filter={"all": []},
                 owner="usr", created_at=now, updated_at=now)
    d.audiences.create(a)
    entered = threading.Event()
    real = S.ChangeBatch.apply

    def apply(self: Any, raw: Any) -> int:
        n = real(self, raw)
        if n:
            entered.set()
        return n

    S.ChangeBatch.apply = apply  # type: ignore[method-assign]
    thread = threading.Thread(target=stack.poller.run, daemon=True)
    thread.start()
    try:
        pid = upsert(d, "acct_l", "live@example.com")
        assert entered.wait(30), "the poller never delivered the change"
        assert list(d.audience_members.members("acct_l", "aud_live")) == [pid]
    finally:
        stack.stop.set()
        thread.join(10)
        S.ChangeBatch.apply = real  # type: ignore[method-assign]
