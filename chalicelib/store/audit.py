"""The audit log: who did what to which object, per account (docs/audit.md).

Item: PK=ACCT#<a>#AUDIT  SK=<at>#<rand>   (time order is key order; TTL 400 days)

Job events are written in the job write's own transaction (`add`); other objects' events
right after their change commits (`put`). Secrets never reach an event: diffs are built
from metadata and config only, and credential changes are recorded as "rotated".
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from chalicelib.domain.audit import AuditEvent
from chalicelib.store import keys as K
from chalicelib.store.dynamo import Page, Table, deser, ser
from chalicelib.store.unit_of_work import UnitOfWork

TTL_DAYS = 400
MAX_READS = 5  # Queries one filtered listing may spend (like paged_query)


def audit_pk(account_id: str) -> str:
    return f"{K.account_pk(account_id)}#AUDIT"


def _item(e: AuditEvent) -> dict[str, Any]:
    return {
        "PK": audit_pk(e.account_id),
        # Microseconds keep one caller's quick successive changes in order within a second.
        "SK": f"{e.at}#{e.at_ns // 1000 % 1_000_000:06d}#{uuid.uuid4().hex[:6]}",
        "type": "audit",
        "at": e.at,
        "user_id": e.user_id,
        "action": e.action,
        "object_type": e.object_type,
        "object_id": e.object_id,
        "label": e.label,
        "diff_json": json.dumps(e.diff, sort_keys=True, default=str) if e.diff else None,
        "expires_at": int(time.time()) + TTL_DAYS * 86400,
    }


def _view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "at": row["at"],
        "user_id": row["user_id"],
        "action": row["action"],
        "object_type": row["object_type"],
        "object_id": row["object_id"],
        "label": row.get("label", ""),
        "diff": json.loads(row["diff_json"]) if row.get("diff_json") else {},
    }


class AuditRepo:
    def __init__(self, table: Table) -> None:
        self.t = table

    def add(self, tx: UnitOfWork, event: AuditEvent) -> None:
        """The event, in the transaction of the change it records."""
        tx.add(tx.numbered("audit:"), {"Put": {"TableName": self.t.name, "Item": ser(_item(event))}})

    def put(self, event: AuditEvent) -> None:
        self.t.client.put_item(TableName=self.t.name, Item=ser(_item(event)))

    def page(self, account_id: str, *, limit: int, cursor: str | None, object_id: str | None = None,
             user_id: str | None = None, since: str | None = None, until: str | None = None) -> Page:
        """Newest first. Time bounds are the key range; object and user filter in memory
        with at most MAX_READS Queries per page (the cursor continues after the last read)."""
        pk = audit_pk(account_id)
        lo, hi = since or "0000", (until or "9999") + "~"
        start = K.decode_cursor(cursor, expect={"PK": pk}, key_names=("PK", "SK")) if cursor else None
        out: list[dict[str, Any]] = []
        filtered = bool(object_id or user_id)
        last: dict[str, Any] | None = None
        more = True
        for _ in range(MAX_READS if filtered else 1):
            kwargs: dict[str, Any] = {
                "TableName": self.t.name,
                "KeyConditionExpression": "PK = :pk AND SK BETWEEN :lo AND :hi",
                "ExpressionAttributeValues": {":pk": {"S": pk}, ":lo": {"S": lo}, ":hi": {"S": hi}},
                "ScanIndexForward": False,
                "Limit": 100 if filtered else limit + 1,
            }
            if start:
                kwargs["ExclusiveStartKey"] = {k: {"S": v} for k, v in start.items()}
            resp = self.t.client.query(**kwargs)
            rows = [deser(i) for i in resp.get("Items", [])]
            for row in rows:
                if (object_id and row["object_id"] != object_id) or (user_id and row["user_id"] != user_id):
                    last = row
                    continue
                if len(out) == limit:
                    more = True
                    break
                out.append(row)
                last = row
            else:
                lek = resp.get("LastEvaluatedKey")
                more = bool(lek)
                if lek:
                    start = {k: v["S"] for k, v in lek.items()}
                if not lek or len(out) >= limit:
                    break
                continue
            break
        if not filtered and len(out) > limit:
            out, more = out[:limit], True
        next_cursor = K.encode_cursor({"PK": pk, "SK": last["SK"]}) if (more and last) else None
        return Page(items=[_view(r) for r in out], next_cursor=next_cursor)


__all__ = ["AuditRepo", "audit_pk"]
