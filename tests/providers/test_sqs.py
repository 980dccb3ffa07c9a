"""The Amazon SQS provider against moto, in-process (tests/providers/conftest.py).

moto stores what SendMessageBatch sends, checks FIFO attributes and deduplicates FIFO
messages by MessageDeduplicationId. Per-entry failures it never produces are injected
(tests/providers/aws_faults.py: the refused entries are taken out of the request, so moto
never stores them, and reported under `Failed` as AWS does)."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from pydantic import ValidationError

from chalicelib.domain.catalog import JobType
from chalicelib.domain.ids import new_id
from chalicelib.domain.models import HealthStatus
from chalicelib.providers.base import ProviderError
from chalicelib.providers.calls import CallCounter
from chalicelib.providers.event_batches import Retry
from chalicelib.providers.events import event_id
from chalicelib.providers.roles import StepContext
from chalicelib.providers.sqs import (
    PROVIDER,
    SPEC,
    AccessKeys,
    AssumeRole,
    SqsAudienceExport,
    SqsExportConfig,
    body,
    queue_region,
)
from tests.providers.aws_faults import answer_error, refuse_sqs_entries, time_out
from tests.seeds import seeded

KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
MOTO_ACCOUNT = "123456789012"


def keys(**kw: Any) -> AccessKeys:
    return AccessKeys(access_key_id=KEY_ID, secret_access_key=SECRET, **kw)


@pytest.fixture
def sqs(aws: None) -> Any:
    return boto3.client("sqs", region_name="us-east-1")


@pytest.fixture
def make_queue(sqs: Any) -> Iterator[Callable[..., str]]:
    made: list[str] = []

    def make(fifo: bool = False, prefix: str = "sy-test") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}" + (".fifo" if fifo else "")
        attrs = {"FifoQueue": "true"} if fifo else {}
        url = sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
        made.append(url)
        return str(url)

    yield make
    for url in made:
        sqs.delete_queue(QueueUrl=url)


def ctx(*, counter: CallCounter | None = None, run_id: str | None = None) -> StepContext:
    return StepContext(account_id="acct_1", job_id="job_1", run_id=run_id or new_id("run"), step=1,
                       method="access_keys", credentials=keys(), config={}, cursor=None, state={},
                       max_records=5000, deadline=time.monotonic() + 60, counter=counter)


def rows(n: int, *, start: int = 0, pad: int = 0) -> list[tuple[str, str, list[Any]]]:
    return [("add", f"prof_{i:06d}", [f"p{i}@example.com", "x" * pad]) for i in range(start, start + n)]


def drain_queue(sqs: Any, url: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"],
                                  VisibilityTimeout=60).get("Messages", [])
        if not got:
            return out
        out += got


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def exporter(sleeps: Sleeps | None = None, attempts: int = 5, seed: int = 3) -> SqsAudienceExport:
    return SqsAudienceExport(Retry(attempts=attempts, sleep=sleeps or Sleeps(), rng=random.Random(seed)))


def freeze(url: str, **extra: Any) -> dict[str, Any]:
    return exporter().freeze({"audience_id": "aud_1", "queue_url": url, **extra})


# --- spec and config ---------------------------------------------------------------------------


def test_spec_offers_an_export_with_both_aws_methods() -> None:
    assert SPEC.id == "amazon_sqs" and SPEC.job_types == [JobType.EXPORT]
    assert [(m.id, m.credentials_model) for m in SPEC.auth_methods] == [
        ("access_keys", AccessKeys), ("assume_role", AssumeRole)]
    [wf] = SPEC.workflows
    assert wf.id == "sqs_audience_export" and wf.resource_fields == ("queue_url",)
    assert set(wf.auth_methods) == {"access_keys", "assume_role"}


@pytest.mark.parametrize(("field", "value"), [
    ("queue_url", "sqs.us-east-1.amazonaws.com/123456789012/q"),
    ("queue_url", "https://sqs.us-east-1.amazonaws.com/123/q"),
    ("queue_url", "https://sqs.us-east-1.amazonaws.com/123456789012/has space"),
    ("message_group", "has space"),
    ("message_group", "x" * 129),
])
def test_config_refuses_what_sqs_would_refuse_naming_the_field(field: str, value: str) -> None:
    good = {"audience_id": "aud_1", "queue_url": "https://sqs.us-east-1.amazonaws.com/123456789012/q"}
    with pytest.raises(ValidationError) as caught:
        SqsExportConfig(**{**good, field: value})
    assert {e["loc"][0] for e in caught.value.errors()} == {field}


@pytest.mark.parametrize(("url", "region"), [
    ("https://sqs.eu-west-1.amazonaws.com/123456789012/q", "eu-west-1"),
    ("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q", "cn-north-1"),
    ("https://ap-southeast-2.queue.amazonaws.com/123456789012/q", "ap-southeast-2"),
    ("https://queue.amazonaws.com/123456789012/q", "us-east-1"),
    ("http://127.0.0.1:5000/123456789012/q", "us-west-2"),
])
def test_the_client_calls_the_queues_region(url: str, region: str) -> None:
    assert queue_region(url, "us-west-2") == region


def test_a_body_sqs_would_refuse_is_sent_as_ascii_json() -> None:
    # GIVEN an event holding a character SQS refuses (U+FFFF) and one it accepts
    event = {"fields": {"name": "Zoë\uffff"}}
    # THEN the body escapes only when it must, and is the same JSON either way
    assert body({"fields": {"name": "Zoë"}}) == '{"fields":{"name":"Zoë"}}'
    assert body(event) == '{"fields":{"name":"Zo\\u00eb\\uffff"}}' and json.loads(body(event)) == event


# --- check and options ---------------------------------------------------------------------------


def test_check_reaches_the_queue_by_its_arn(make_queue: Callable[..., str]) -> None:
    url = make_queue()
    counter = CallCounter()
    result = PROVIDER.check("access_keys", keys(queue_url=url), {}, counter)
    assert result.status is HealthStatus.HEALTHY and result.provider_account == MOTO_ACCOUNT
    assert result.resources == {"queue_url": url}
    assert f"arn:aws:sqs:us-east-1:{MOTO_ACCOUNT}:" in (result.reason or "")
    assert counter.counts == {"sts.GetCallerIdentity": 1, "sqs.GetQueueAttributes": 1}


def test_check_of_a_missing_queue_is_unhealthy_in_aws_words(aws: None) -> None:
    url = f"https://sqs.us-east-1.amazonaws.com/{MOTO_ACCOUNT}/sy-missing"
    result = PROVIDER.check("access_keys", keys(), {"queue_url": url})
    assert result.status is HealthStatus.UNHEALTHY and result.provider_account == MOTO_ACCOUNT
    assert (result.reason or "").startswith("queue 'sy-missing' does not exist (")
    assert "specified queue does not exist" in (result.reason or "")


def test_check_throttled_is_transient(make_queue: Callable[..., str]) -> None:
    url = make_queue()
    answer_error("sqs", "GetQueueAttributes", "RequestThrottled", 403)
    with pytest.raises(ProviderError) as caught:
        PROVIDER.check("access_keys", keys(), {"queue_url": url})
    assert caught.value.transient is True


def test_queue_options_list_urls_with_their_kind(make_queue: Callable[..., str]) -> None:
    prefix = f"sy-opt-{uuid.uuid4().hex[:6]}"
    std, fifo = make_queue(prefix=prefix), make_queue(fifo=True, prefix=prefix)
    make_queue()
    options = PROVIDER.options("access_keys", keys(), "sqs_audience_export", "queue_url", {"prefix": prefix})
    assert sorted((o.value, o.kind) for o in options) == sorted([(std, "standard"), (fifo, "fifo")])
    assert {o.label for o in options} == {std.rsplit("/", 1)[1], fifo.rsplit("/", 1)[1]}


# --- export --------------------------------------------------------------------------------------


def test_25_events_go_in_3_batches(sqs: Any, make_queue: Callable[..., str]) -> None:
    # GIVEN a standard queue and a part of 25 changes
    url = make_queue()
    counter = CallCounter()
    context = ctx(counter=counter)
    # WHEN the part is written
    part = exporter().write_part(context, freeze(url), 1, rows(25))
    # THEN 3 SendMessageBatch calls (10 + 10 + 5) put one message per event
    assert counter.counts == {"sqs.SendMessageBatch": 3} and part.requests == 3 and part.rows == 25
    msgs = drain_queue(sqs, url)
    events = [json.loads(m["Body"]) for m in msgs]
    assert sorted(e["event_id"] for e in events) == sorted(event_id(context.run_id, 1, i) for i in range(25))
    assert {e["type"] for e in events} == {"audience.entered"} and {e["audience_id"] for e in events} == {"aud_1"}
    assert "MessageGroupId" not in msgs[0]["Attributes"]  # a standard queue: no group


def test_batches_stay_under_256_kib_and_a_bigger_event_is_skipped(sqs: Any, make_queue: Callable[..., str]) -> None:
    # GIVEN 10 events of ~30 KB (300 KB: over one batch's 256 KiB) and one of ~300 KB
    url = make_queue()
    counter = CallCounter()
    part = exporter().write_part(ctx(counter=counter), freeze(url, fields=["email", "bio"]), 1,
                                 [*rows(5, pad=30_000), ("add", "prof_big", ["b@x.io", "y" * 300_000]),
                                  *rows(5, start=5, pad=30_000)])
    # THEN 2 batches carried the 10, the big one was reported and not sent
    assert counter.counts == {"sqs.SendMessageBatch": 2} and part.skipped == (5,)
    assert len(drain_queue(sqs, url)) == 10


def test_fifo_messages_carry_group_and_deduplication_ids(sqs: Any, make_queue: Callable[..., str]) -> None:
    # GIVEN a FIFO queue, one export grouping by profile and one by a constant
    url, other = make_queue(fifo=True), make_queue(fifo=True)
    context = ctx()
    exporter().write_part(context, freeze(url), 1, rows(12))
    exporter().write_part(context, freeze(other, message_group="audience-pro"), 1, rows(3))
    # THEN each message's group is its profile (or the constant) and its deduplication id its event id
    msgs = drain_queue(sqs, url)
    assert len(msgs) == 12
    for m in msgs:
        event = json.loads(m["Body"])
        assert m["Attributes"]["MessageGroupId"] == event["profile_id"]
        assert m["Attributes"]["MessageDeduplicationId"] == event["event_id"]
    assert {m["Attributes"]["MessageGroupId"] for m in drain_queue(sqs, other)} == {"audience-pro"}


def test_a_replayed_part_is_deduplicated_by_a_fifo_queue(sqs: Any, make_queue: Callable[..., str]) -> None:
    # GIVEN a part written to a FIFO queue, then again by a redelivered step
    url = make_queue(fifo=True)
    context = ctx()
    exporter().write_part(context, freeze(url), 2, rows(15))
    exporter().write_part(context, freeze(url), 2, rows(15))
    # THEN the queue holds each event once (same deduplication ids within 5 minutes)
    assert len(drain_queue(sqs, url)) == 15


@seeded(3)
def test_failed_entries_are_retried_alone(sqs: Any, make_queue: Callable[..., str], seed: int) -> None:
    # GIVEN SQS failing 2 entries of the first batch, then 1 of them again
    url = make_queue()
    seen = refuse_sqs_entries(lambda n, entries: {0: {3, 7}, 1: {0}}.get(n, set()))
    sleeps = Sleeps()
    counter = CallCounter()
    # WHEN 15 events are written
    exporter(sleeps, seed=seed).write_part(ctx(counter=counter), freeze(url), 1, rows(15))  # seed: the jitter's
    # THEN only the failed entries were re-sent, after jittered waits, and every event is there once
    assert seen.sent == [[f"e{i}" for i in range(10)], ["e3", "e7"], ["e3"], [f"e{i}" for i in range(10, 15)]]
    assert counter.counts == {"sqs.SendMessageBatch": 4} and len(sleeps.waits) == 2
    bodies = [json.loads(m["Body"])["profile_id"] for m in drain_queue(sqs, url)]
    assert sorted(bodies) == [f"prof_{i:06d}" for i in range(15)]


def test_entries_failing_every_time_fail_the_step_as_transient(make_queue: Callable[..., str]) -> None:
    url = make_queue()
    seen = refuse_sqs_entries(lambda n, entries: {0})
    with pytest.raises(ProviderError) as caught:
        exporter(attempts=3).write_part(ctx(), freeze(url), 1, rows(4))
    assert caught.value.transient is True and "InternalError" in caught.value.reason and len(seen.sent) == 3


def test_a_sender_fault_is_a_configuration_error(make_queue: Callable[..., str]) -> None:
    # GIVEN SQS refusing an entry as the sender's fault (e.g. KMS access for an encrypted queue)
    url = make_queue()
    refuse_sqs_entries(lambda n, entries: {1} if n == 0 else set(), code="KmsAccessDenied", sender_fault=True)
    # WHEN a part is written THEN the step fails at once, naming the code: no retry fixes it
    with pytest.raises(ProviderError) as caught:
        exporter().write_part(ctx(), freeze(url), 1, rows(4))
    assert caught.value.transient is False and caught.value.field == "queue_url"
    assert "KmsAccessDenied" in caught.value.reason


def test_a_missing_queue_is_a_config_error_on_its_field(aws: None) -> None:
    url = f"https://sqs.us-east-1.amazonaws.com/{MOTO_ACCOUNT}/sy-gone"
    with pytest.raises(ProviderError) as caught:
        exporter().write_part(ctx(), freeze(url), 1, rows(2))
    assert caught.value.transient is False and caught.value.field == "queue_url"


def test_a_batch_that_times_out_fails_the_step_as_transient(make_queue: Callable[..., str]) -> None:
    # GIVEN SendMessageBatch timing out
    url = make_queue()
    hits = time_out("sqs", "SendMessageBatch")
    # WHEN a part is written THEN the step fails as transient (the engine retries the part later)
    with pytest.raises(ProviderError) as caught:
        exporter().write_part(ctx(), freeze(url), 1, rows(5))
    assert caught.value.transient is True and caught.value.auth is False and hits == [1]
    assert "did not answer in time" in caught.value.reason
