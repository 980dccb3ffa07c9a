"""DynamoDB access: the single table, its items, and the conditional writes that guard rules.

Only this module (with its siblings in store/) talks to DynamoDB. Every write that
protects an invariant is conditional or transactional; nothing reads-then-writes.
"""

from __future__ import annotations

import json
import time
import uuid
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from chalicelib.config import settings
from chalicelib.domain.access import Role
from chalicelib.domain.catalog import JobType
from chalicelib.domain.errors import Conflict, Invalid, NotFound, not_found, stale_version
from chalicelib.domain.models import (
    Account,
    Authorization,
    Health,
    HealthStatus,
    Job,
    Token,
    User,
    empty_usage,
)
from chalicelib.domain.statuses import PURGE_AFTER_DAYS, PURGEABLE_STATUSES, JobStatus
from chalicelib.store import aws
from chalicelib.store import keys as K

CONDITION_FAILED = "ConditionalCheckFailed"  # a cancellation reason: that write's condition refused
CONFLICT = "TransactionConflict"  # a cancellation reason: another transaction held the item


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


def _to_attr(value: Any) -> Any:
    from boto3.dynamodb.types import TypeSerializer

    return TypeSerializer().serialize(_decimals(value))


def _ser(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _to_attr(v) for k, v in item.items() if v is not None}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _deser(item: dict[str, Any]) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeDeserializer

    d = TypeDeserializer()
    return {k: _plain(d.deserialize(v)) for k, v in item.items()}


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


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
        return _deser(item) if item else None

    def put(self, item: dict[str, Any], *, condition: str | None = None) -> None:
        kwargs: dict[str, Any] = {"TableName": self.name, "Item": _ser(item)}
        if condition:
            kwargs["ConditionExpression"] = condition
        self.client.put_item(**kwargs)

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
            "ExpressionAttributeValues": {k: _to_attr(v) for k, v in values.items()},
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
        return [_deser(i) for i in resp.get("Items", [])], (
            {k: v["S"] for k, v in last.items()} if last else None
        )

    def transact(self, items: list[dict[str, Any]]) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if _error_code(exc) != "TransactionCanceledException":
                raise
            reasons = [
                str(r.get("Code") or "None")
                for r in exc.response.get("CancellationReasons", [])  # type: ignore[union-attr]
            ]
            raise TransactionFailed(reasons) from None


class Transaction:
    """Writes that commit together, once, as one TransactWriteItems. Repositories add their
    writes under a name unique in the transaction; a cancelled commit raises
    TransactionFailed whose `refused` lists the names whose condition refused."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._writes: dict[str, dict[str, Any]] = {}  # in the order added
        self.committed = False

    def add(self, name: str, write: dict[str, Any]) -> None:
        """A raw TransactWriteItems element ({"Put": ...}, {"Update": ...}, ...)."""
        if self.committed:
            raise RuntimeError("the transaction was committed already")
        if name in self._writes:
            raise ValueError(f"a write named {name!r} is in the transaction already")
        self._writes[name] = write

    def put(self, name: str, item: dict[str, Any], *, condition: str | None = None) -> None:
        """A plain item for this transaction's table."""
        put: dict[str, Any] = {"TableName": self.table.name, "Item": _ser(item)}
        if condition:
            put["ConditionExpression"] = condition
        self.add(name, {"Put": put})

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

    def __contains__(self, name: object) -> bool:
        return name in self._writes

    def __len__(self) -> int:
        return len(self._writes)

    def commit(self) -> None:
        if self.committed:
            raise RuntimeError("the transaction was committed already")
        if self._writes:
            names = list(self._writes)
            try:
                self.table.transact(list(self._writes.values()))
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
                convert: Callable[[dict[str, Any]], Any]) -> Page:
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
    )


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ---------------------------------------------------------------------------------------
# Accounts, users, tokens


