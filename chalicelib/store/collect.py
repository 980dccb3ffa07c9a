"""Collection's records in the main table, and its hand-off queue (docs/realtime.md).

Keys:
  write key   PK=WKEY#<key id>                     SK=META   (hash, account, authorization, job)
  claim       PK=ACCT#<a>#MSG#<job>#<messageId>    SK=CLAIM  (which hand-off took it; 24 h)
  hand-off    PK=ACCT#<a>                          SK=COLLECTED#<job>#<hand-off>  (14 days: its
              sequence in the job, from its first attempt; `done` once committed)
  totals      PK=ACCT#<a>                          SK=COLLECT#<job>#TOTALS  (counts; `last_seq`)

The job's runs (an hour of events each, SK=RUN#<job>#win_<yyyymmddhh>) are the run
repository's: `store/runs.py`, "collection windows".
"""

from __future__ import annotations

import base64
import gzip
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chalicelib.config import COLLECT_QUEUE
from chalicelib.store import aws
from chalicelib.store import keys as K
from chalicelib.store.dynamo import Table, deser, ser
from chalicelib.store.queues import queue_url
from chalicelib.store.unit_of_work import UnitOfWork

CLAIM_SECONDS = 24 * 3600  # messageId dedup window
APPLIED_SECONDS = 14 * 86400  # SQS's longest retention: a hand-off is never redelivered later
ENTRY_BYTES = 200 * 1024  # one hand-off, gzip + base64, under SQS's 256 KB


def write_key_pk(key_id: str) -> str:
    return f"WKEY#{key_id}"


@dataclass(frozen=True)
class WriteKey:
    id: str
    key_hash: str
    account_id: str
    authorization_id: str
    job_id: str | None
    status: str  # active | revoked
    not_after: float | None = None  # a rotated key keeps working until then (epoch seconds)


class WriteKeyRepo:
    def __init__(self, table: Table) -> None:
        self.t = table

    def add_new(self, tx: UnitOfWork, key: WriteKey, created_at: str) -> None:
        tx.add("write_key", self._new(key, created_at))

    def _new(self, key: WriteKey, created_at: str) -> dict[str, Any]:
        item = {"PK": write_key_pk(key.id), "SK": "META", "type": "write_key", "key_hash": key.key_hash,
                "account_id": key.account_id, "authorization_id": key.authorization_id,
                "status": key.status, "created_at": created_at}
        if key.job_id:
            item["job_id"] = key.job_id
        return {"Put": {"TableName": self.t.name, "Item": ser(item),
                        "ConditionExpression": "attribute_not_exists(PK)"}}

    def get(self, key_id: str) -> WriteKey | None:
        row = self.t.get(write_key_pk(key_id), "META")
        if row is None:
            return None
        return WriteKey(id=key_id, key_hash=row["key_hash"], account_id=row["account_id"],
                        authorization_id=row["authorization_id"], job_id=row.get("job_id"),
                        status=row.get("status", "active"),
                        not_after=float(row["not_after"]) if row.get("not_after") is not None else None)

    def put(self, key: WriteKey, created_at: str) -> None:
        op = self._new(key, created_at)["Put"]
        self.t.client.put_item(**op)

    def expire(self, key_id: str, not_after: float) -> None:
        """The key stops working at `not_after` (now, for a deleted authorization); never
        later than a time already set."""
        self.t.write_if(
            "update_item", Key={"PK": {"S": write_key_pk(key_id)}, "SK": {"S": "META"}},
            UpdateExpression="SET not_after = :t",
            ConditionExpression="attribute_exists(PK) AND (attribute_not_exists(not_after) OR not_after > :t)",
            ExpressionAttributeValues={":t": {"N": f"{not_after:.3f}"}})

    def add_bind(self, tx: UnitOfWork, key_id: str, account_id: str, job_id: str, *, replacing: str | None) -> None:
        """One write key feeds one job: the job's create transaction names it, conditional
        on the key feeding no job, or still feeding the deleted one it replaces."""
        values = {":j": {"S": job_id}, ":a": {"S": account_id}}
        free = "attribute_not_exists(job_id)"
        if replacing:
            free = "job_id = :old"
            values[":old"] = {"S": replacing}
        tx.add("write_key", {"Update": {
            "TableName": self.t.name,
            "Key": {"PK": {"S": write_key_pk(key_id)}, "SK": {"S": "META"}},
            "UpdateExpression": "SET job_id = :j",
            "ConditionExpression": f"attribute_exists(PK) AND account_id = :a AND {free}",
            "ExpressionAttributeValues": values,
        }})


def claim_key(account_id: str, job_id: str, message_id: str) -> dict[str, str]:
    return {"PK": f"ACCT#{account_id}#MSG#{job_id}#{message_id}", "SK": "CLAIM"}


def _pending_seq(row: dict[str, Any]) -> int | None:
    """A started hand-off's sequence; None once applied (a marker without a sequence was
    committed before sequences existed)."""
    return None if row.get("done") or "seq" not in row else int(row["seq"])


