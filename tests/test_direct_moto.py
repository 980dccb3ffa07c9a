"""The worker's clients reach moto in-process (tests/direct_moto.py) and get the answers they
would over HTTP.

The same run of requests goes to the worker's moto twice, on resources of its own each time:
once by a client that sends over HTTP to the server's socket, once by one the in-process
handler answers. Every answer must match: the status, the body byte for byte (the resources'
names, generated ids and times aside), the headers botocore reads, and what the SDK makes of
it, errors included. The requests cover the services and shapes the app uses: DynamoDB
conditional writes, transactions, batches and queries; S3 objects with metadata, ranges and
a missing key; SQS; Secrets Manager.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import partial
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests import direct_moto

# Values moto makes up per call (ids, handles, times): masked before comparing bodies.
_VOLATILE = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # uuids: request, message, version ids
    r"|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?"  # ISO times
    r"|\b1\d{9}(?:\.\d+)?\b"  # epoch seconds
    r"|(?<=ReceiptHandle\": \")[^\"]+|(?<=<RequestId>)[^<]+"
    r"|(?<=:secret:switchyard-direct-check-SIDE-)[A-Za-z0-9]{6}"
)
# Headers that belong to the transport or to the moment, not to moto's answer.
_TRANSPORT_HEADERS = {"server", "date", "connection", "transfer-encoding", "x-amzn-requestid", "x-amz-request-id",
                      "x-amz-id-2", "last-modified", "x-amz-crc32", "x-amz-version-id"}
_BODY = bytes(range(256)) * 400  # 100 KB, every byte value


def _mask(body: bytes, side: str) -> str:
    return _VOLATILE.sub("~", body.decode("utf-8", "replace").replace(side, "SIDE"))


def _client(service: str, direct: bool) -> Any:
    client = boto3.session.Session().client(service, region_name="us-east-1",
                                            config=Config(retries={"mode": "standard", "max_attempts": 1}))
    handler = direct_moto.installed()
    assert handler is not None, "the session fixture installs the in-process handler"
    if not direct:
        client.meta.events.unregister("before-send", handler)
    return client


def _run(side: str, direct: bool) -> list[tuple[str, Any]]:
    """What each request of the run answered: status, masked body and headers, the SDK's
    result or error; in order."""
    seen: list[tuple[str, Any]] = []

    def record(response_dict: dict[str, Any], operation_model: Any = None, **_: Any) -> None:
        body = response_dict["body"]
        headers = {k.lower(): v for k, v in response_dict["headers"].items() if k.lower() not in _TRANSPORT_HEADERS}
        masked = _mask(body, side) if isinstance(body, bytes) else "<stream>"
        if isinstance(body, bytes) and "content-length" in headers:
            # The length the answer would have had with the masked body: a time moto writes
            # as a float is one digit shorter now and then, on either side.
            headers["content-length"] = str(int(headers["content-length"]) - len(body) + len(masked.encode()))
        seen.append((operation_model.name, (response_dict["status_code"], masked,
                                            {k: _mask(v.encode(), side) for k, v in sorted(headers.items())})))

    clients = {name: _client(name, direct) for name in ("dynamodb", "s3", "sqs", "secretsmanager")}
    for client in clients.values():
        client.meta.events.register("before-parse", record)

    def call(service: str, operation: str, **kwargs: Any) -> None:
        try:
            result = getattr(clients[service], operation)(**kwargs)
        except ClientError as e:
            seen.append(("error", (e.response["Error"]["Code"], _mask(e.response["Error"].get("Message", "").encode(),
                                                                         side))))
            return
        result.pop("ResponseMetadata", None)
        if "Body" in result:
            data = result.pop("Body").read()
            seen.append(("body", hashlib.sha256(data).hexdigest()))
        seen.append(("result", _mask(json.dumps(result, default=str, sort_keys=True).encode(), side)))

    table, bucket, queue, secret = (f"switchyard-direct-check-{side}",) * 4
    ddb = partial(call, "dynamodb")
    ddb("create_table", TableName=table, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}])
    key = {"pk": {"S": "p"}, "sk": {"S": "s000"}}
    ddb("batch_write_item", RequestItems={table: [{"PutRequest": {"Item": {
        "pk": {"S": "p"}, "sk": {"S": f"s{i:03d}"}, "n": {"N": str(i)}, "b": {"B": bytes([i])},
        "m": {"M": {"l": {"L": [{"S": "é"}, {"BOOL": True}]}}}}}} for i in range(25)]})
    ddb("get_item", TableName=table, Key=key)
    ddb("get_item", TableName=table, Key={"pk": {"S": "none"}, "sk": {"S": "none"}})
    ddb("update_item", TableName=table, Key=key, UpdateExpression="SET n = n + :one",
        ConditionExpression="n = :zero", ExpressionAttributeValues={":one": {"N": "1"}, ":zero": {"N": "0"}},
        ReturnValues="ALL_NEW")
    ddb("put_item", TableName=table, Item=key, ConditionExpression="attribute_not_exists(pk)",
        ReturnValuesOnConditionCheckFailure="ALL_OLD")
    ddb("transact_write_items", TransactItems=[
        {"Update": {"TableName": table, "Key": {"pk": {"S": "p"}, "sk": {"S": "s001"}},
                    "UpdateExpression": "SET n = :v", "ExpressionAttributeValues": {":v": {"N": "9"}}}},
        {"ConditionCheck": {"TableName": table, "Key": key, "ConditionExpression": "attribute_not_exists(pk)"}}])
    ddb("query", TableName=table, KeyConditionExpression="pk = :p AND sk > :s", Limit=5,
        ExpressionAttributeValues={":p": {"S": "p"}, ":s": {"S": "s010"}})
    ddb("delete_item", TableName=table, Key=key, ReturnValues="ALL_OLD")
    ddb("describe_table", TableName="switchyard-direct-check-missing")

    s3 = partial(call, "s3")
    s3("create_bucket", Bucket=bucket)
    s3("put_object", Bucket=bucket, Key="drops/people one.csv", Body=_BODY, Metadata={"owner": "ops"},
       ContentType="text/csv")
    s3("head_object", Bucket=bucket, Key="drops/people one.csv")
    s3("get_object", Bucket=bucket, Key="drops/people one.csv")
    s3("get_object", Bucket=bucket, Key="drops/people one.csv", Range="bytes=1000-4999")
    s3("list_objects_v2", Bucket=bucket, Prefix="drops/")
    s3("get_object", Bucket=bucket, Key="drops/missing.csv")
    s3("delete_object", Bucket=bucket, Key="drops/people one.csv")

    sqs = partial(call, "sqs")
    sqs("create_queue", QueueName=queue)
    url = clients["sqs"].get_queue_url(QueueName=queue)["QueueUrl"]
    sqs("send_message", QueueUrl=url, MessageBody=json.dumps({"job": "é"}))
    sqs("receive_message", QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    sqs("get_queue_url", QueueName="switchyard-direct-check-missing")

    secrets = partial(call, "secretsmanager")
    secrets("create_secret", Name=secret, SecretString="canary-direct-check")
    secrets("get_secret_value", SecretId=secret)
    secrets("get_secret_value", SecretId="switchyard-direct-check-missing")
    return seen


@pytest.mark.usefixtures("aws_endpoint")
def test_in_process_answers_match_the_servers_byte_for_byte() -> None:
    handler = direct_moto.installed()
    assert handler is not None
    before = handler.answered
    over_http = _run("sidea", direct=False)
    # Positive control: the HTTP run never went through the handler, so the comparison below
    # compares two paths and not one with itself.
    assert handler.answered == before
    in_process = _run("sideb", direct=True)
    assert handler.answered - before == sum(1 for kind, _ in in_process if kind not in ("result", "body", "error"))
    assert len(over_http) == len(in_process) > 40
    for n, (a, b) in enumerate(zip(over_http, in_process, strict=True)):
        assert a == b, f"request {n} ({a[0]}) answered differently:\n over HTTP:  {a}\n in-process: {b}"
    # The run did reach the cases it claims to compare.
    errors = [detail[0] for kind, detail in in_process if kind == "error"]
    assert errors == ["ConditionalCheckFailedException", "TransactionCanceledException", "ResourceNotFoundException", "NoSuchKey",
                      "AWS.SimpleQueueService.NonExistentQueue", "ResourceNotFoundException"], errors


@pytest.mark.usefixtures("aws_endpoint")
def test_other_endpoints_still_go_over_http() -> None:
    handler = direct_moto.installed()
    assert handler is not None
    assert handler.mine(handler.endpoint + "/")
    assert handler.mine(handler.endpoint + "?Action=x")
    # The same host on a port that only starts with the worker's, and another host: not its own.
    assert not handler.mine(handler.endpoint + "0/")
    assert not handler.mine("https://dynamodb.us-east-1.amazonaws.com/")