class AccountRepo:
    def __init__(self, table: Table) -> None:
        self.t = table

    def create_account(self, account: Account, admin: User, token: Token) -> None:
        """Account, first admin and first token together: never an account nobody can reach."""
        tx = Transaction(self.t)
        tx.put("account", {
            "PK": K.account_pk(account.id),
            "SK": K.ACCOUNT_SK,
            "type": "account",
            "id": account.id,
            "name": account.name,
            "created_at": account.created_at,
        }, condition="attribute_not_exists(PK)")
        tx.put("admin", self._user_item(admin))
        tx.put("token", self._token_item(token), condition="attribute_not_exists(PK)")
        tx.commit()

    def get_account(self, account_id: str) -> Account | None:
        row = self.t.get(K.account_pk(account_id), K.ACCOUNT_SK)
        if not row:
            return None
        return Account(id=row["id"], name=row["name"], created_at=row["created_at"])

    @staticmethod
    def _user_item(user: User) -> dict[str, Any]:
        return {
            "PK": K.account_pk(user.account_id),
            "SK": K.user_sk(user.id),
            "type": "user",
            "id": user.id,
            "account_id": user.account_id,
            "email": user.email,
            "name": user.name,
            "role": user.role.value,
            "created_at": user.created_at,
        }

    @staticmethod
    def _user(row: dict[str, Any]) -> User:
        return User(
            id=row["id"],
            account_id=row["account_id"],
            email=row["email"],
            name=row["name"],
            role=Role(row["role"]),
            created_at=row["created_at"],
        )

    def create_user(self, user: User) -> None:
        self.t.put(self._user_item(user), condition="attribute_not_exists(PK)")

    def get_user(self, account_id: str, user_id: str) -> User | None:
        row = self.t.get(K.account_pk(account_id), K.user_sk(user_id))
        return self._user(row) if row else None

    def list_users(self, account_id: str, limit: int, cursor: str | None) -> Page:
        return paged_query(
            self.t,
            key_condition="PK = :pk AND begins_with(SK, :p)",
            names={},
            values={":pk": K.account_pk(account_id), ":p": "USER#"},
            key_names=("PK", "SK"),
            expect={"PK": K.account_pk(account_id)},
            sk_prefix="USER#",
            limit=limit,
            cursor=cursor,
            convert=self._user,
        )

    @staticmethod
    def _token(row: dict[str, Any]) -> Token:
        return Token(
            id=row["id"],
            account_id=row["account_id"],
            user_id=row["user_id"],
            role=Role(row["role"]),
            label=row["label"],
            token_hash=row["token_hash"],
            created_at=row["created_at"],
            last4=row["last4"],
        )

    @staticmethod
    def _token_item(token: Token) -> dict[str, Any]:
        return {
            "PK": K.token_pk(token.id),
            "SK": K.ACCOUNT_SK,
            "GSI1PK": K.account_tokens_gsi(token.account_id),
            "GSI1SK": f"TOKEN#{token.id}",
            "type": "token",
            "id": token.id,
            "account_id": token.account_id,
            "user_id": token.user_id,
            "role": token.role.value,
            "label": token.label,
            "token_hash": token.token_hash,
            "created_at": token.created_at,
            "last4": token.last4,
        }

    def put_token(self, token: Token) -> None:
        self.t.put(self._token_item(token), condition="attribute_not_exists(PK)")

    def get_token(self, token_id: str) -> Token | None:
        row = self.t.get(K.token_pk(token_id), K.ACCOUNT_SK)
        return self._token(row) if row else None

    def list_tokens(self, account_id: str, limit: int, cursor: str | None) -> Page:
        gpk = K.account_tokens_gsi(account_id)
        return paged_query(
            self.t,
            index=K.GSI1,
            key_condition="GSI1PK = :g",
            names={},
            values={":g": gpk},
            key_names=("PK", "SK", "GSI1PK", "GSI1SK"),
            expect={"GSI1PK": gpk},
            sk_prefix="META",
            limit=limit,
            cursor=cursor,
            convert=self._token,
        )

    def delete_token(self, account_id: str, token_id: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self.t.client.delete_item(
                TableName=self.t.name,
                Key={"PK": {"S": K.token_pk(token_id)}, "SK": {"S": K.ACCOUNT_SK}},
                # Scoped to the caller's account: another account's token is "not found".
                ConditionExpression="account_id = :a",
                ExpressionAttributeValues={":a": {"S": account_id}},
            )
        except ClientError as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                raise not_found("token", token_id) from None
            raise


# ---------------------------------------------------------------------------------------
# Authorizations


HEALTH_SHARDS = 16
HEALTH_PREFIX = "HEALTH#"  # SK prefix of health transitions: HEALTH#<auth>#<at>#<rand>


def new_transition_id() -> str:
    """A state change's id: its time to the microsecond (one reading: it orders transitions
    within a second) and a random tail. Alerts carry it; the alerts worker delivers one per id."""
    ns = time.time_ns()
    moment = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns / 1e9))
    return f"{moment}.{ns // 1000 % 10**6:06d}Z#{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class PendingHealthAlert:
    """A health transition whose alert is not known to have left (services/health.py)."""

    transition_id: str
    from_status: HealthStatus
    to_status: HealthStatus
    reason: str | None


@dataclass(frozen=True)
class HealthRecorded:
    changed: bool
    pending: PendingHealthAlert | None  # an alert to send now: this change's, or an earlier one's


def _pending_alert(row: dict[str, Any]) -> PendingHealthAlert | None:
    found = row.get("health_alert")
    if not isinstance(found, dict) or not found.get("transition_id"):
        return None
    return PendingHealthAlert(str(found["transition_id"]), HealthStatus(found["from"]),
                              HealthStatus(found["to"]), found.get("reason"))


def _auth_item(a: Authorization) -> dict[str, Any]:
    return {
        "PK": K.account_pk(a.account_id),
        "SK": K.auth_sk(a.id),
        # Every authorization is in the sweep index, sharded so the daily health sweep
        # reads them with bounded Queries (never a Scan).
        "GSI2PK": f"HEALTH#{zlib.crc32(a.id.encode()) % HEALTH_SHARDS}",
        "GSI2SK": f"{a.account_id}#{a.id}",
        "type": "authorization",
        "id": a.id,
        "account_id": a.account_id,
        "provider": a.provider,
        "method": a.method,
        "label": a.label,
        "description": a.description,
        "owner": a.owner,
        "created_at": a.created_at,
        "updated_at": a.updated_at,
        "secret_name": a.secret_name,
        "health_status": a.health.status.value,
        "health_reason": a.health.reason,
        "health_checked_at": a.health.checked_at,
        "provider_account": a.provider_account,
        "credential_hint": a.credential_hint,
        "last_used_at": a.last_used_at,
        "usage": dict(a.usage),
        "version": a.version,
    }


