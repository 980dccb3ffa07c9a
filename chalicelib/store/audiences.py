"""Audiences in the main table (see docs/audiences.md).

Keys:
  audience  PK=ACCT#<a>  SK=AUD#<aud>   (ids are time-sortable: newest first is key order)
  size      PK=ACCT#<a>  SK=AUDSIZE#<filter key>   (a kept size estimate, `expires_at`)

The filter is stored as JSON text (`filter_json`), like job configs: it is never queried
and text avoids float/Decimal round trips. Every write is conditional: creation on the
key being free, edits on the version read, deletion on the item existing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from chalicelib.domain.audiences import Audience, Estimate, SampleMember
from chalicelib.domain.errors import Conflict, not_found
from chalicelib.store import keys as K
from chalicelib.store.dynamo import (
    ConditionFailed,
    Page,
    Table,
    deser,
    now_iso,
    prefix_page,
    to_attr,
    update_versioned,
)

PREFIX = "AUD#"
SIZE_PREFIX = "AUDSIZE#"  # not under PREFIX: the audiences page never meets these items


audience_sk = K.audience_sk


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _item(a: Audience) -> dict[str, Any]:
    return {
        "PK": K.account_pk(a.account_id),
        "SK": audience_sk(a.id),
        "type": "audience",
        "id": a.id,
        "account_id": a.account_id,
        "name": a.name,
        "description": a.description,
        "filter_json": _dumps(a.filter),
        "owner": a.owner,
        "created_at": a.created_at,
        "updated_at": a.updated_at,
        "version": a.version,
    }


def _audience(row: dict[str, Any]) -> Audience:
    return Audience(
        id=row["id"],
        account_id=row["account_id"],
        name=row["name"],
        description=row.get("description", ""),
        filter=json.loads(row.get("filter_json") or '{"all":[]}'),
        owner=row["owner"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=int(row.get("version", 1)),
        export_jobs=max(0, int(row.get("jobs_using", 0))),
    )


class AudienceRepo:
    def __init__(self, table: Table) -> None:
        self.t = table

    def create(self, audience: Audience) -> None:
        # Ids are random past their timestamp: the condition only guards a collision.
        self.t.put(_item(audience), condition="attribute_not_exists(PK)")

    def get(self, account_id: str, audience_id: str, *, consistent: bool = False) -> Audience | None:
        row = self.t.get(K.account_pk(account_id), audience_sk(audience_id), consistent=consistent)
        return _audience(row) if row else None

    def page(self, account_id: str, *, limit: int, cursor: str | None) -> Page:
        """Newest first; one Query per page. Cursors only work within this account's audiences."""
        pk = K.account_pk(account_id)
        return prefix_page(self.t, pk, PREFIX, limit=limit, cursor=cursor,
                           convert=_audience)

    def all(self, account_id: str) -> list[Audience]:
        """Every audience of the account (a Query per page of 100, never a Scan)."""
        out: list[Audience] = []
        start: dict[str, str] | None = None
        while True:
            rows, start = self.t.query(key_condition="PK = :pk AND begins_with(SK, :p)", names={},
                                       values={":pk": K.account_pk(account_id), ":p": PREFIX},
                                       limit=100, start_key=start, forward=True)
            out += [_audience(r) for r in rows]
            if not start:
                return out

    def update(
        self,
        account_id: str,
        audience_id: str,
        changes: dict[str, Any],
        *,
        expected_version: int,
    ) -> Audience:
        """Set name/description/filter and bump the version, only if the item is still at
        `expected_version`: a concurrent edit makes this fail (409 stale), a concurrent
        delete makes it 404. Never creates the item."""
        attrs = {("filter_json" if k == "filter" else k): (_dumps(v) if k == "filter" else v)
                 for k, v in changes.items()}
        names = {"#v": "version", "#u": "updated_at"}
        values: dict[str, Any] = {":one": 1, ":now": now_iso(), ":ev": expected_version}
        sets = ["#u = :now"]
        for i, (attr, value) in enumerate(sorted(attrs.items())):
            names[f"#f{i}"] = attr
            values[f":f{i}"] = value
            sets.append(f"#f{i} = :f{i}")
        return _audience(update_versioned(
            self.t,
            {"PK": {"S": K.account_pk(account_id)}, "SK": {"S": audience_sk(audience_id)}},
            kind="audience",
            ident=audience_id,
            version=expected_version,
            UpdateExpression="SET " + ", ".join(sets) + " ADD #v :one",
            ConditionExpression="attribute_exists(PK) AND #v = :ev",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={k: to_attr(v) for k, v in values.items()},
        ))

    def delete(self, account_id: str, audience_id: str) -> Audience:
        """Delete and return the audience; 404 when it does not exist (or is another
        account's), 409 while an export job counts on it (`jobs_using`, moved by the job
        writes' transactions in JobRepo)."""
        try:
            resp = self.t.write(
                "delete_item",
                Key={"PK": {"S": K.account_pk(account_id)}, "SK": {"S": audience_sk(audience_id)}},
                ConditionExpression="attribute_exists(PK) AND (attribute_not_exists(jobs_using) OR jobs_using <= :z)",
                ExpressionAttributeValues={":z": {"N": "0"}},
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ConditionFailed as refused:
            if not refused.old:
                raise not_found("audience", audience_id) from None
            raise in_use(audience_id, int(refused.old.get("jobs_using", 0))) from None
        return _audience(deser(resp["Attributes"]))

    # -- cached size estimates ---------------------------------------------------------------

    def get_many(self, account_id: str, audience_ids: Iterable[str]) -> dict[str, Audience]:
        """The account's audiences among `audience_ids`, by id; missing ones are left out."""
        rows = self._batch_get(K.account_pk(account_id), [audience_sk(i) for i in audience_ids])
        return {row["id"]: _audience(row) for row in rows}

    def cached_sizes(self, account_id: str, keys: Iterable[str], *, now: float) -> dict[str, Estimate]:
        """The account's size estimates cached under `keys` (filter keys) that are still
        fresh at `now` (epoch seconds). TTL deletes expired items late, so freshness is
        checked here, not left to it."""
        rows = self._batch_get(K.account_pk(account_id), [SIZE_PREFIX + k for k in keys])
        return {row["SK"][len(SIZE_PREFIX):]: _estimate(row) for row in rows
                if int(row.get("expires_at", 0)) > now}

    def _batch_get(self, pk: str, sks: Iterable[str]) -> list[dict[str, Any]]:
        """Items of one partition by sort key: BatchGetItem, 100 keys a request."""
        return self.t.batch_get([{"PK": pk, "SK": sk} for sk in sks])

    def cache_sizes(self, account_id: str, sizes: Mapping[str, Estimate], *, expires_at: int) -> None:
        """Keep estimates under their filter keys until `expires_at` (epoch seconds; the
        table's TTL attribute). BatchWriteItem, 25 a request; a later estimate of the same
        filter simply replaces an earlier one."""
        self.t.batch_put([_size_item(account_id, k, e, expires_at) for k, e in sizes.items()])


def _size_item(account_id: str, key: str, e: Estimate, expires_at: int) -> dict[str, Any]:
    return {
        "PK": K.account_pk(account_id),
        "SK": SIZE_PREFIX + key,
        "type": "audience_size",
        "size": e.size,
        "scanned": e.scanned,
        "truncated": e.truncated,
        "sample_json": _dumps([[m.id, m.email] for m in e.sample]),
        "computed_at": e.computed_at,
        "expires_at": expires_at,
    }


def _estimate(row: dict[str, Any]) -> Estimate:
    return Estimate(
        size=int(row["size"]),
        sample=[SampleMember(i, email) for i, email in json.loads(row["sample_json"])],
        scanned=int(row["scanned"]),
        truncated=bool(row["truncated"]),
        computed_at=str(row.get("computed_at", "")),
        cached=True,
    )


def in_use(audience_id: str, jobs: int) -> Conflict:
    """Why an audience that export jobs still send cannot be deleted."""
    return Conflict(
        f"audience {audience_id!r} is used by {jobs} export job{'s' if jobs != 1 else ''}; "
        "delete them or point them at another audience first",
        code="audience.in_use",
    )


__all__ = ["PREFIX", "SIZE_PREFIX", "AudienceRepo", "audience_sk", "in_use"]
