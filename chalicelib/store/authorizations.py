"""Authorizations in the main table: their items, the usage counters jobs move, the sharded
health sweep index and the health transitions (see docs/data-model.md, docs/health.md)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from chalicelib.domain.errors import Conflict, not_found
from chalicelib.domain.ids import new_transition_id
from chalicelib.domain.models import Authorization, Health, HealthStatus, empty_usage
from chalicelib.domain.statuses import JobStatus
from chalicelib.store import keys as K
from chalicelib.store.dynamo import (
    CONTENDED,
    ConditionFailed,
    Page,
    Table,
    Transaction,
    TransactionFailed,
    attempts,
    conditional,
    deser,
    now_iso,
    prefix_page,
    ser,
    to_attr,
    update_versioned,
)
from chalicelib.store.unit_of_work import UnitOfWork

HEALTH_SHARDS = 16
HEALTH_PREFIX = "HEALTH#"  # SK prefix of health transitions: HEALTH#<auth>#<at>#<rand>


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


def auth_item(a: Authorization) -> dict[str, Any]:
    return {
        "PK": K.account_pk(a.account_id),
        "SK": K.auth_sk(a.id),
        # Every authorization is in the sweep index, sharded so the daily health sweep
        # reads them with bounded Queries (never a Scan).
        "GSI2PK": K.sweep_shard("HEALTH", a.id, HEALTH_SHARDS),
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


class AuthorizationRepo:
    def __init__(self, table: Table) -> None:
        self.t = table

    def put_new(self, auth: Authorization) -> None:
        self.t.put(auth_item(auth), condition="attribute_not_exists(PK)")

    def mark_used(self, account_id: str, auth_id: str, at: str) -> None:
        """`last_used_at` moves forward only (a slower concurrent writer cannot move it
        back), and never recreates a deleted authorization. Does not bump `version`: a
        use is not an edit."""
        self.t.write_if(
            "update_item",
            Key={"PK": {"S": K.account_pk(account_id)}, "SK": {"S": K.auth_sk(auth_id)}},
            UpdateExpression="SET #lu = :at",
            ConditionExpression="attribute_exists(PK) AND (attribute_not_exists(#lu) OR #lu < :at)",
            ExpressionAttributeNames={"#lu": "last_used_at"},
            ExpressionAttributeValues={":at": {"S": at}},
        )

    def put_new_op(self, auth: Authorization) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self.t.name,
                "Item": ser(auth_item(auth)),
                "ConditionExpression": "attribute_not_exists(PK)",
            }
        }

    def add_new(self, tx: UnitOfWork, auth: Authorization) -> None:
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
        return prefix_page(self.t, pk, "AUTH#", limit=limit, cursor=cursor,
                           convert=_auth, keep=keep)

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
        return _auth(update_versioned(
            self.t,
            {"PK": {"S": K.account_pk(account_id)}, "SK": {"S": K.auth_sk(auth_id)}},
            kind="authorization",
            ident=auth_id,
            version=expected_version,
            UpdateExpression="SET " + ", ".join(sets) + " ADD #v :one",
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={k: to_attr(v) for k, v in values.items()},
        ))

    def get_many(self, account_id: str, auth_ids: Iterable[str], *,
                 consistent: bool = False) -> dict[str, Authorization]:
        """The account's authorizations among `auth_ids` (BatchGetItem, 100 keys a request)."""
        return self.get_pairs([(account_id, i) for i in auth_ids], consistent=consistent)

    def get_pairs(self, pairs: Iterable[tuple[str, str]], *,
                  consistent: bool = False) -> dict[str, Authorization]:
        """Authorizations by (account_id, auth_id), any accounts (BatchGetItem, 100 keys a
        request); missing ones are left out."""
        rows = self.t.batch_get([{"PK": K.account_pk(a), "SK": K.auth_sk(i)} for a, i in pairs],
                                consistent=consistent)
        return {auth.id: auth for auth in map(_auth, rows)}

    # -- health -------------------------------------------------------------------------

    def sweep_page(self, shard: int, start: dict[str, Any] | None, *, limit: int = 100,
                   ) -> tuple[list[tuple[str, str]], dict[str, Any] | None]:
        """One page of (account_id, auth_id) of one sweep shard, and where the next starts."""
        items, last = self.t.sweep_page("HEALTH", shard, start, limit=limit)
        found = [tuple(i["GSI2SK"]["S"].split("#", 1)) for i in items]
        return [(a, b) for a, b in found], last

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
                        "Item": ser({
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
                    "ExpressionAttributeValues": {k: to_attr(v) for k, v in values.items()},
                }
            }
            try:
                if transition is None:
                    # The daily common case, no change: one conditional UpdateItem (half a
                    # transaction's write cost), same condition. Its answer (no extra cost)
                    # tells whether an earlier transition's alert is still pending.
                    resp = conditional(self.t.client.update_item, **update["Update"], ReturnValues="ALL_NEW")
                    return HealthRecorded(False, _pending_alert(deser(resp.get("Attributes") or {})))
                tx = Transaction(self.t)
                tx.add("authorization", update)
                tx.add("health_transition", transition)
                tx.commit()
                return HealthRecorded(True, pending)
            except (ConditionFailed, TransactionFailed):
                current = self.get(auth.account_id, auth.id, consistent=True)
                if current is None:
                    raise not_found("authorization", auth.id) from None
                prev = current.health.status  # someone else recorded first: from theirs
        raise Conflict("the authorization's health changed too often at once; retry",
                       code="conflict.concurrent_change")

    def clear_health_alert(self, account_id: str, auth_id: str, transition_id: str) -> None:
        """The pending alert of this transition is out (a newer one is left alone)."""
        self.t.write_if(
            "update_item",
            Key={"PK": {"S": K.account_pk(account_id)}, "SK": {"S": K.auth_sk(auth_id)}},
            UpdateExpression="REMOVE health_alert",
            ConditionExpression="health_alert.transition_id = :t",
            ExpressionAttributeValues={":t": {"S": transition_id}},
        )

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
        for _ in attempts(CONTENDED):  # a job's transaction on this item right now: again
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
        raise Conflict("jobs of this authorization changed at the same time; retry",
                       code="conflict.concurrent_change")


class AuthorizationInUse(Exception):
    def __init__(self, auth_id: str) -> None:
        super().__init__(auth_id)
        self.auth_id = auth_id


__all__ = [
    "HEALTH_PREFIX",
    "HEALTH_SHARDS",
    "AuthorizationInUse",
    "AuthorizationRepo",
    "HealthRecorded",
    "PendingHealthAlert",
    "auth_item",
]