def _auth(row: dict[str, Any]) -> Authorization:
    usage = empty_usage()
    usage.update({k: int(v) for k, v in (row.get("usage") or {}).items()})
    return Authorization(
        id=row["id"],
        account_id=row["account_id"],
        provider=row["provider"],
        method=row["method"],
        label=row["label"],
        description=row.get("description", ""),
        owner=row["owner"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        secret_name=row["secret_name"],
        health=Health(
            status=HealthStatus(row.get("health_status", "unknown")),
            reason=row.get("health_reason"),
            checked_at=row.get("health_checked_at"),
        ),
        provider_account=row.get("provider_account"),
        credential_hint=row.get("credential_hint"),
        last_used_at=row.get("last_used_at"),
        usage=usage,
        version=int(row.get("version", 1)),
    )


def _guard_update(fn: Callable[[], Any], *, kind: str, ident: str, version: int | None) -> Any:
    """Run a conditional update and turn a failed condition into the domain's answer."""
    from botocore.exceptions import ClientError

    try:
        return fn()
    except ClientError as exc:
        if _error_code(exc) != "ConditionalCheckFailedException":
            raise
        old = exc.response.get("Item")  # type: ignore[union-attr]
        if not old:
            raise not_found(kind, ident) from None
        raise stale_version(kind, version) from None


class AuthorizationRepo:
    def __init__(self, table: Table) -> None:
        self.t = table

    def put_new(self, auth: Authorization) -> None:
        self.t.put(_auth_item(auth), condition="attribute_not_exists(PK)")

    def mark_used(self, account_id: str, auth_id: str, at: str) -> None:
        """`last_used_at` moves forward only (a slower concurrent writer cannot move it
        back), and never recreates a deleted authorization. Does not bump `version`: a
        use is not an edit."""
        from botocore.exceptions import ClientError

        try:
            self.t.client.update_item(
                TableName=self.t.name,
                Key={"PK": {"S": K.account_pk(account_id)}, "SK": {"S": K.auth_sk(auth_id)}},
                UpdateExpression="SET #lu = :at",
                ConditionExpression="attribute_exists(PK) AND (attribute_not_exists(#lu) OR #lu < :at)",
                ExpressionAttributeNames={"#lu": "last_used_at"},
                ExpressionAttributeValues={":at": {"S": at}},
            )
        except ClientError as exc:
            if _error_code(exc) != "ConditionalCheckFailedException":
                raise

    def put_new_op(self, auth: Authorization) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self.t.name,
                "Item": _ser(_auth_item(auth)),
                "ConditionExpression": "attribute_not_exists(PK)",
            }
        }

    def add_new(self, tx: Transaction, auth: Authorization) -> None:
        tx.add("authorization", self.put_new_op(auth))

    def get(self, account_id: str, auth_id: str, *, consistent: bool = False) -> Authorization | None:
        row = self.t.get(K.account_pk(account_id), K.auth_sk(auth_id), consistent=consistent)
        return _auth(row) if row else None

    def page(
        self,
        account_id: str,
        *,
        limit: int,
        cursor: str | None,
        provider: str | None = None,
        health: str | None = None,
    ) -> Page:
        keep = None
        if provider or health:

            def keep(a: Authorization) -> bool:
                return (provider is None or a.provider == provider) and (
                    health is None or a.health.status.value == health
                )

        pk = K.account_pk(account_id)
        return paged_query(
            self.t,
            key_condition="PK = :pk AND begins_with(SK, :p)",
            names={},
            values={":pk": pk, ":p": "AUTH#"},
            key_names=("PK", "SK"),
            expect={"PK": pk},
            sk_prefix="AUTH#",
            limit=limit,
            cursor=cursor,
            convert=_auth,
            keep=keep,
        )

    def update(
        self,
        account_id: str,
        auth_id: str,
        changes: dict[str, Any],
        *,
        expected_version: int | None,
    ) -> Authorization:
        """Set plain attributes, bump the version; conditional on existence (and version)."""
        names = {"#v": "version", "#u": "updated_at"}
        values: dict[str, Any] = {":one": 1, ":now": now_iso()}
        sets = ["#u = :now"]
        for i, (field, value) in enumerate(changes.items()):
            names[f"#f{i}"] = field
            values[f":f{i}"] = value
            sets.append(f"#f{i} = :f{i}")
        condition = "attribute_exists(PK)"
        if expected_version is not None:
            condition += " AND #v = :ev"
            values[":ev"] = expected_version
        resp = _guard_update(
            lambda: self.t.client.update_item(
                TableName=self.t.name,
                Key={"PK": {"S": K.account_pk(account_id)}, "SK": {"S": K.auth_sk(auth_id)}},
                UpdateExpression="SET " + ", ".join(sets) + " ADD #v :one",
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={k: _to_attr(v) for k, v in values.items()},
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            ),
            kind="authorization",
            ident=auth_id,
            version=expected_version,
        )
        return _auth(_deser(resp["Attributes"]))

    def get_many(self, account_id: str, auth_ids: Iterable[str], *,
                 consistent: bool = False) -> dict[str, Authorization]:
        """The account's authorizations among `auth_ids` (BatchGetItem, 100 keys a request)."""
        return self.get_pairs([(account_id, i) for i in auth_ids], consistent=consistent)

    def get_pairs(self, pairs: Iterable[tuple[str, str]], *,
                  consistent: bool = False) -> dict[str, Authorization]:
        """Authorizations by (account_id, auth_id), any accounts (BatchGetItem, 100 keys a
        request); missing ones are left out."""
        ids = list(dict.fromkeys(pairs))
        out: dict[str, Authorization] = {}
        for start in range(0, len(ids), 100):
            pending: dict[str, Any] = {self.t.name: {"ConsistentRead": consistent, "Keys": [
                {"PK": {"S": K.account_pk(a)}, "SK": {"S": K.auth_sk(i)}}
                for a, i in ids[start:start + 100]]}}
            for _attempt in range(5):
                resp = self.t.client.batch_get_item(RequestItems=pending)
                for row in resp.get("Responses", {}).get(self.t.name, []):
                    auth = _auth(_deser(row))
                    out[auth.id] = auth
                pending = resp.get("UnprocessedKeys") or {}
                if not pending:
                    break
                time.sleep(0.05 * 2**_attempt)
        return out

    # -- health -------------------------------------------------------------------------

    def sweep_page(self, shard: int, start: dict[str, Any] | None, *, limit: int = 100,
                   ) -> tuple[list[tuple[str, str]], dict[str, Any] | None]:
        """One page of (account_id, auth_id) of one sweep shard, and where the next starts."""
        kwargs: dict[str, Any] = {
            "TableName": self.t.name,
            "IndexName": K.GSI2,
            "KeyConditionExpression": "GSI2PK = :pk",
            "ExpressionAttributeValues": {":pk": {"S": f"HEALTH#{shard}"}},
            "Limit": limit,
        }
        if start:
            kwargs["ExclusiveStartKey"] = start
        resp = self.t.client.query(**kwargs)
        found = [tuple(i["GSI2SK"]["S"].split("#", 1)) for i in resp.get("Items", [])]
        return [(a, b) for a, b in found], resp.get("LastEvaluatedKey")

    def record_health(self, auth: Authorization, status: HealthStatus, reason: str | None, *,
                      at: str, by: str, provider_account: str | None = None,
                      alert_when: Callable[[HealthStatus, HealthStatus], bool] = lambda prev, new: False,
                      ) -> HealthRecorded:
        """Store a check's verdict; on a change of status also a transition item, in the
        same transaction, conditional on the status it changes from (so two checkers
        never both record one transition). Not a user edit: the version stays.

        A transition that `alert_when(from, to)` leaves its alert pending on the
        authorization (`health_alert`), in the same transaction: a checker that dies before
        the alert left, or whose alert EventBridge refused, leaves it for the next check
        to send (`pending` in the result; `clear_health_alert` once it is out). The newest
        transition replaces an older pending alert."""
        from botocore.exceptions import ClientError

        prev = auth.health.status
        for _ in range(4):
            values: dict[str, Any] = {":s": status.value, ":at": at, ":prev": prev.value}
            sets = ["health_status = :s", "health_checked_at = :at"]
            removes = []
            if reason is not None:
                sets.append("health_reason = :r")
                values[":r"] = reason
            else:
                removes.append("health_reason")
            if provider_account:
                sets.append("provider_account = :pa")
                values[":pa"] = provider_account
            pending: PendingHealthAlert | None = None
            transition: dict[str, Any] | None = None
            if status != prev:
                transition_id = new_transition_id()
                if alert_when(prev, status):
                    pending = PendingHealthAlert(transition_id, prev, status, reason)
                    sets.append("health_alert = :alert")
                    values[":alert"] = {"transition_id": transition_id, "from": prev.value,
                                        "to": status.value, "reason": reason}
                else:
                    removes.append("health_alert")
                transition = {
                    "Put": {
                        "TableName": self.t.name,
                        "Item": _ser({
                            "PK": K.account_pk(auth.account_id),
                            "SK": f"{HEALTH_PREFIX}{auth.id}#{transition_id}",
                            "type": "health_transition",
                            "authorization_id": auth.id,
                            "from": prev.value, "to": status.value, "reason": reason,
                            "at": at, "by": by,
                            "expires_at": int(time.time()) + 400 * 86400,
                        }),
                    }
                }
            update = {
                "Update": {
                    "TableName": self.t.name,
                    "Key": {"PK": {"S": K.account_pk(auth.account_id)}, "SK": {"S": K.auth_sk(auth.id)}},
                    "UpdateExpression": "SET " + ", ".join(sets)
                                        + (" REMOVE " + ", ".join(removes) if removes else ""),
                    "ConditionExpression": "attribute_exists(PK) AND (health_status = :prev"
                                           + (" OR attribute_not_exists(health_status))"
                                              if prev == HealthStatus.UNKNOWN else ")"),
                    "ExpressionAttributeValues": {k: _to_attr(v) for k, v in values.items()},
                }
            }
            try:
                if transition is None:
                    # The daily common case, no change: one conditional UpdateItem (half a
                    # transaction's write cost), same condition. Its answer (no extra cost)
                    # tells whether an earlier transition's alert is still pending.
                    try:
                        resp = self.t.client.update_item(**update["Update"], ReturnValues="ALL_NEW")
                    except ClientError as exc:
                        if _error_code(exc) != "ConditionalCheckFailedException":
                            raise
                        raise TransactionFailed(["ConditionalCheckFailed"]) from None
                    return HealthRecorded(False, _pending_alert(_deser(resp.get("Attributes") or {})))
                tx = Transaction(self.t)
                tx.add("authorization", update)
                tx.add("health_transition", transition)
                tx.commit()
                return HealthRecorded(True, pending)
            except TransactionFailed:
                current = self.get(auth.account_id, auth.id, consistent=True)
                if current is None:
                    raise not_found("authorization", auth.id) from None
                prev = current.health.status  # someone else recorded first: from theirs
        raise Conflict("the authorization's health changed too often at once; retry",
                       code="conflict.concurrent_change")

    def clear_health_alert(self, account_id: str, auth_id: str, transition_id: str) -> None:
        """The pending alert of this transition is out (a newer one is left alone)."""
        from botocore.exceptions import ClientError

        try:
            self.t.client.update_item(
                TableName=self.t.name,
                Key={"PK": {"S": K.account_pk(account_id)}, "SK": {"S": K.auth_sk(auth_id)}},
                UpdateExpression="REMOVE health_alert",
                ConditionExpression="health_alert.transition_id = :t",
                ExpressionAttributeValues={":t": {"S": transition_id}},
            )
        except ClientError as exc:
            if _error_code(exc) != "ConditionalCheckFailedException":
                raise

    def health_history(self, account_id: str, auth_id: str, *, limit: int, cursor: str | None) -> Page:
        return prefix_page(self.t, K.account_pk(account_id), f"{HEALTH_PREFIX}{auth_id}#", limit=limit,
                           cursor=cursor,
                           convert=lambda r: {k: r.get(k) for k in ("at", "from", "to", "reason", "by")})

    def delete_if_unused(self, account_id: str, auth_id: str) -> Authorization:
        """SPEC rule 10, enforced by DynamoDB: the item goes only if no active job counts on it.

        Jobs move these counters in the same transaction as their own status, so a job
        created or resumed concurrently either lands first (and blocks this delete) or
        fails its own condition on the missing authorization.

        A one-item transaction rather than a DeleteItem: botocore sends it with a
        ClientRequestToken, so when the answer is lost after the item went (a timeout on
        the way back) the SDK's retry answers success. A retried DeleteItem would fail its
        condition on the missing item and the caller would read "not found", leaving the
        secret unscheduled and the deletion unaudited. Transactions return no old image:
        the item is read first (its secret name never changes).
        """
        current = self.get(account_id, auth_id, consistent=True)
        if current is None:
            raise not_found("authorization", auth_id)
        op = {
            "Delete": {
                "TableName": self.t.name,
                "Key": {"PK": {"S": K.account_pk(account_id)}, "SK": {"S": K.auth_sk(auth_id)}},
                "ConditionExpression": (
                    "attribute_exists(PK) AND #u.#r = :z AND #u.#s = :z AND #u.#p = :z"
                ),
                "ExpressionAttributeNames": {
                    "#u": "usage",
                    "#r": JobStatus.RUNNING.value,
                    "#s": JobStatus.SLEEPING.value,
                    "#p": JobStatus.PAUSED.value,
                },
                "ExpressionAttributeValues": {":z": {"N": "0"}},
            }
        }
        for attempt in range(5):
            tx = Transaction(self.t)
            tx.add("authorization", op)
            try:
                tx.commit()
                return current
            except TransactionFailed as exc:
                if exc.refused:
                    if self.get(account_id, auth_id, consistent=True) is None:
                        raise not_found("authorization", auth_id) from None
                    raise AuthorizationInUse(auth_id) from None
                if not exc.conflict:
                    raise
                time.sleep(0.05 * 2**attempt)  # a job's transaction on this item right now
        raise Conflict("jobs of this authorization changed at the same time; retry",
                       code="conflict.concurrent_change")


