"""The local AWS emulation (`make run` and the tests): DynamoDB requests applied one at a time,
except BatchWriteItem, applied item by item with other requests between items; TransactWriteItems
retried by token answered once, as DynamoDB does; other services concurrent."""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from devserver import emulator
from tests.race_kit import crashes, race


class _Slow:
    """A WSGI app that notes how many requests were inside it at once. Each request stays
    50 ms, or, with `meet`, until `meet` requests are inside together: requests the middleware
    lets run side by side all get there however slow the machine is (one it holds back
    breaks the barrier instead)."""

    def __init__(self, meet: int = 0) -> None:
        self.inside = 0
        self.most: dict[str, int] = {}
        self.guard = threading.Lock()
        self.meet = threading.Barrier(meet) if meet else None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        kind = environ.get("HTTP_X_AMZ_TARGET", "other").split(".")[0]
        with self.guard:
            self.inside += 1
            self.most[kind] = max(self.most.get(kind, 0), self.inside)
        if self.meet:
            self.meet.wait(60)
        else:
            time.sleep(0.05)
        with self.guard:
            self.inside -= 1
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]


def _environ(target: str | None) -> dict[str, Any]:
    env: dict[str, Any] = {"wsgi.input": io.BytesIO(b"{}"), "CONTENT_LENGTH": "2"}
    if target:
        env["HTTP_X_AMZ_TARGET"] = target
    return env


def _call_at_once(app: Any, targets: list[str | None]) -> None:
    results = race([lambda t=t: list(app(_environ(t), lambda *a: None)) for t in targets])
    assert not crashes(results), crashes(results)


def test_dynamodb_requests_are_applied_one_at_a_time_and_others_are_not() -> None:
    # GIVEN the middleware around an app that notes how many requests are inside it
    inner = _Slow()
    app = emulator.AtomicDynamoDB(inner)
    # WHEN 8 DynamoDB requests arrive at once
    _call_at_once(app, ["DynamoDB_20120810.PutItem"] * 4 + ["DynamoDB_20120810.Query"] * 4)
    # THEN moto saw them one at a time
    assert inner.most == {"DynamoDB_20120810": 1}
    # WHEN 8 requests of other services (SQS over JSON, S3 with no target) arrive at once
    meeting = _Slow(meet=8)
    _call_at_once(emulator.AtomicDynamoDB(meeting), ["AmazonSQS.ReceiveMessage"] * 4 + [None] * 4)
    # THEN they ran side by side: all 8 were inside together
    assert meeting.inside == 0 and max(meeting.most.values()) == 8


@pytest.fixture()
def table(aws_endpoint: str) -> str:
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    name = f"emulator-{uuid.uuid4().hex[:8]}"
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    return name


def _create_once(table: str, pk: str) -> dict[str, Any]:
    return {"Put": {"TableName": table, "Item": {"pk": {"S": pk}},
                    "ConditionExpression": "attribute_not_exists(pk)"}}


def test_a_transaction_retried_with_its_token_answers_as_the_first_call(table: str) -> None:
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    token = uuid.uuid4().hex
    # GIVEN a transaction that committed (it creates an item only if absent)
    ddb.transact_write_items(TransactItems=[_create_once(table, "a")], ClientRequestToken=token)
    # WHEN the SDK retries it with the same token (its first answer was lost)
    again = ddb.transact_write_items(TransactItems=[_create_once(table, "a")], ClientRequestToken=token)
    # THEN it succeeds without applying twice
    assert again["ResponseMetadata"]["HTTPStatusCode"] == 200
    # AND the same transaction under a new token is a new request: its condition fails
    with pytest.raises(ClientError) as err:
        ddb.transact_write_items(TransactItems=[_create_once(table, "a")], ClientRequestToken=uuid.uuid4().hex)
    assert err.value.response["Error"]["Code"] == "TransactionCanceledException"


