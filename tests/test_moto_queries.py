"""devserver/queries.py: a Query on a table's key reads only its partition in moto, and
answers exactly as moto's full pass over the table does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from devserver import queries


@pytest.fixture()
def table(aws_endpoint: str) -> Iterator[tuple[Any, str]]:
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    name = "queries-partition"
    ddb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk", "g")],
        GlobalSecondaryIndexes=[{"IndexName": "byG", "Projection": {"ProjectionType": "ALL"},
                                 "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"},
                                               {"AttributeName": "sk", "KeyType": "RANGE"}]}])
    for i in range(120):  # three partitions; the queried one is not the largest
        item = {"pk": {"S": f"p{i % 3}"}, "sk": {"S": f"s{(i * 7) % 120:03d}"}, "n": {"N": str(i)},
                "g": {"S": f"g{i % 2}"}}
        ddb.put_item(TableName=name, Item=item)
    yield ddb, name
    ddb.delete_table(TableName=name)


QUERIES: list[dict[str, Any]] = [
    {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "p1"}}},
    {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "p1"}},
     "ScanIndexForward": False, "Limit": 7},
    {"KeyConditionExpression": "pk = :p AND begins_with(sk, :s)",
     "ExpressionAttributeValues": {":p": {"S": "p2"}, ":s": {"S": "s0"}}},
    {"KeyConditionExpression": "pk = :p AND sk BETWEEN :a AND :b", "FilterExpression": "n > :n",
     "ExpressionAttributeValues": {":p": {"S": "p0"}, ":a": {"S": "s010"}, ":b": {"S": "s090"}, ":n": {"N": "30"}},
     "ProjectionExpression": "sk, n"},
    {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "p1"}}, "Select": "COUNT"},
    {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "nobody"}}},
]


def _pages(ddb: Any, name: str, query: dict[str, Any]) -> list[dict[str, Any]]:
    """Every page of the query, following LastEvaluatedKey."""
    pages, start = [], None
    while True:
        extra = {"ExclusiveStartKey": start} if start else {}
        page = ddb.query(TableName=name, **query, **extra)
        page.pop("ResponseMetadata")
        pages.append(page)
        start = page.get("LastEvaluatedKey")
        if not start:
            return pages


@pytest.mark.parametrize("query", QUERIES, ids=range(len(QUERIES)))
def test_a_key_query_answers_as_the_full_pass_does_reading_one_partition(table, query):
    ddb, name = table
    before = dict(queries.answered)
    fast = _pages(ddb, name, query)
    assert queries.answered["partition"] > before["partition"]
    assert queries.answered["full"] == before["full"]  # no pass over the whole table
    queries.full_pass_only = True
    try:
        full = _pages(ddb, name, query)
    finally:
        queries.full_pass_only = False
    assert queries.answered["full"] > before["full"]  # the control did take moto's pass
    assert fast == full
    assert len(fast) >= 1


def test_an_index_query_keeps_the_full_pass(table):
    ddb, name = table
    before = dict(queries.answered)
    items = [i for page in _pages(ddb, name, {"IndexName": "byG", "KeyConditionExpression": "g = :g",
                                              "ExpressionAttributeValues": {":g": {"S": "g1"}}})
             for i in page["Items"]]
    assert queries.answered["full"] > before["full"]
    assert len(items) == 60 and all(i["g"] == {"S": "g1"} for i in items)
    assert [i["sk"]["S"] for i in items] == sorted(i["sk"]["S"] for i in items)


def test_a_partition_only_table_with_a_number_key_answers_as_the_full_pass(aws_endpoint: str) -> None:
    # The other branch of the partition read (no sort key: one item a partition), a Number
    # key, and ConsistentRead, against moto's own full pass.
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    name = "queries-hash-only"
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "N"}])
    try:
        for i in range(50):
            ddb.put_item(TableName=name, Item={"id": {"N": str(i)}, "v": {"S": f"v{i}"}})
        for key, filtered in ((7, False), (7, True), (99, False)):
            query: dict[str, Any] = {"KeyConditionExpression": "id = :i", "ConsistentRead": True,
                                     "ExpressionAttributeValues": {":i": {"N": str(key)}}}
            if filtered:
                query["FilterExpression"] = "v = :v"
                query["ExpressionAttributeValues"][":v"] = {"S": "v8"}
            before = dict(queries.answered)
            fast = _pages(ddb, name, query)
            assert queries.answered["partition"] > before["partition"]
            assert queries.answered["full"] == before["full"]
            queries.full_pass_only = True
            try:
                full = _pages(ddb, name, query)
            finally:
                queries.full_pass_only = False
            assert queries.answered["full"] > before["full"]
            assert fast == full
        assert [i["v"] for i in _pages(ddb, name, {"KeyConditionExpression": "id = :i",
                                                    "ExpressionAttributeValues": {":i": {"N": "7"}}})[0]["Items"]] \
            == [{"S": "v7"}]
    finally:
        ddb.delete_table(TableName=name)
