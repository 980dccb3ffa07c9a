"""The IAM policy examples customers copy (docs/providers/iam/) allow what the providers
call, and nothing the docs would have to explain away.

Kinesis runs against moto with IAM enforced: a user holding the example policy's actions
checks, lists, exports and imports, and cannot do what the policy leaves out. moto
authorizes every Kinesis call against resource "*" (it never derives the stream's ARN), so
the example's stream ARN is first compared with the ARN Kinesis gives the test stream,
then widened to "*" for moto: the test proves the actions and the ARN's shape. SQS is checked by
name: moto authorizes SendMessageBatch as `sqs:SendMessageBatch`, while AWS authorizes it
with `sqs:SendMessage` (no action of its own), so the operations the provider sends are
counted and mapped to AWS's actions instead."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.core import enable_iam_authentication

from chalicelib.domain.ids import new_id
from chalicelib.domain.models import HealthStatus
from chalicelib.providers.base import ProviderError
from chalicelib.providers.calls import CallCounter
from chalicelib.providers.registry import Registry
from chalicelib.providers.roles import StepContext

IAM_DIR = Path(__file__).resolve().parents[2] / "docs" / "providers" / "iam"
MOTO_ACCOUNT = "123456789012"


def policy(name: str) -> dict[str, Any]:
    return dict(json.loads((IAM_DIR / name).read_text()))


def actions(doc: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for st in doc["Statement"]:
        out |= {st["Action"]} if isinstance(st["Action"], str) else set(st["Action"])
    return out


def test_every_example_is_a_policy_document() -> None:
    files = sorted(IAM_DIR.glob("*.json"))
    assert len(files) >= 5
    for path in files:
        doc = json.loads(path.read_text())
        assert doc["Version"] == "2012-10-17", path.name
        for st in doc["Statement"]:
            assert st["Effect"] == "Allow" and st["Action"] and st.get("Sid"), path.name
            assert ("Resource" in st) != ("Principal" in st), path.name
    trust = policy("assume-role-trust-policy.json")["Statement"][0]
    assert trust["Action"] == "sts:AssumeRole" and "sts:ExternalId" in trust["Condition"]["StringEquals"]


@pytest.fixture
def user_with(aws: None) -> Iterator[Any]:
    """An IAM user holding one example policy, its stream ARN rewritten to moto's."""
    iam = boto3.client("iam", region_name="us-east-1")
    made: list[tuple[str, str]] = []

    def make(name: str, stream: str) -> Any:
        from chalicelib.providers.kinesis import AccessKeys

        text = (IAM_DIR / name).read_text().replace("eu-west-1:111122223333", f"us-east-1:{MOTO_ACCOUNT}")
        text = text.replace("stream/cdp-audience-events", f"stream/{stream}")
        text = text.replace("stream/cdp-profile-updates", f"stream/{stream}")
        doc = json.loads(text)
        arn = boto3.client("kinesis", region_name="us-east-1").describe_stream_summary(
            StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
        for st in doc["Statement"]:
            if st["Resource"] != "*":
                assert st["Resource"] == arn  # the example names streams as Kinesis does
                st["Resource"] = "*"
        text = json.dumps(doc)
        user = f"sy-iam-{uuid.uuid4().hex[:8]}"
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="example", PolicyDocument=text)
        key = iam.create_access_key(UserName=user)["AccessKey"]
        made.append((user, key["AccessKeyId"]))
        return AccessKeys(access_key_id=key["AccessKeyId"], secret_access_key=key["SecretAccessKey"],
                          stream_name=stream)

    yield make
    for user, key_id in made:
        iam.delete_access_key(UserName=user, AccessKeyId=key_id)
        iam.delete_user_policy(UserName=user, PolicyName="example")
        iam.delete_user(UserName=user)


@pytest.fixture
def stream(aws: None) -> Iterator[str]:
    kinesis = boto3.client("kinesis", region_name="us-east-1")
    name = f"sy-iam-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=name, ShardCount=1)
    kinesis.put_record(StreamName=name, Data=b'{"email": "a@x.io"}', PartitionKey="a")
    yield name
    kinesis.delete_stream(StreamName=name)