class AuthorizationInUse(Exception):
    def __init__(self, auth_id: str) -> None:
        super().__init__(auth_id)
        self.auth_id = auth_id


# ---------------------------------------------------------------------------------------
# Jobs


PURGE_SHARDS = 8
_clock = time.time  # the purge index's clock (tests move it)


def _purge_keys(j: Job) -> tuple[str | None, str | None]:
    """Paused, failed and completed jobs are listed in the sparse sweep index under the
    time they become due; every write recomputes it ("unless touched"). Not a TTL: the
    purge must move the authorization's and audience's counters like a user's delete."""
    if j.status not in PURGEABLE_STATUSES:
        return None, None
    due = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(_clock() + PURGE_AFTER_DAYS * 86400))
    shard = zlib.crc32(j.id.encode()) % PURGE_SHARDS
    return f"PURGE#{shard}", f"{due}#{j.account_id}#{j.id}"


def _job_item(j: Job) -> dict[str, Any]:
    purge = _purge_keys(j)
    return {
        "PK": K.account_pk(j.account_id),
        "SK": K.job_sk(j.id),
        "GSI1PK": K.auth_jobs_gsi(j.account_id, j.authorization_id),
        "GSI1SK": K.job_sk(j.id),
        "type": "job",
        "id": j.id,
        "account_id": j.account_id,
        "provider": j.provider,
        "job_type": j.job_type.value,
        "workflow": j.workflow,
        "authorization_id": j.authorization_id,
        "authorization_label": j.authorization_label,
        "label": j.label,
        "description": j.description,
        # Free-form documents are stored as JSON text: no float/Decimal round trips.
        "config_json": json.dumps(j.config, sort_keys=True),
        "schedule_json": json.dumps(j.schedule) if j.schedule is not None else None,
        "status": j.status.value,
        "owner": j.owner,
        "created_at": j.created_at,
        "updated_at": j.updated_at,
        "provider_account": j.provider_account,
        "fault_count": j.fault_count,
        "next_run_at": j.next_run_at,
        "last_run_json": json.dumps(j.last_run) if j.last_run is not None else None,
        "version": j.version,
        "GSI2PK": purge[0],
        "GSI2SK": purge[1],
        "current_run_id": j.current_run_id,
        "state_json": json.dumps(j.state, sort_keys=True) if j.state else None,
        "failure_window_hours": Decimal(str(j.failure_window_hours)),
        "first_fault_at": j.first_fault_at,
        "pending_alert": j.pending_alert,
    }


