"""bench/moto_speed.py answers exactly as moto's own serializer does.

The same DynamoDB requests go to the emulator twice, once with moto's serializer and once
with the short path; every answer's body must be the same bytes (table names and times
aside). Items hold every attribute type, nested, and the requests are those the app sends.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.core import serialize

from bench import moto_speed

RICH: dict[str, Any] = {
    "s": {"S": 'é "quoted" \\ \n'}, "empty": {"S": ""}, "n": {"N": "12.50"}, "neg": {"N": "-1E+3"},
    "b": {"B": b"\x00\x01bin\xff"}, "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["1", "2.5"]},
    "bs": {"BS": [b"x", b"\x00"]}, "null": {"NULL": True}, "yes": {"BOOL": True}, "no": {"BOOL": False},
    "m": {"M": {"a": {"S": "1"}, "deep": {"M": {"l": {"L": [{"N": "1"}, {"NULL": True}, {"BOOL": False},
                                                           {"B": b"z"}, {"SS": ["q"]}]}}}}},
    "l": {"L": [{"S": "x"}, {"M": {}}, {"L": []}, {"M": {"k": {"NS": ["7"]}}}]}, "em": {"M": {}},
}


def _answers(endpoint: str, table: str) -> list[bytes]:
    """The bodies of a run of requests on a new table, in order."""
    bodies: list[bytes] = []
    ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                       config=Config(retries={"max_attempts": 1}))
    ddb.meta.events.register("after-call.dynamodb", lambda http_response, **_: bodies.append(http_response.content))
    ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                {"AttributeName": "sk", "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "sk", "AttributeType": "S"}])
    items = [{"pk": {"S": f"p{i % 3}"}, "sk": {"S": f"s{i:03d}"}, **RICH} for i in range(60)]
    for start in range(0, len(items), 25):
        ddb.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": it}} for it in items[start:start + 25]]})
    key = {"pk": {"S": "p1"}, "sk": {"S": "s001"}}
    ddb.get_item(TableName=table, Key=key)
    ddb.get_item(TableName=table, Key={"pk": {"S": "none"}, "sk": {"S": "none"}})
    ddb.batch_get_item(RequestItems={table: {"Keys": [{"pk": it["pk"], "sk": it["sk"]} for it in items[:40]]}})
    ddb.query(TableName=table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "p0"}},
              Limit=7)
    ddb.query(TableName=table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "p2"}},
              ProjectionExpression="sk, m.deep, #n", ExpressionAttributeNames={"#n": "null"})
    ddb.update_item(TableName=table, Key=key, UpdateExpression="SET n = n + :one, m.a = :v REMOVE ss",
                    ExpressionAttributeValues={":one": {"N": "1"}, ":v": {"L": [{"S": "q"}, {"BOOL": True}]}},
                    ReturnValues="ALL_NEW")
    ddb.update_item(TableName=table, Key=key, UpdateExpression="ADD ns :x",
                    ExpressionAttributeValues={":x": {"NS": ["9"]}}, ReturnValues="UPDATED_OLD")
    ddb.delete_item(TableName=table, Key={"pk": {"S": "p2"}, "sk": {"S": "s002"}}, ReturnValues="ALL_OLD")
    # The step commit's shape (many nested SETs, ADD, REMOVE), twice: the second parse is
    # the cached one.
    names = {f"#c{i}": f"metric{i}" for i in range(12)} | {"#m": "m"}
    sets = ", ".join(f"#m.#c{i} = if_not_exists(#m.#c{i}, :zero) + :one" for i in range(12))
    for _ in range(2):
        ddb.transact_write_items(TransactItems=[{"Update": {
            "TableName": table, "Key": key, "UpdateExpression": f"SET {sets}, n = :one ADD ns :x REMOVE bs",
            "ConditionExpression": "attribute_exists(pk)", "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {":zero": {"N": "0"}, ":one": {"N": "1"}, ":x": {"NS": ["3"]}}}}])
    for call in (
        lambda: ddb.put_item(TableName=table, Item=items[3], ConditionExpression="attribute_not_exists(pk)",
                             ReturnValuesOnConditionCheckFailure="ALL_OLD"),
        lambda: ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": table, "Item": items[4], "ConditionExpression": "attribute_not_exists(pk)",
                     "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}},
            {"Delete": {"TableName": table, "Key": key}}]),
        # Clauses given twice: which one moto names depends on the order it checks them in.
        *(lambda expression=expression, values=values: ddb.update_item(
            TableName=table, Key=key, UpdateExpression=expression, ExpressionAttributeValues=values)
          for expression, values in (
              ("SET a = :v SET b = :v", {":v": {"S": "v"}}),
              ("ADD ns :x ADD nz :x", {":x": {"NS": ["1"]}}),
              ("REMOVE a REMOVE b", None),
              ("SET a = :v REMOVE c ADD ns :x SET b = :v REMOVE d", {":v": {"S": "v"}, ":x": {"NS": ["1"]}}),
              ("REMOVE c SET a = :v ADD ns :x ADD nz :x SET b = :v", {":v": {"S": "v"}, ":x": {"NS": ["1"]}}),
              ("REMOVE c ADD ns :x REMOVE d ADD nz :x", {":x": {"NS": ["1"]}}),
              ("REMOVE c SET a = :v SET b = :v REMOVE d", {":v": {"S": "v"}}))
          if values is not None),
        lambda: ddb.update_item(TableName=table, Key=key, UpdateExpression="REMOVE a REMOVE b"),
    ):
        with pytest.raises(ddb.exceptions.ClientError):
            call()
    ddb.scan(TableName=table, Limit=5)
    ddb.describe_table(TableName=table)
    return bodies


def _normal(body: bytes, table: str) -> str:
    text = body.decode().replace(table, "TABLE")
    return re.sub(r'"(CreationDateTime|LastIncreaseDateTime|LastDecreaseDateTime)": [0-9.]+', r'"\1": 0', text)


def _counting(calls: list[int]) -> Callable[..., None]:
    fast = serialize.BaseJSONSerializer._serialize_type_structure

    def counted(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if shape.name == "AttributeValue":
            calls.append(1)
        fast(self, serialized, value, shape, key)

    return counted


def test_the_short_path_answers_byte_for_byte_as_moto(aws_endpoint: str) -> None:
    was = moto_speed.installed()
    try:
        moto_speed.uninstall()
        slow = _answers(aws_endpoint, "speed-check-moto")
        moto_speed.install()
        # Positive control: the short path really serialized attribute values.
        calls: list[int] = []
        serialize.BaseJSONSerializer._serialize_type_structure = _counting(calls)  # type: ignore[method-assign]
        fast = _answers(aws_endpoint, "speed-check-fast")
    finally:
        moto_speed.install() if was else moto_speed.uninstall()
    assert calls, "no AttributeValue went through the short path"
    assert len(slow) == len(fast) == 25
    for i, (a, b) in enumerate(zip(slow, fast, strict=True)):
        assert _normal(a, "speed-check-moto") == _normal(b, "speed-check-fast"), f"answer {i} differs"
    assert any(b'"B": "AAFiaW7/"' in a for a in slow), "the binary attribute is in the compared answers"

    assert any(b"ConditionalCheckFailed" in a and b'"Item"' in a for a in slow), "a failed condition's item is compared"
    refused = [a for a in slow if b"section can only be used once" in a]
    assert len(refused) == 7, f"every clause given twice is refused: {slow[-9:-2]!r}"


def test_the_sqs_clock_is_motos_clock() -> None:
    import datetime

    from moto.sqs import models

    was = moto_speed.installed()
    try:
        moto_speed.uninstall()
        before = models.unix_time_millis()
        moto_speed.install()
        fast = models.unix_time_millis()
        moto_speed.uninstall()
        after = models.unix_time_millis()
        when = datetime.datetime(2026, 12, 5, 8, 0, 0, 123456)
        given = models.unix_time_millis(when)
        moto_speed.install()
        assert models.unix_time_millis(when) == given == 1796457600123.456
    finally:
        moto_speed.install() if was else moto_speed.uninstall()
    assert before <= fast <= after, (before, fast, after)


def test_the_dispatch_caches_give_moto_s_own_answers() -> None:
    """The backend found for a host and the actions of a response class are moto's own,
    looked up once instead of on every request."""
    from moto.core import responses, utils
    from moto.dynamodb.responses import DynamoHandler
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from moto.s3.responses import S3Response

    hosts = [None, "moto_api", "dynamodb.us-east-1.amazonaws.com", "sqs.eu-west-1.amazonaws.com",
             "s3.amazonaws.com", "bucket.s3.us-east-1.amazonaws.com", "sts.amazonaws.com", "dynamodb",
             "unknown.example.com"]
    was_installed = moto_speed.installed()
    moto_speed.uninstall()
    try:
        plain = DomainDispatcherApplication(create_backend_app)
        want = [plain.get_backend_for_host(h) for h in hosts]
        assert "dynamodb" in want and "s3" in want  # control: the hosts name real backends
        moto_speed.install()
        cached = DomainDispatcherApplication(create_backend_app)
        assert [cached.get_backend_for_host(h) for h in hosts] == want
        assert [cached.get_backend_for_host(h) for h in hosts] == want  # from the cache
        for cls in (DynamoHandler, S3Response):
            assert responses.method_names_from_class(cls) == utils.method_names_from_class(cls)
    finally:
        moto_speed.uninstall()
        if was_installed:
            moto_speed.install()