def _ctx(creds: Any, config: dict[str, Any], counter: CallCounter) -> StepContext:
    return StepContext(account_id="acct_1", job_id="job_1", run_id=new_id("run"), step=1, method="access_keys",
                       credentials=creds, config=config, cursor=None, state={}, max_records=100,
                       deadline=time.monotonic() + 60, counter=counter)


def test_the_kinesis_export_example_is_enough_to_export(user_with: Any, stream: str) -> None:
    from chalicelib.providers.kinesis import PROVIDER

    creds = user_with("kinesis-export-policy.json", stream)
    counter = CallCounter()
    with enable_iam_authentication():
        checked = PROVIDER.check("access_keys", creds, {}, counter)
        options = PROVIDER.options("access_keys", creds, "kinesis_audience_export", "stream_name", {}, counter)
        exp = Registry().destination("amazon_kinesis", "kinesis_audience_export")
        exp.write_part(_ctx(creds, {}, counter), exp.freeze({"audience_id": "a", "stream_name": stream}), 1,
                       [("add", "prof_1", ["a@x.io"])])
        # AND it does not let Switchyard read the stream
        time.sleep(0.002)
        with pytest.raises(ProviderError) as caught:
            Registry().source("amazon_kinesis", "kinesis_import").read(_ctx(creds, {"stream_name": stream}, CallCounter()))
    assert checked.status is HealthStatus.HEALTHY and stream in {o.value for o in options}
    assert "missing permission" in caught.value.reason
    assert {k.split(".")[1] for k in counter.counts} == {"GetCallerIdentity", "DescribeStreamSummary",
                                                         "ListStreams", "PutRecords"}


def test_the_kinesis_import_example_is_enough_to_import(user_with: Any, stream: str) -> None:
    from chalicelib.providers.kinesis import PROVIDER

    creds = user_with("kinesis-import-policy.json", stream)
    time.sleep(0.002)
    with enable_iam_authentication():
        checked = PROVIDER.check("access_keys", creds, {}, CallCounter())
        result = Registry().source("amazon_kinesis", "kinesis_import").read(_ctx(creds, {"stream_name": stream}, CallCounter()))
    assert checked.status is HealthStatus.HEALTHY
    assert result.done and [r.data for r in result.rows] == [{"email": "a@x.io"}]


# What AWS authorizes each SQS operation with (the Service Authorization Reference).
SQS_ACTIONS = {"GetQueueAttributes": "sqs:GetQueueAttributes", "SendMessageBatch": "sqs:SendMessage",
               "ListQueues": "sqs:ListQueues"}


def test_the_sqs_example_allows_every_operation_the_export_sends(aws: None) -> None:
    from chalicelib.providers.sqs import PROVIDER, AccessKeys

    # GIVEN a queue, and the operations a check, the options and a part send
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName=f"sy-iam-{uuid.uuid4().hex[:8]}.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    creds = AccessKeys(access_key_id="AKIAIOSFODNN7EXAMPLE", secret_access_key="x" * 40, queue_url=url)
    counter = CallCounter()
    try:
        PROVIDER.check("access_keys", creds, {}, counter)
        PROVIDER.options("access_keys", creds, "sqs_audience_export", "queue_url", {}, counter)
        exp = Registry().destination("amazon_sqs", "sqs_audience_export")
        exp.write_part(_ctx(creds, {}, counter), exp.freeze({"audience_id": "a", "queue_url": url}), 1,
                       [("add", "prof_1", ["a@x.io"])])
    finally:
        sqs.delete_queue(QueueUrl=url)
    sent = {k.split(".")[1] for k in counter.counts if k.startswith("sqs.")}
    # THEN the example allows each of them, and only them
    assert sent == set(SQS_ACTIONS)
    assert actions(policy("sqs-export-policy.json")) == {SQS_ACTIONS[op] for op in sent}
