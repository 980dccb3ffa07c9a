"""Table.batch_get / batch_put / batch_write: the one BatchGetItem / BatchWriteItem loop of
the store. Chunks of 100 keys / 25 writes, the unprocessed part asked again with the
UNPROCESSED backoff, IncompleteBatch (never an endless loop) when DynamoDB keeps leaving
some; and against moto, items go in and come back as plain values."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from chalicelib.store.dynamo import UNPROCESSED, IncompleteBatch, Table, ser


class _Stub:
    """A DynamoDB client holding items in a dict, which leaves unprocessed whatever
    `leave(call number, requests)` picks of each batch request (as DynamoDB does when a
    partition throttles)."""

    def __init__(self, name: str, leave: Callable[[int, list[Any]], list[Any]] = lambda n, reqs: []) -> None:
        self.name, self.leave = name, leave
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.gets: list[list[dict[str, Any]]] = []  # the keys of each BatchGetItem
        self.writes: list[list[dict[str, Any]]] = []  # the requests of each BatchWriteItem

    @staticmethod
    def _key(attrs: dict[str, Any]) -> tuple[str, str]:
        return attrs["PK"]["S"], attrs["SK"]["S"]

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        spec = RequestItems[self.name]
        keys = spec["Keys"]
        assert len(keys) <= 100 and len({self._key(k) for k in keys}) == len(keys)
        self.gets.append(keys)
        left = self.leave(len(self.gets), keys)
        found = [self.items[self._key(k)] for k in keys if k not in left and self._key(k) in self.items]
        return {"Responses": {self.name: found},
                "UnprocessedKeys": {self.name: {**spec, "Keys": left}} if left else {}}

    def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        reqs = RequestItems[self.name]
        assert len(reqs) <= 25
        self.writes.append(reqs)
        left = self.leave(len(self.writes), reqs)
        for r in reqs:
            if r in left:
                continue
            if "PutRequest" in r:
                self.items[self._key(r["PutRequest"]["Item"])] = r["PutRequest"]["Item"]
            else:
                self.items.pop(self._key(r["DeleteRequest"]["Key"]), None)
        return {"UnprocessedItems": {self.name: left} if left else {}}


class _StubTable(Table):
    def __init__(self, stub: _Stub) -> None:
        super().__init__(stub.name)
        self.stub = stub

    @property
    def client(self) -> Any:
        return self.stub


def _items(n: int) -> list[dict[str, Any]]:
    return [{"PK": "P", "SK": f"S#{i:04d}", "n": i, "share": 0.5} for i in range(n)]


def _keys(items: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"PK": i["PK"], "SK": i["SK"]} for i in items]


def test_batch_put_and_get_go_100_keys_and_25_writes_a_request() -> None:
    # GIVEN a table and 260 items
    table = _StubTable(_Stub("t"))
    items = _items(260)

    # WHEN they are put, then read back (asking some keys twice)
    table.batch_put(items)
    got = table.batch_get(_keys(items) + _keys(items[:30]))

    # THEN the writes went 25 a request, the reads 100 keys a request, each key once
    assert [len(w) for w in table.stub.writes] == [25] * 10 + [10]
    assert [len(g) for g in table.stub.gets] == [100, 100, 60]
    # AND every item came back, as plain values
    assert sorted(got, key=lambda i: i["SK"]) == items


def test_unprocessed_keys_and_items_are_asked_again_with_the_backoff() -> None:
    # GIVEN DynamoDB leaves every other key / write of the first request unprocessed
    stub = _Stub("t", leave=lambda n, reqs: reqs[1::2] if n == 1 else [])
    table, waits = _StubTable(stub), []
    items = _items(20)

    # WHEN 20 items are put
    table.batch_put(items, sleep=waits.append)

    # THEN the second request carried exactly the 10 left, after one paced wait
    assert [len(w) for w in stub.writes] == [20, 10]
    assert stub.writes[1] == stub.writes[0][1::2]
    assert len(waits) == 1 and UNPROCESSED.base * 0.5 <= waits[0] <= UNPROCESSED.base
    assert len(stub.items) == 20

    # WHEN they are read back with the same throttling
    stub.gets, waits[:] = [], []
    stub.leave = lambda n, reqs: reqs[1::2] if n == 1 else []
    got = table.batch_get(_keys(items), consistent=True, sleep=waits.append)

    # THEN the left keys were asked again (same options), and every item came back
    assert [len(g) for g in stub.gets] == [20, 10]
    assert stub.gets[1] == stub.gets[0][1::2]
    assert len(waits) == 1
    assert sorted(got, key=lambda i: i["SK"]) == items


def test_a_persistent_unprocessed_part_surfaces_as_incomplete_batch_not_a_loop() -> None:
    # GIVEN DynamoDB always leaves the last key / write unprocessed
    stub = _Stub("t", leave=lambda n, reqs: reqs[-1:])
    table, waits = _StubTable(stub), []

    # WHEN 5 items are put
    with pytest.raises(IncompleteBatch, match="1 of 5 writes"):
        table.batch_put(_items(5), sleep=waits.append)

    # THEN it tried exactly UNPROCESSED.attempts times, waiting growing (capped) delays
    # between them (none after the last: nothing follows it)
    assert len(stub.writes) == UNPROCESSED.attempts == len(waits) + 1
    assert [len(w) for w in stub.writes] == [5] + [1] * (UNPROCESSED.attempts - 1)
    caps = [min(UNPROCESSED.cap, UNPROCESSED.base * 2 ** n) for n in range(UNPROCESSED.attempts - 1)]
    assert all(c / 2 <= w <= c for w, c in zip(waits, caps, strict=True))
    # AND the four it could write are written (a replay puts them again, harmlessly)
    assert len(stub.items) == 4

    # AND a read that keeps leaving a key fails the same way
    with pytest.raises(IncompleteBatch, match="1 of 4 keys"):
        table.batch_get(_keys(_items(4)), sleep=lambda s: None)
    assert len(stub.gets) == UNPROCESSED.attempts


def test_nothing_to_do_makes_no_request() -> None:
    table = _StubTable(_Stub("t"))
    assert table.batch_get([]) == []
    table.batch_put([])
    assert table.stub.gets == [] and table.stub.writes == []
    # Positive control: one key is one request
    table.batch_get([{"PK": "P", "SK": "S"}])
    assert len(table.stub.gets) == 1


@pytest.fixture(scope="module")
def table(aws_endpoint: str) -> Iterator[Table]:
    from tests.tables import clone

    fresh = Table(clone(Table()))
    yield fresh
    fresh.client.delete_table(TableName=fresh.name)


def test_against_dynamodb_items_round_trip_with_projection_and_deletes(table: Table) -> None:
    # GIVEN 130 items put in one call (6 requests)
    pk = f"B#{uuid.uuid4().hex[:8]}"
    items = [{"PK": pk, "SK": f"S#{i:04d}", "n": i, "share": 0.25, "tags": ["a", "b"]} for i in range(130)]
    table.batch_put(items)

    # WHEN they are read back, whole and projected, with a key that does not exist
    keys = [{"PK": pk, "SK": i["SK"]} for i in items]
    whole = table.batch_get([*keys, {"PK": pk, "SK": "missing"}], consistent=True)
    some = table.batch_get(keys[:3], attributes=("SK", "n"))

    # THEN every item comes back as written (the missing key is left out), projected ones trimmed
    assert sorted(whole, key=lambda i: i["SK"]) == items
    assert sorted(some, key=lambda i: i["SK"]) == [{"SK": i["SK"], "n": i["n"]} for i in items[:3]]

    # WHEN raw delete requests are written for half of them
    table.batch_write([{"DeleteRequest": {"Key": ser(k)}} for k in keys[::2]])

    # THEN only the other half is left
    left = table.batch_get(keys, consistent=True)
    assert sorted(i["SK"] for i in left) == [k["SK"] for k in keys[1::2]]