def test_a_token_is_forgotten_after_ten_minutes(table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    token = uuid.uuid4().hex
    ddb.transact_write_items(TransactItems=[_create_once(table, "b")], ClientRequestToken=token)
    # WHEN the same token comes back 10 minutes later
    real = time.monotonic
    monkeypatch.setattr(emulator.time, "monotonic", lambda: real() + emulator.TOKEN_TTL_SECONDS + 1)
    # THEN it is a new request (and this one's condition fails)
    with pytest.raises(ClientError) as err:
        ddb.transact_write_items(TransactItems=[_create_once(table, "b")], ClientRequestToken=token)
    assert err.value.response["Error"]["Code"] == "TransactionCanceledException"


def test_transactions_racing_writes_on_one_table_never_fail_inside_moto(table: str) -> None:
    # GIVEN 4 threads writing items and 4 running transactions on the same table (moto
    # copies whole tables inside a transaction: unguarded, that copy races the writes), and
    # no SDK retries to hide an error
    ddb = boto3.client("dynamodb", region_name="us-east-1",
                       config=Config(retries={"mode": "standard", "max_attempts": 1}))
    # ... on a table big enough that each copy takes a while
    resource = boto3.resource("dynamodb", region_name="us-east-1").Table(table)
    with resource.batch_writer() as batch:
        for i in range(2000):
            batch.put_item(Item={"pk": f"seed-{i}", "v": "y" * 100})
    errors: list[str] = []

    def put(n: int) -> None:
        for i in range(60):
            try:
                ddb.put_item(TableName=table, Item={"pk": {"S": f"p{n}-{i}"}, "v": {"S": "x" * 200}})
            except ClientError as exc:
                errors.append(json.dumps(exc.response["Error"]))

    def transact(n: int) -> None:
        for i in range(30):
            try:
                ddb.transact_write_items(TransactItems=[_create_once(table, f"t{n}-{i}")])
            except ClientError as exc:
                errors.append(json.dumps(exc.response["Error"]))

    results = race([lambda n=n: put(n) for n in range(4)] + [lambda n=n: transact(n) for n in range(4)])
    # THEN every request was applied, none answered with moto's internal error
    assert not crashes(results), crashes(results)
    assert errors == []
    count = ddb.scan(TableName=table, Select="COUNT")["Count"]
    assert count == 2000 + 4 * 60 + 4 * 30


@pytest.fixture()
def sorted_table(aws_endpoint: str) -> str:
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    name = f"emulator-{uuid.uuid4().hex[:8]}"
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                {"AttributeName": "sk", "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "sk", "AttributeType": "S"}])
    return name


def _puts(n: int, pk: str = "batch") -> list[dict[str, Any]]:
    return [{"PutRequest": {"Item": {"pk": {"S": pk}, "sk": {"S": f"{i:02d}"}}}} for i in range(n)]


class _Hold:
    """A `between_items` hook that holds a batch after `after` items until released."""

    def __init__(self, after: int) -> None:
        self.after, self.reached, self.release = after, threading.Event(), threading.Event()

    def __call__(self, done: int, total: int) -> None:
        if done == self.after:
            self.reached.set()
            assert self.release.wait(60), "the test never released the batch"


def test_a_query_and_a_batch_get_can_see_a_batch_write_half_applied(
        sorted_table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    # GIVEN a BatchWriteItem of 4 items held after its second item
    hold = _Hold(after=2)
    monkeypatch.setattr(emulator.AtomicDynamoDB, "between_items", hold)
    answers: list[dict[str, Any]] = []
    writer = threading.Thread(target=lambda: answers.append(
        ddb.batch_write_item(RequestItems={sorted_table: _puts(4)})))
    writer.start()
    try:
        assert hold.reached.wait(60)
        # WHEN a Query, a BatchGetItem and a single-item write run meanwhile
        seen = ddb.query(TableName=sorted_table, KeyConditionExpression="pk = :p",
                         ExpressionAttributeValues={":p": {"S": "batch"}}, ConsistentRead=True)["Items"]
        got = ddb.batch_get_item(RequestItems={sorted_table: {
            "Keys": [{"pk": {"S": "batch"}, "sk": {"S": f"{i:02d}"}} for i in range(4)],
            "ConsistentRead": True}})["Responses"][sorted_table]
        ddb.put_item(TableName=sorted_table, Item={"pk": {"S": "other"}, "sk": {"S": "x"}})
    finally:
        hold.release.set()
        writer.join(60)
    # THEN they saw the first two items and not the others (the batch was half-applied)
    assert sorted(i["sk"]["S"] for i in seen) == ["00", "01"]
    assert sorted(i["sk"]["S"] for i in got) == ["00", "01"]
    # AND the batch then finished, answering as DynamoDB does
    assert answers and answers[0]["UnprocessedItems"] == {}
    after = ddb.query(TableName=sorted_table, KeyConditionExpression="pk = :p",
                      ExpressionAttributeValues={":p": {"S": "batch"}}, ConsistentRead=True)["Items"]
    assert len(after) == 4


def test_a_bad_batch_is_rejected_before_any_item_is_written(sorted_table: str) -> None:
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    duplicate = [*_puts(3), {"DeleteRequest": {"Key": {"pk": {"S": "batch"}, "sk": {"S": "01"}}}}]
    no_key = [*_puts(3), {"PutRequest": {"Item": {"pk": {"S": "batch"}}}}]
    for bad, words in ((duplicate, "duplicates"), (no_key, "does not match the schema"),
                       (_puts(26), "Too many items")):
        with pytest.raises(ClientError) as err:
            ddb.batch_write_item(RequestItems={sorted_table: bad})
        assert err.value.response["Error"]["Code"] == "ValidationException"
        assert words in err.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as err:
        ddb.batch_write_item(RequestItems={"no-such-table": _puts(2)})
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert ddb.scan(TableName=sorted_table, Select="COUNT")["Count"] == 0
    # positive control: the same items without the bad one are written, deletes included
    ddb.batch_write_item(RequestItems={sorted_table: _puts(3)})
    ddb.batch_write_item(RequestItems={sorted_table: duplicate[3:]})
    assert ddb.scan(TableName=sorted_table, Select="COUNT")["Count"] == 2


def _moto_table(name: str) -> Any:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    return dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].tables[name]


def test_a_cancelled_transaction_restores_what_it_named_without_copying_the_table(table: str) -> None:
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    # GIVEN a table with items "keep" (v=1) and "gone" (v=1), and moto's table object
    for pk in ("keep", "gone", "other"):
        ddb.put_item(TableName=table, Item={"pk": {"S": pk}, "v": {"N": "1"}})
    before = _moto_table(table)
    # WHEN a transaction updates "keep", deletes "gone", creates "new", then fails a check
    with pytest.raises(ClientError) as err:
        ddb.transact_write_items(TransactItems=[
            {"Update": {"TableName": table, "Key": {"pk": {"S": "keep"}}, "UpdateExpression": "SET v = :two",
                        "ExpressionAttributeValues": {":two": {"N": "2"}}}},
            {"Delete": {"TableName": table, "Key": {"pk": {"S": "gone"}}}},
            {"Put": {"TableName": table, "Item": {"pk": {"S": "new"}}}},
            {"ConditionCheck": {"TableName": table, "Key": {"pk": {"S": "other"}},
                                "ConditionExpression": "attribute_not_exists(pk)"}},
        ])
    assert err.value.response["Error"]["Code"] == "TransactionCanceledException"
    # THEN every item is as it was
    items = {i["pk"]["S"]: i["v"]["N"] for i in ddb.scan(TableName=table, ConsistentRead=True)["Items"]}
    assert items == {"keep": "1", "gone": "1", "other": "1"}
    # AND the table was not replaced by a copy (moto's own backup deep-copies whole tables,
    # a cost that grows with the table; the emulator backs up only the named items)
    assert _moto_table(table) is before
    # AND a transaction that passes still applies every write
    ddb.transact_write_items(TransactItems=[
        {"Update": {"TableName": table, "Key": {"pk": {"S": "keep"}}, "UpdateExpression": "SET v = :two",
                    "ExpressionAttributeValues": {":two": {"N": "2"}}}},
        {"Delete": {"TableName": table, "Key": {"pk": {"S": "gone"}}}},
        {"Put": {"TableName": table, "Item": {"pk": {"S": "new"}, "v": {"N": "3"}}}},
    ])
    items = {i["pk"]["S"]: i["v"]["N"] for i in ddb.scan(TableName=table, ConsistentRead=True)["Items"]}
    assert items == {"keep": "2", "new": "3", "other": "1"}


def test_batch_items_written_directly_read_back_as_moto_writes_them(
        sorted_table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    rich = {"s": {"S": 'é "q" \\ \n'}, "n": {"N": "12.50"}, "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["1", "2.5"]},
            "null": {"NULL": True}, "yes": {"BOOL": True}, "empty": {"S": ""},
            "m": {"M": {"l": {"L": [{"N": "1"}, {"NULL": True}, {"SS": ["q"]}, {"M": {}}]}}}}
    items = [{"pk": {"S": pk}, "sk": {"S": f"{i:02d}"}, **rich} for pk in ("direct", "app") for i in range(5)]
    sub_requests: list[str] = []
    apply = emulator.AtomicDynamoDB.apply

    def noted(self: Any, environ: dict[str, Any], operation: str) -> Any:
        sub_requests.append(operation)
        return apply(self, environ, operation)

    monkeypatch.setattr(emulator.AtomicDynamoDB, "apply", noted)
    # GIVEN the same items, one partition written by BatchWriteItem and one by PutItem (moto's app)
    ddb.batch_write_item(RequestItems={sorted_table: [{"PutRequest": {"Item": it}} for it in items[:5]]})
    # THEN the batch's items did not go through moto's app one by one (only its table's schema did)
    assert sub_requests == ["DescribeTable"], sub_requests
    for it in items[5:]:
        ddb.put_item(TableName=sorted_table, Item=it)
    # AND both partitions read back the same, attribute for attribute
    def read(pk: str) -> list[dict[str, Any]]:
        got = ddb.query(TableName=sorted_table, KeyConditionExpression="pk = :p",
                        ExpressionAttributeValues={":p": {"S": pk}}, ConsistentRead=True)["Items"]
        return [{k: v for k, v in i.items() if k != "pk"} for i in got]

    assert read("direct") == read("app") and len(read("direct")) == 5
    # AND deletes go the same way: the batch's delete leaves what PutItem's partition keeps after DeleteItem
    sub_requests.clear()
    ddb.batch_write_item(RequestItems={sorted_table: [{"DeleteRequest": {"Key": {"pk": {"S": "direct"},
                                                                                  "sk": {"S": "01"}}}}]})
    ddb.delete_item(TableName=sorted_table, Key={"pk": {"S": "app"}, "sk": {"S": "01"}})
    assert sub_requests == ["DescribeTable", "DeleteItem"], sub_requests
    assert read("direct") == read("app") and len(read("direct")) == 4
    # AND an item holding a binary value goes through moto's app (its parser decodes base64 first)
    sub_requests.clear()
    ddb.batch_write_item(RequestItems={sorted_table: [{"PutRequest": {"Item": {
        "pk": {"S": "bin"}, "sk": {"S": "0"}, "b": {"B": b"\x00\xff"}}}}]})
    assert sub_requests == ["DescribeTable", "BatchWriteItem"], sub_requests
    assert ddb.get_item(TableName=sorted_table, Key={"pk": {"S": "bin"}, "sk": {"S": "0"}})["Item"]["b"] == {
        "B": b"\x00\xff"}
