"""DynamoDB, shared by every repository: the codec, the table, the transaction and paging.

The repositories live one module per aggregate (accounts, authorizations, jobs, runs, ...),
each adding its writes to a `Transaction` where a change spans items. Every write that
protects an invariant is conditional or transactional; nothing reads-then-writes.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic, TypeVar

from chalicelib.config import settings
from chalicelib.domain.errors import not_found, stale_version
from chalicelib.store import aws
from chalicelib.store import keys as K

T = TypeVar("T")
W = TypeVar("W")

CONDITION_FAILED = "ConditionalCheckFailed"  # a cancellation reason: that write's condition refused
CONFLICT = "TransactionConflict"  # a cancellation reason: another transaction held the item


class ConditionFailed(Exception):
    """DynamoDB refused a conditional write. `old` is the item as it stood, when the request
    asked for it (ReturnValuesOnConditionCheckFailure=ALL_OLD) and it existed."""

    def __init__(self, old: dict[str, Any] | None = None) -> None:
        super().__init__("the write's condition was not met")
        self.old = old


def conditional(call: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Make one conditional request. The only place ConditionalCheckFailedException is
    recognised: it becomes ConditionFailed, which each repository turns into its answer."""
    from botocore.exceptions import ClientError

    try:
        return call(*args, **kwargs)
    except ClientError as exc:
        if error_code(exc) != f"{CONDITION_FAILED}Exception":
            raise
        old = exc.response.get("Item")  # type: ignore[union-attr]
        raise ConditionFailed(deser(old) if old else None) from None


class TransactionFailed(Exception):
    """A transaction was cancelled. `reasons` holds one code per write ("None" = fine) and,
    for a `Transaction`, `names` the name each write was added under."""

    def __init__(self, reasons: list[str], names: list[str] | None = None) -> None:
        self.names = list(names or [])
        self.reasons = reasons + ["None"] * (len(self.names) - len(reasons))
        super().__init__(", ".join(f"{n}: {r}" for n, r in zip(self.names, self.reasons, strict=False)
                                   if r != "None") if self.names else ", ".join(reasons))

    @property
    def refused(self) -> list[str]:
        """The names of the writes whose condition refused, in the order they were added."""
        return [n for n, r in zip(self.names, self.reasons, strict=False) if r == CONDITION_FAILED]

    @property
    def conflict(self) -> bool:
        """Another transaction held one of the items: the same writes may succeed again."""
        return CONFLICT in self.reasons


def _decimals(value: Any) -> Any:
    # DynamoDB numbers are decimals; floats (costs, durations) go through their str form.
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _decimals(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decimals(v) for v in value]
    return value


def to_attr(value: Any) -> Any:
    """One plain value as a DynamoDB attribute value."""
    from boto3.dynamodb.types import TypeSerializer

    return TypeSerializer().serialize(_decimals(value))