def _job(row: dict[str, Any]) -> Job:
    return Job(
        id=row["id"],
        account_id=row["account_id"],
        provider=row["provider"],
        job_type=JobType(row["job_type"]),
        workflow=row["workflow"],
        authorization_id=row["authorization_id"],
        authorization_label=row.get("authorization_label", ""),
        label=row["label"],
        description=row.get("description", ""),
        config=json.loads(row.get("config_json") or "{}"),
        schedule=json.loads(row["schedule_json"]) if row.get("schedule_json") else None,
        status=JobStatus(row["status"]),
        owner=row["owner"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        provider_account=row.get("provider_account"),
        fault_count=int(row.get("fault_count", 0)),
        next_run_at=row.get("next_run_at"),
        last_run=json.loads(row["last_run_json"]) if row.get("last_run_json") else None,
        version=int(row.get("version", 1)),
        current_run_id=row.get("current_run_id"),
        state=json.loads(row["state_json"]) if row.get("state_json") else {},
        failure_window_hours=float(row.get("failure_window_hours", 10)),
        first_fault_at=row.get("first_fault_at"),
        pending_alert=row.get("pending_alert") or None,
    )


@dataclass(frozen=True)
class UsageMove:
    """Move one job's weight in an authorization's usage counters."""

    auth_id: str
    leave: JobStatus | None  # counter to decrement
    enter: JobStatus | None  # counter to increment
    provider: str | None = None  # when set, the authorization must be of this provider


class JobRepo:
    def __init__(self, table: Table) -> None:
        self.t = table

    def get(self, account_id: str, job_id: str, *, consistent: bool = False) -> Job | None:
        row = self.t.get(K.account_pk(account_id), K.job_sk(job_id), consistent=consistent)
        return _job(row) if row else None

    def page(
        self,
        account_id: str,
        *,
        limit: int,
        cursor: str | None,
        status: str | None = None,
        provider: str | None = None,
        job_type: str | None = None,
        authorization_id: str | None = None,
    ) -> Page:
        keep = None
        if status or provider or job_type:

            def keep(j: Job) -> bool:
                return (
                    (status is None or j.status.value == status)
                    and (provider is None or j.provider == provider)
                    and (job_type is None or j.job_type.value == job_type)
                )

        pk = K.account_pk(account_id)
        if authorization_id:
            gpk = K.auth_jobs_gsi(account_id, authorization_id)
            return paged_query(
                self.t,
                index=K.GSI1,
                key_condition="GSI1PK = :g",
                names={},
                values={":g": gpk},
                key_names=("PK", "SK", "GSI1PK", "GSI1SK"),
                expect={"PK": pk, "GSI1PK": gpk},
                sk_prefix="JOB#",
                limit=limit,
                cursor=cursor,
                convert=_job,
                keep=keep,
            )
        return paged_query(
            self.t,
            key_condition="PK = :pk AND begins_with(SK, :p)",
            names={},
            values={":pk": pk, ":p": "JOB#"},
            key_names=("PK", "SK"),
            expect={"PK": pk},
            sk_prefix="JOB#",
            limit=limit,
            cursor=cursor,
            convert=_job,
            keep=keep,
        )

    def jobs_of_authorization(self, account_id: str, auth_id: str, limit: int = 200) -> list[Job]:
        return list(self.page(account_id, limit=limit, cursor=None, authorization_id=auth_id).items)

    # -- writes ---------------------------------------------------------------------------

    def _usage_op(self, account_id: str, move: UsageMove) -> dict[str, Any]:
        names = {"#u": "usage"}
        values: dict[str, Any] = {":one": {"N": "1"}}
        sets = []
        if move.leave is not None:
            names["#l"] = move.leave.value
            sets.append("#u.#l = #u.#l - :one")
        if move.enter is not None:
            names["#e"] = move.enter.value
            sets.append("#u.#e = #u.#e + :one")
        condition = "attribute_exists(PK)"
        if move.provider is not None:
            condition += " AND #prov = :prov"
            names["#prov"] = "provider"
            values[":prov"] = {"S": move.provider}
        if move.enter is not None:
            names["#lu"] = "last_used_at"
            values[":now"] = {"S": now_iso()}
            sets.append("#lu = :now")
        return {
            "Update": {
                "TableName": self.t.name,
                "Key": {"PK": {"S": K.account_pk(account_id)}, "SK": {"S": K.auth_sk(move.auth_id)}},
                "UpdateExpression": "SET " + ", ".join(sets),
                "ConditionExpression": condition,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }

    def _audience_op(self, account_id: str, audience_id: str, delta: int) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self.t.name,
                "Key": {"PK": {"S": K.account_pk(account_id)}, "SK": {"S": K.audience_sk(audience_id)}},
                "UpdateExpression": "ADD jobs_using :d",
                "ConditionExpression": "attribute_exists(PK)",
                "ExpressionAttributeValues": {":d": {"N": str(delta)}},
            }
        }

    def _run(
        self,
        tx: Transaction,
        job_op: dict[str, Any],
        account_id: str,
        moves: Iterable[UsageMove],
        *,
        job_id: str,
        version: int | None,
        audiences: list[tuple[str | None, int]] | None = None,
    ) -> None:
        """Commit `tx` with the job write, the usage moves and the audience counts added to
        it: one transaction. An export job counts on its audience item (`jobs_using`), so an
        audience in use cannot be deleted and a job cannot point at a missing audience.

        Decrements against an authorization that no longer exists are dropped and the
        transaction retried: only failed/completed jobs can outlive their authorization.
        Increments never are: a job cannot become active on a deleted authorization.
        """
        moves = [m for m in moves if m.leave != m.enter]
        counted = [(aud, delta) for aud, delta in (audiences or []) if aud and delta]
        others = set(tx.names)  # what the caller added: its audit event, log lines, a run's commit
        tx.add("job", job_op)
        for aud, delta in counted:
            tx.add(f"audience:{aud}", self._audience_op(account_id, aud, delta))
        for m in moves:
            tx.add(f"usage:{m.auth_id}", self._usage_op(account_id, m))
        while True:
            try:
                tx.commit()
                return
            except TransactionFailed as exc:
                refused = set(exc.refused)
                if "job" in refused:
                    if self.get(account_id, job_id, consistent=True) is None:
                        raise not_found("job", job_id) from None
                    raise stale_version("job", version) from None
                if refused & others:
                    raise Conflict(
                        "a related object changed at the same time; retry",
                        code="conflict.concurrent_change",
                    ) from None
                gone = [(aud, delta) for aud, delta in counted if f"audience:{aud}" in refused]
                for aud, delta in gone:
                    if delta > 0:
                        raise Invalid(
                            f"audience {aud!r} was not found",
                            code="audience.not_found",
                            fields={"config.audience_id": "no such audience in this account"},
                        ) from None
                if gone:
                    # Only a job saved before audiences were counted can lose its audience.
                    for aud, _ in gone:
                        tx.drop(f"audience:{aud}")
                    counted = [a for a in counted if a not in gone]
                    continue
                failed = [m for m in moves if f"usage:{m.auth_id}" in refused]
                if not failed:
                    if exc.conflict:
                        time.sleep(0.05)
                        continue
                    raise
                for m in failed:
                    if m.enter is not None:
                        raise AuthorizationGone(m.auth_id) from None
                for m in failed:
                    tx.drop(f"usage:{m.auth_id}")
                moves = [m for m in moves if m not in failed]

    def due_for_purge(self, shard: int, now_iso_: str, *, limit: int = 100) -> list[tuple[str, str]]:
        """(account_id, job_id) of jobs whose purge time has passed, oldest first: one
        Query of the sparse sweep index (never a Scan)."""
        resp = self.t.client.query(
            TableName=self.t.name,
            IndexName=K.GSI2,
            KeyConditionExpression="GSI2PK = :pk AND GSI2SK < :now",
            ExpressionAttributeValues={":pk": {"S": f"PURGE#{shard}"}, ":now": {"S": now_iso_}},
            Limit=limit,
        )
        out = []
        for item in resp.get("Items", []):
            _due, account_id, job_id = item["GSI2SK"]["S"].split("#", 2)
            out.append((account_id, job_id))
        return out

    def create(
        self,
        job: Job,
        *,
        new_auth: Authorization | None = None,
        auth_provider: str,
        tx: Transaction | None = None,
    ) -> None:
        """Create the job, in `tx` with whatever the caller added to it (its audit event)."""
        tx = tx if tx is not None else Transaction(self.t)
        op = {
            "Put": {
                "TableName": self.t.name,
                "Item": _ser(_job_item(job)),
                "ConditionExpression": "attribute_not_exists(PK)",
            }
        }
        if new_auth is not None:
            # The inline authorization is born with this job's weight on it.
            new_auth.usage[job.status.value] += 1
            AuthorizationRepo(self.t).add_new(tx, new_auth)
            self._run(
                tx,
                op,
                job.account_id,
                [],
                job_id=job.id,
                version=None,
                audiences=[(audience_of(job), 1)],
            )
            return
        self._run(
            tx,
            op,
            job.account_id,
            [UsageMove(job.authorization_id, None, job.status, provider=auth_provider)],
            job_id=job.id,
            version=None,
            audiences=[(audience_of(job), 1)],
        )

    def save(
        self,
        before: Job,
        after: Job,
        *,
        expected_version: int | None,
        expected_status: JobStatus | None = None,
        tx: Transaction | None = None,
    ) -> Job:
        """Write `after` over `before` if nobody changed it since; move usage counters.

        What the caller added to `tx` (a run's commit, log lines) lands in the same transaction.
        """
        tx = tx if tx is not None else Transaction(self.t)
        after.version = before.version + 1
        after.updated_at = now_iso()
        values: dict[str, Any] = {":v": {"N": str(before.version)}}
        condition = "attribute_exists(PK) AND version = :v"
        if expected_version is not None and expected_version != before.version:
            raise stale_version("job", expected_version)
        if expected_status is not None:
            condition += " AND #st = :st"
            values[":st"] = {"S": expected_status.value}
        op = {
            "Put": {
                "TableName": self.t.name,
                "Item": _ser(_job_item(after)),
                "ConditionExpression": condition,
                "ExpressionAttributeValues": values,
                **({"ExpressionAttributeNames": {"#st": "status"}} if expected_status else {}),
            }
        }
        if before.authorization_id == after.authorization_id:
            moves = [UsageMove(after.authorization_id, before.status, after.status)]
        else:
            moves = [
                UsageMove(before.authorization_id, before.status, None),
                UsageMove(after.authorization_id, None, after.status, provider=after.provider),
            ]
        before_aud, after_aud = audience_of(before), audience_of(after)
        self._run(
            tx,
            op,
            after.account_id,
            moves,
            job_id=after.id,
            version=expected_version if expected_version is not None else before.version,
            audiences=[] if before_aud == after_aud else [(before_aud, -1), (after_aud, 1)],
        )
        return after

    def clear_alert(self, account_id: str, job_id: str, transition_id: str) -> None:
        """The job's pending alert of this transition is out (a newer one is left alone).
        Not a user edit: the version stays, so nobody's edit turns stale over it."""
        from botocore.exceptions import ClientError

        try:
            self.t.client.update_item(
                TableName=self.t.name,
                Key={"PK": {"S": K.account_pk(account_id)}, "SK": {"S": K.job_sk(job_id)}},
                UpdateExpression="REMOVE pending_alert",
                ConditionExpression="pending_alert.transition_id = :t",
                ExpressionAttributeValues={":t": {"S": transition_id}},
            )
        except ClientError as exc:
            if _error_code(exc) != "ConditionalCheckFailedException":
                raise

    def delete(self, job: Job, *, tx: Transaction | None = None) -> None:
        """Delete the job, in `tx` with whatever the caller added (its audit event, its rules)."""
        tx = tx if tx is not None else Transaction(self.t)
        op = {
            "Delete": {
                "TableName": self.t.name,
                "Key": {"PK": {"S": K.account_pk(job.account_id)}, "SK": {"S": K.job_sk(job.id)}},
                "ConditionExpression": "attribute_exists(PK) AND version = :v",
                "ExpressionAttributeValues": {":v": {"N": str(job.version)}},
            }
        }
        self._run(
            tx,
            op,
            job.account_id,
            [UsageMove(job.authorization_id, job.status, None)],
            job_id=job.id,
            version=job.version,
            audiences=[(audience_of(job), -1)],
        )


def audience_of(job: Job) -> str | None:
    """The audience an export job sends, or an enrichment job filters by (its config
    names it), else None."""
    if job.job_type not in (JobType.EXPORT, JobType.ENRICHMENT):
        return None
    aud = job.config.get("audience_id")
    return aud if isinstance(aud, str) and aud else None


class AuthorizationGone(Exception):
    def __init__(self, auth_id: str) -> None:
        super().__init__(auth_id)
        self.auth_id = auth_id


__all__ = [
    "AccountRepo",
    "AuthorizationGone",
    "AuthorizationInUse",
    "AuthorizationRepo",
    "JobRepo",
    "NotFound",
    "Page",
    "Table",
    "Transaction",
    "TransactionFailed",
    "UsageMove",
    "now_iso",
]
