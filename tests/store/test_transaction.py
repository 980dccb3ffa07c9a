"""The store's shared DynamoDB parts against moto: a Transaction commits its named writes
once and names the ones whose condition refused; `conditional` turns a refused condition
into ConditionFailed (with the old item when asked); `attempts` paces retry loops."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.store.dynamo import (
    Backoff,
    ConditionFailed,
    Table,
    Transaction,
    TransactionFailed,
    attempts,
)


@pytest.fixture(scope="module")
def table(aws_endpoint: str) -> Iterator[Table]:
    from tests.tables import clone

    fresh = Table(clone(Table()))
    yield fresh
    fresh.client.delete_table(TableName=fresh.name)


def _pk() -> str:
    return f"T#{uuid.uuid4().hex[:12]}"


def _check_exists(table: Table, pk: str, sk: str) -> dict[str, Any]:
    return {"ConditionCheck": {"TableName": table.name, "Key": {"PK": {"S": pk}, "SK": {"S": sk}},
                               "ConditionExpression": "attribute_exists(PK)"}}


def test_a_transaction_commits_every_write_once(table: Table) -> None:
    # GIVEN a transaction of two named writes
    pk = _pk()
    tx = Transaction(table)
    tx.put("a", {"PK": pk, "SK": "A", "n": 1}, condition="attribute_not_exists(PK)")
    tx.put("b", {"PK": pk, "SK": "B", "n": 2})
    assert tx.names == ["a", "b"]

    # WHEN it commits
    tx.commit()

    # THEN both items are there, and it cannot be committed (or added to) again
    assert table.get(pk, "A", consistent=True) == {"PK": pk, "SK": "A", "n": 1}
    assert table.get(pk, "B", consistent=True) == {"PK": pk, "SK": "B", "n": 2}
    with pytest.raises(RuntimeError):
        tx.commit()
    with pytest.raises(RuntimeError):
        tx.put("c", {"PK": pk, "SK": "C"})


def test_a_refused_transaction_names_the_refused_writes_and_writes_nothing(table: Table) -> None:
    # GIVEN an item that exists, and a transaction whose "second" and "fourth" writes cannot hold
    pk = _pk()
    table.put({"PK": pk, "SK": "TAKEN"})
    table.put({"PK": pk, "SK": "THERE"})
    tx = Transaction(table)
    tx.put("first", {"PK": pk, "SK": "NEW"})
    tx.put("second", {"PK": pk, "SK": "TAKEN"}, condition="attribute_not_exists(PK)")
    tx.add("third", _check_exists(table, pk, "THERE"))
    tx.add("fourth", _check_exists(table, pk, "MISSING"))

    # WHEN it commits
    with pytest.raises(TransactionFailed) as refused:
        tx.commit()

    # THEN the refusal names exactly those writes, and none of the writes landed
    assert refused.value.refused == ["second", "fourth"]
    assert not refused.value.conflict
    assert table.get(pk, "NEW", consistent=True) is None

    # AND once the refused writes are dropped the rest commits (positive control)
    tx.drop("second")
    tx.drop("fourth")
    tx.commit()
    assert table.get(pk, "NEW", consistent=True) is not None


def test_write_names_are_unique_and_numbered_names_fill_in(table: Table) -> None:
    tx = Transaction(table)
    tx.put(tx.numbered("log:"), {"PK": "x", "SK": "1"})
    tx.put(tx.numbered("log:"), {"PK": "x", "SK": "2"})
    assert tx.names == ["log:0", "log:1"]
    with pytest.raises(ValueError, match="log:0"):
        tx.put("log:0", {"PK": "x", "SK": "3"})


def test_a_refused_condition_becomes_condition_failed_with_the_old_item(table: Table) -> None:
    # GIVEN an item at version 2
    pk = _pk()
    table.put({"PK": pk, "SK": "V", "version": 2})
    key = {"PK": {"S": pk}, "SK": {"S": "V"}}

    # WHEN a write conditional on version 1 is made, asking for the old item
    with pytest.raises(ConditionFailed) as refused:
        table.write("update_item", Key=key, UpdateExpression="SET version = :n",
                    ConditionExpression="version = :v",
                    ExpressionAttributeValues={":v": {"N": "1"}, ":n": {"N": "3"}},
                    ReturnValuesOnConditionCheckFailure="ALL_OLD")

    # THEN the refusal carries the item as it stood, and write_if answers False / True
    assert refused.value.old == {"PK": pk, "SK": "V", "version": 2}
    assert table.write_if("update_item", Key=key, UpdateExpression="SET version = :n",
                          ConditionExpression="version = :v",
                          ExpressionAttributeValues={":v": {"N": "1"}, ":n": {"N": "3"}}) is False
    assert table.write_if("update_item", Key=key, UpdateExpression="SET version = :n",
                          ConditionExpression="version = :v",
                          ExpressionAttributeValues={":v": {"N": "2"}, ":n": {"N": "3"}}) is True
    assert table.get(pk, "V", consistent=True) == {"PK": pk, "SK": "V", "version": 3}


def test_attempts_wait_after_each_attempt_that_did_not_break() -> None:
    # GIVEN a policy without jitter, so the waits are exact
    policy = Backoff(attempts=4, base=0.05, cap=0.15, jitter=False)
    slept: list[float] = []

    # WHEN a loop succeeds on its third attempt
    tried = []
    for attempt in attempts(policy, sleep=slept.append):
        tried.append(attempt)
        if attempt == 2:
            break

    # THEN it waited twice, doubling, and not after the attempt that succeeded
    assert tried == [0, 1, 2]
    assert slept == [0.05, 0.1]

    # AND a loop that never succeeds spends every attempt (capped waits, none after the
    # last: nothing follows it) and reaches `else`
    slept.clear()
    for _ in attempts(policy, sleep=slept.append):
        pass
    else:
        spent = True
    assert spent and slept == [0.05, 0.1, 0.15]