def ser(item: dict[str, Any]) -> dict[str, Any]:
    """A plain item as DynamoDB attributes; None values are left out."""
    return {k: to_attr(v) for k, v in item.items() if v is not None}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def deser(item: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB attributes as a plain item (whole numbers as int, others as float)."""
    from boto3.dynamodb.types import TypeDeserializer

    d = TypeDeserializer()
    return {k: _plain(d.deserialize(v)) for k, v in item.items()}


def error_code(exc: Exception) -> str:
    """The AWS error code of a botocore ClientError ("" for anything else)."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


@dataclass(frozen=True)
class Backoff:
    """How a store loop paces its attempts: `base` doubling per attempt, at most `cap`,
    jittered (so that loops that collided do not collide again)."""

    attempts: int
    base: float = 0.05
    cap: float = 2.0
    jitter: bool = True

    def delay(self, attempt: int) -> float:
        wait = min(self.cap, self.base * 2**attempt)
        return wait * random.uniform(0.5, 1.0) if self.jitter else wait


# botocore's own retry configuration (store/aws.py) already covers throttling and
# transient errors; these cover what it cannot see: items a batch request left unprocessed
# and transactions cancelled by a concurrent one.
UNPROCESSED = Backoff(attempts=8)
CONTENDED = Backoff(attempts=5)


def attempts(policy: Backoff, *, sleep: Callable[[float], None] = time.sleep) -> Iterator[int]:
    """The attempt numbers of a retry loop: `break` once done; an attempt that does not
    break is followed by the policy's wait, but the last (nothing follows it). All spent,
    the loop's `else` runs."""
    for attempt in range(policy.attempts):
        yield attempt
        if attempt + 1 < policy.attempts:
            sleep(policy.delay(attempt))


class IncompleteBatch(RuntimeError):
    """DynamoDB kept keys or items unprocessed after every retry. Replaying the step is safe."""


MAX_BATCH_GET = 100  # keys one BatchGetItem may ask for
MAX_BATCH_WRITE = 25  # writes one BatchWriteItem may carry


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    size = max(1, size)
    for start in range(0, len(items), size):
        yield items[start:start + size]


class Table:
    """The table and the few primitive calls the repositories need."""

    def __init__(self, name: str | None = None, *, setting: str = "table_name") -> None:
        self._name = name
        self._setting = setting  # which configured table, read lazily

    @property
    def name(self) -> str:
        return self._name or str(getattr(settings(), self._setting))

    @property
    def client(self) -> Any:
        return aws.client("dynamodb")

    def get(self, pk: str, sk: str, *, consistent: bool = False) -> dict[str, Any] | None:
        resp = self.client.get_item(
            TableName=self.name,
            Key={"PK": {"S": pk}, "SK": {"S": sk}},
            ConsistentRead=consistent,
        )
        item = resp.get("Item")
        return deser(item) if item else None

    def put(self, item: dict[str, Any], *, condition: str | None = None) -> None:
        kwargs: dict[str, Any] = {"TableName": self.name, "Item": ser(item)}
        if condition:
            kwargs["ConditionExpression"] = condition
        self.client.put_item(**kwargs)

    def write(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        """One conditional request on this table (`put_item`, `update_item`, `delete_item`);
        ConditionFailed when its condition refused."""
        resp: dict[str, Any] = conditional(getattr(self.client, operation), TableName=self.name, **kwargs)
        return resp

    def write_if(self, operation: str, **kwargs: Any) -> bool:
        """Like `write`, for writes whose refusal is an ordinary answer: False then."""
        try:
            self.write(operation, **kwargs)
        except ConditionFailed:
            return False
        return True

    def query(
        self,
        *,
        key_condition: str,
        names: dict[str, str],
        values: dict[str, Any],
        index: str | None = None,
        limit: int = 50,
        start_key: dict[str, str] | None = None,
        forward: bool = False,
        filter_expression: str | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, str] | None]:
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "KeyConditionExpression": key_condition,
            "ExpressionAttributeValues": {k: to_attr(v) for k, v in values.items()},
            "Limit": limit,
            "ScanIndexForward": forward,
        }
        if names:  # DynamoDB refuses an empty map
            kwargs["ExpressionAttributeNames"] = names
        if index:
            kwargs["IndexName"] = index
        if start_key:
            kwargs["ExclusiveStartKey"] = {k: {"S": v} for k, v in start_key.items()}
        if filter_expression:
            kwargs["FilterExpression"] = filter_expression
        resp = self.client.query(**kwargs)
        last = resp.get("LastEvaluatedKey")
        return [deser(i) for i in resp.get("Items", [])], (
            {k: v["S"] for k, v in last.items()} if last else None
        )

    def batch_get(self, keys: Sequence[Mapping[str, Any]], *, consistent: bool = False,
                  attributes: Sequence[str] = (), per_request: int = MAX_BATCH_GET,
                  sleep: Callable[[float], None] = time.sleep,
                  send: Callable[..., dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """The items that exist among `keys` (plain key values; repeats asked once), in any
        order, as plain items: BatchGetItem, `per_request` (at most 100) keys a request. Keys
        DynamoDB leaves unprocessed are asked again, paced by UNPROCESSED; any still left
        then raise IncompleteBatch. `attributes` projects; `send` replaces the client call
        (a repository counting its consumed capacity)."""
        request = send or self.client.batch_get_item
        spec: dict[str, Any] = {"ConsistentRead": consistent}
        if attributes:
            names = {f"#a{n}": a for n, a in enumerate(attributes)}
            spec |= {"ProjectionExpression": ", ".join(names), "ExpressionAttributeNames": names}
        wanted = list({tuple(sorted((k, str(v)) for k, v in key.items())): key for key in keys}.values())
        out: list[dict[str, Any]] = []
        for chunk in _chunks(wanted, min(per_request, MAX_BATCH_GET)):
            pending: dict[str, Any] = {self.name: {**spec, "Keys": [ser(dict(k)) for k in chunk]}}
            for _ in attempts(UNPROCESSED, sleep=sleep):
                resp = request(RequestItems=pending)
                out += [deser(i) for i in resp.get("Responses", {}).get(self.name, [])]
                pending = resp.get("UnprocessedKeys") or {}
                if not pending:
                    break
            else:
                left = len(pending[self.name]["Keys"])
                raise IncompleteBatch(f"DynamoDB left {left} of {len(chunk)} keys unread after "
                                      f"{UNPROCESSED.attempts} attempts; retry")
        return out

    def batch_put(self, items: Sequence[Mapping[str, Any]], *, per_request: int = MAX_BATCH_WRITE,
                  sleep: Callable[[float], None] = time.sleep,
                  send: Callable[..., dict[str, Any]] | None = None) -> None:
        """Put plain items, unconditionally: BatchWriteItem, `per_request` (at most 25) a
        request; items left unprocessed are sent again, paced by UNPROCESSED, and any still
        left then raise IncompleteBatch (some of the items may be written: put again)."""
        self.batch_write([{"PutRequest": {"Item": ser(dict(i))}} for i in items],
                         per_request=per_request, sleep=sleep, send=send)

    def batch_write(self, requests: Sequence[dict[str, Any]], *, per_request: int = MAX_BATCH_WRITE,
                    sleep: Callable[[float], None] = time.sleep,
                    send: Callable[..., dict[str, Any]] | None = None) -> None:
        """BatchWriteItem of raw write requests ({"PutRequest": ...} / {"DeleteRequest": ...}),
        like `batch_put`."""
        request = send or self.client.batch_write_item
        for chunk in _chunks(list(requests), min(per_request, MAX_BATCH_WRITE)):
            pending: dict[str, Any] = {self.name: chunk}
            for _ in attempts(UNPROCESSED, sleep=sleep):
                pending = request(RequestItems=pending).get("UnprocessedItems") or {}
                if not pending:
                    break
            else:
                raise IncompleteBatch(f"DynamoDB left {len(pending[self.name])} of {len(chunk)} writes "
                                      f"unprocessed after {UNPROCESSED.attempts} attempts; retry")

    def sweep_page(self, kind: str, shard: int, start: dict[str, Any] | None, *, limit: int = 100,
                   ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """One Query of one partition (`<kind>#<shard>`) of the sparse sweep index: its items'
        keys (raw attribute values) and where the next page starts, if anywhere."""
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "IndexName": K.GSI2,
            "KeyConditionExpression": "GSI2PK = :pk",
            "ExpressionAttributeValues": {":pk": {"S": f"{kind}#{shard}"}},
            "Limit": limit,
        }
        if start:
            kwargs["ExclusiveStartKey"] = start
        resp = self.client.query(**kwargs)
        return list(resp.get("Items", [])), resp.get("LastEvaluatedKey")

    def transact(self, items: list[dict[str, Any]]) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise
            reasons = [
                str(r.get("Code") or "None")
                for r in exc.response.get("CancellationReasons", [])  # type: ignore[union-attr]
            ]
            raise TransactionFailed(reasons) from None


class NamedWrites(Generic[W]):
    """Writes kept under names unique in their unit, in the order added, committed once:
    the bookkeeping of a transaction, whatever its writes are made of."""

    def __init__(self) -> None:
        self._writes: dict[str, W] = {}  # in the order added
        self.committed = False

    def add(self, name: str, write: W) -> None:
        self.ensure_open()
        if name in self._writes:
            raise ValueError(f"a write named {name!r} is in the transaction already")
        self._writes[name] = write

    def drop(self, name: str) -> None:
        del self._writes[name]

    def numbered(self, prefix: str) -> str:
        """The first free name `prefix0`, `prefix1`, ... (writes of which there are several)."""
        n = sum(1 for name in self._writes if name.startswith(prefix))
        while f"{prefix}{n}" in self._writes:
            n += 1
        return f"{prefix}{n}"

    @property
    def names(self) -> list[str]:
        return list(self._writes)

    @property
    def writes(self) -> list[W]:
        return list(self._writes.values())

    def __contains__(self, name: object) -> bool:
        return name in self._writes

    def __len__(self) -> int:
        return len(self._writes)

    def ensure_open(self) -> None:
        """Raise if the unit was committed: a unit commits once."""
        if self.committed:
            raise RuntimeError("the transaction was committed already")


class Transaction(NamedWrites[dict[str, Any]]):
    """Writes that commit together, once, as one TransactWriteItems. Repositories add their
    writes under a name unique in the transaction (`add` takes a raw TransactWriteItems
    element: {"Put": ...}, {"Update": ...}, ...); a cancelled commit raises
    TransactionFailed whose `refused` lists the names whose condition refused."""

    def __init__(self, table: Table) -> None:
        super().__init__()
        self.table = table

    def put(self, name: str, item: dict[str, Any], *, condition: str | None = None) -> None:
        """A plain item for this transaction's table."""
        put: dict[str, Any] = {"TableName": self.table.name, "Item": ser(item)}
        if condition:
            put["ConditionExpression"] = condition
        self.add(name, {"Put": put})

    def commit(self) -> None:
        self.ensure_open()
        if len(self):
            names = self.names
            try:
                self.table.transact(self.writes)
            except TransactionFailed as exc:
                raise TransactionFailed(exc.reasons, names) from None
        self.committed = True


MAX_READS = 5  # Queries one filtered listing request may spend
FILTER_BATCH = 100  # items per Query when filtering in memory


@dataclass
class Page:
    items: list[Any]
    next_cursor: str | None


def paged_query(
    table: Table,
    *,
    key_condition: str,
    names: dict[str, str],
    values: dict[str, Any],
    key_names: tuple[str, ...],
    expect: dict[str, str],
    sk_prefix: str,
    limit: int,
    cursor: str | None,
    convert: Callable[[dict[str, Any]], Any],
    keep: Callable[[Any], bool] | None = None,
    index: str | None = None,
) -> Page:
    """Newest-first pages of one item collection, with optional in-memory filtering.

    Unfiltered, one page is one Query. With a filter we read on until the page is full,
    but at most MAX_READS Queries per request: a rare match among many items then yields
    a short (even empty) page whose cursor continues after the last item *read*, so the
    cost of one request stays bounded and nothing is skipped.
    """
    start = (
        K.decode_cursor(cursor, expect=expect, key_names=key_names, sk_prefix=sk_prefix)
        if cursor
        else None
    )
    out: list[tuple[dict[str, Any], Any]] = []
    reads = 0
    last_read: dict[str, Any] | None = None
    more = True
    while more and len(out) < limit and reads < MAX_READS:
        rows, last = table.query(
            key_condition=key_condition,
            names=names,
            values=values,
            index=index,
            # One extra item tells whether another page exists, without an empty last page.
            limit=limit + 1 if keep is None else max(limit + 1, FILTER_BATCH),
            start_key=start,
        )
        reads += 1
        for row in rows:
            last_read = row
            obj = convert(row)
            if keep is None or keep(obj):
                out.append((row, obj))
                if len(out) == limit:
                    break
        more = last is not None or (bool(rows) and last_read is not rows[-1])
        start = last
    page = out[:limit]
    next_cursor = None
    if more:
        # Full page: continue after its last item. Short page (read cap): after the last read.
        anchor = page[-1][0] if len(page) == limit else last_read
        if anchor is not None:
            next_cursor = K.encode_cursor({k: anchor[k] for k in key_names})
    return Page(items=[obj for _, obj in page], next_cursor=next_cursor)


def prefix_page(table: Table, pk: str, prefix: str, *, limit: int, cursor: str | None,
                convert: Callable[[dict[str, Any]], Any], keep: Callable[[Any], bool] | None = None,
                ) -> Page:
    """Newest-first pages of the items of `pk` whose SK starts with `prefix`."""
    return paged_query(
        table,
        key_condition="PK = :pk AND begins_with(SK, :p)",
        names={},
        values={":pk": pk, ":p": prefix},
        key_names=("PK", "SK"),
        expect={"PK": pk},
        sk_prefix=prefix,
        limit=limit,
        cursor=cursor,
        convert=convert,
        keep=keep,
    )


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def update_versioned(table: Table, key: dict[str, Any], *, kind: str, ident: str, version: int | None,
                     **kwargs: Any) -> dict[str, Any]:
    """An UpdateItem conditional on the item existing (and on its version): a refusal
    becomes the domain's answer, 404 when the item is gone, else 409 stale. The new item."""
    try:
        resp = table.write("update_item", Key=key, ReturnValues="ALL_NEW",
                           ReturnValuesOnConditionCheckFailure="ALL_OLD", **kwargs)
    except ConditionFailed as refused:
        if not refused.old:
            raise not_found(kind, ident) from None
        raise stale_version(kind, version) from None
    return deser(resp["Attributes"])


__all__ = [
    "CONDITION_FAILED",
    "CONTENDED",
    "MAX_BATCH_GET",
    "MAX_BATCH_WRITE",
    "UNPROCESSED",
    "Backoff",
    "ConditionFailed",
    "IncompleteBatch",
    "NamedWrites",
    "Page",
    "Table",
    "Transaction",
    "TransactionFailed",
    "attempts",
    "conditional",
    "deser",
    "error_code",
    "now_iso",
    "paged_query",
    "prefix_page",
    "ser",
    "to_attr",
    "update_versioned",
]