class CollectRepo:
    """Claims of message ids and applied hand-offs."""

    def __init__(self, table: Table) -> None:
        self.t = table

    def claims(self, account_id: str, job_id: str, message_ids: Sequence[str], now: float) -> dict[str, str]:
        """messageId -> the hand-off holding a live claim on it (BatchGetItem, 100 keys a request)."""
        rows = self.t.batch_get([claim_key(account_id, job_id, m) for m in message_ids], consistent=True,
                                attributes=("PK", "h", "expires_at"))
        # The id is what follows the job's prefix: a messageId may itself hold "#".
        prefix = len(claim_key(account_id, job_id, "")["PK"])
        # TTL deletes late (moto never): an expired claim is no claim.
        return {row["PK"][prefix:]: row["h"] for row in rows if int(row["expires_at"]) > now}

    def put_claims(self, account_id: str, job_id: str, message_ids: Sequence[str], handoff: str,
                   now: float) -> None:
        """Unconditional: a job's hand-offs are applied one at a time (FIFO group = job)."""
        expires = int(now) + CLAIM_SECONDS
        self.t.batch_put([{**claim_key(account_id, job_id, m), "h": handoff, "expires_at": expires}
                          for m in dict.fromkeys(message_ids)])

    def sequence(self, account_id: str, job_id: str, handoff: str, now: float) -> int | None:
        """The hand-off's sequence number in its job (from 1), None once it is applied.

        Allocated on its first attempt and recorded before it writes anything, so every
        redelivery gets the same number; hand-offs of one job start in their FIFO order,
        so a later one always has a larger number. A crash between the counter and the
        record only leaves a gap (nothing was written under the lost number)."""
        pk, sk = K.account_pk(account_id), f"COLLECTED#{job_id}#{handoff}"
        row = self.t.get(pk, sk, consistent=True)
        if row is not None:
            return _pending_seq(row)
        resp = self.t.write("update_item", Key=self._totals_key(account_id, job_id),
                            UpdateExpression="ADD last_seq :one", ExpressionAttributeValues={":one": {"N": "1"}},
                            ReturnValues="UPDATED_NEW")
        seq = int(resp["Attributes"]["last_seq"]["N"])
        item = {"PK": pk, "SK": sk, "seq": seq, "expires_at": int(now) + APPLIED_SECONDS}
        if self.t.write_if("put_item", Item=ser(item), ConditionExpression="attribute_not_exists(PK)"):
            return seq
        # A concurrent delivery of the same hand-off recorded its number first: use that one.
        return _pending_seq(self.t.get(pk, sk, consistent=True) or {})

    def add_applied(self, tx: UnitOfWork, account_id: str, job_id: str, handoff: str) -> None:
        """Marks the started hand-off applied, once (refused when another attempt did)."""
        tx.add("applied", {"Update": {
            "TableName": self.t.name,
            "Key": {"PK": {"S": K.account_pk(account_id)}, "SK": {"S": f"COLLECTED#{job_id}#{handoff}"}},
            "UpdateExpression": "SET done = :t",
            "ConditionExpression": "attribute_exists(PK) AND attribute_not_exists(done)",
            "ExpressionAttributeValues": {":t": {"BOOL": True}}}})

    @staticmethod
    def _totals_key(account_id: str, job_id: str) -> dict[str, dict[str, str]]:
        return {"PK": {"S": K.account_pk(account_id)}, "SK": {"S": f"COLLECT#{job_id}#TOTALS"}}

    def add_totals(self, tx: UnitOfWork, account_id: str, job_id: str, *, accepted: int, duplicates: int,
                   rejected: int, received_at: str) -> None:
        """The job's counts since it was created, and when its latest applied hand-off arrived
        (a job's hand-offs are applied in arrival order: its FIFO group)."""
        tx.add("totals", {"Update": {
            "TableName": self.t.name, "Key": self._totals_key(account_id, job_id),
            "UpdateExpression": "ADD accepted :a, duplicates :d, rejected :r SET last_received_at = :t",
            "ExpressionAttributeValues": {":a": {"N": str(accepted)}, ":d": {"N": str(duplicates)},
                                          ":r": {"N": str(rejected)}, ":t": {"S": received_at}}}})

    def totals(self, account_id: str, job_id: str) -> dict[str, Any]:
        row = self.t.client.get_item(TableName=self.t.name, Key=self._totals_key(account_id, job_id)).get("Item")
        got = deser(row) if row else {}
        return {"last_received_at": got.get("last_received_at"), "accepted": int(got.get("accepted", 0)),
                "duplicates": int(got.get("duplicates", 0)), "rejected": int(got.get("rejected", 0))}


def pack(messages: list[dict[str, Any]]) -> str:
    return base64.b64encode(gzip.compress(json.dumps(messages, separators=(",", ":")).encode(), 6)).decode()


def unpack(blob: str) -> list[dict[str, Any]]:
    value = json.loads(gzip.decompress(base64.b64decode(blob)))
    if not isinstance(value, list):
        raise ValueError("a hand-off holds a list of messages")
    return value


class CollectQueue:
    """The hand-off to the engine: FIFO, one group per job, so a job's hand-offs are
    applied one at a time and in order."""

    def send(self, job_id: str, entries: list[dict[str, Any]], dedup_prefix: str) -> None:
        sqs = aws.client("sqs")
        url = queue_url(COLLECT_QUEUE)
        batch = [{"Id": str(i), "MessageBody": json.dumps(e, separators=(",", ":")), "MessageGroupId": job_id,
                  "MessageDeduplicationId": f"{dedup_prefix}#{i}"} for i, e in enumerate(entries)]
        for start in range(0, len(batch), 10):
            chunk = batch[start:start + 10]
            for _attempt in range(3):
                failed = {f["Id"] for f in sqs.send_message_batch(QueueUrl=url, Entries=chunk).get("Failed", [])}
                chunk = [e for e in chunk if e["Id"] in failed]
                if not chunk:
                    break
            if chunk:
                raise RuntimeError(f"the collect queue refused {len(chunk)} hand-offs")


def now() -> float:
    return time.time()


__all__ = ["COLLECT_QUEUE", "CollectQueue", "CollectRepo", "WriteKey", "WriteKeyRepo", "pack", "unpack"]
