"""Real-time export subscriptions: which jobs follow an audience's change log, and how far
each has delivered (docs/export.md, "Real-time exports").

  subscription  PK=ACCT#<a>#AUD#<aud>#RT  SK=JOB#<job_id>   cursor, lease, lease_until
                GSI2PK=REALTIME#<crc32(job_id) % 16>  GSI2SK=<a>#<aud>#<job_id>

One item per real-time export job, under its audience, so the stream handler finds the jobs
to nudge with one Query. It is written in the transaction that creates, edits or deletes the
job, so a job and its subscription never disagree. `cursor` is the number of the last change
the destination accepted; it moves only forward, only by the holder of the lease, and only
from the value that holder read (conditional writes). Every subscription is also in the
sharded sweep index, so the periodic catch-up finds them all with 16 Queries, never a Scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chalicelib.store import keys as K
from chalicelib.store.dynamo import Table, now_iso
from chalicelib.store.unit_of_work import UnitOfWork

JOB_PREFIX = "JOB#"
SWEEP_KIND = "REALTIME"
SWEEP_SHARDS = 16


def subscriptions_pk(account_id: str, audience_id: str) -> str:
    return f"{K.account_pk(account_id)}#AUD#{audience_id}#RT"


def subscription_key(account_id: str, audience_id: str, job_id: str) -> dict[str, Any]:
    return {"PK": {"S": subscriptions_pk(account_id, audience_id)}, "SK": {"S": JOB_PREFIX + job_id}}


@dataclass(frozen=True)
class Subscription:
    account_id: str
    audience_id: str
    job_id: str
    cursor: int  # the last change number the destination accepted
    lease: str | None  # the delivery holding the job, if any
    lease_until: float  # epoch seconds; a lease past it may be taken over
    resync_id: str | None = None  # the re-send of every member under way (its request's id)
    resync_next: int = 0  # members of that re-send the destination accepted
    resynced: str | None = None  # the last re-send finished


class RealtimeRepo:
    def __init__(self, table: Table) -> None:
        self.t = table

    # -- kept with the job (in the job's own transaction) -----------------------------------

    def add_subscribe(self, tx: UnitOfWork, account_id: str, audience_id: str, job_id: str) -> None:
        """Start following the audience from its first change (the destination is sent the
        whole log: every member it has today arrives as an enter)."""
        tx.put(f"realtime:{audience_id}", {
            "PK": subscriptions_pk(account_id, audience_id), "SK": JOB_PREFIX + job_id,
            "type": "realtime_subscription", "account_id": account_id, "audience_id": audience_id,
            "job_id": job_id, "cursor": 0, "created_at": now_iso(),
            "GSI2PK": K.sweep_shard(SWEEP_KIND, job_id, SWEEP_SHARDS), "GSI2SK": f"{account_id}#{audience_id}#{job_id}",
        }, condition="attribute_not_exists(PK)")

    def add_unsubscribe(self, tx: UnitOfWork, account_id: str, audience_id: str, job_id: str) -> None:
        tx.add(f"realtime-end:{audience_id}", {"Delete": {
            "TableName": self.t.name, "Key": subscription_key(account_id, audience_id, job_id)}})

    # -- read --------------------------------------------------------------------------------

    def jobs_of(self, account_id: str, audience_id: str) -> list[Subscription]:
        """Every real-time job following the audience (a Query per 100)."""
        out: list[Subscription] = []
        start: dict[str, str] | None = None
        while True:
            items, start = self.t.query(
                key_condition="PK = :pk AND begins_with(SK, :p)", names={},
                values={":pk": subscriptions_pk(account_id, audience_id), ":p": JOB_PREFIX},
                limit=100, start_key=start, forward=True)
            out.extend(_subscription(i) for i in items)
            if not start:
                return out

    def sweep_page(self, shard: int, start: dict[str, Any] | None, *, limit: int = 100,
                   ) -> tuple[list[Subscription], dict[str, Any] | None]:
        """One page of one shard of the sweep index (a Query; the index holds keys only), and
        those subscriptions as they are now (BatchGetItem, consistent); where the next page
        starts, if anywhere."""
        keys, last = self.t.sweep_page(SWEEP_KIND, shard, start, limit=limit)
        rows = self.t.batch_get([{"PK": k["PK"]["S"], "SK": k["SK"]["S"]} for k in keys], consistent=True)
        return [_subscription(r) for r in rows], last

    def get(self, account_id: str, audience_id: str, job_id: str) -> Subscription | None:
        row = self.t.get(subscriptions_pk(account_id, audience_id), JOB_PREFIX + job_id, consistent=True)
        return _subscription(row) if row else None

    # -- delivery ----------------------------------------------------------------------------

    def claim(self, sub: Subscription, owner: str, now: float, seconds: float) -> bool:
        """Hold the job's delivery until now + seconds, unless another delivery holds it."""
        return self.t.write_if(
            "update_item", Key=subscription_key(sub.account_id, sub.audience_id, sub.job_id),
            UpdateExpression="SET lease = :o, lease_until = :u",
            ConditionExpression="attribute_exists(PK) AND (attribute_not_exists(lease_until) "
                                "OR lease_until < :now OR lease = :o)",
            ExpressionAttributeValues={":o": {"S": owner}, ":u": {"N": repr(now + seconds)},
                                       ":now": {"N": repr(now)}})

    def advance(self, sub: Subscription, owner: str, frm: int, to: int, at: str) -> bool:
        """Move the cursor from `frm` to `to` (the destination accepted frm+1..to); False when
        the lease was lost or the cursor moved meanwhile (nothing is written then)."""
        return self.t.write_if(
            "update_item", Key=subscription_key(sub.account_id, sub.audience_id, sub.job_id),
            UpdateExpression="SET #c = :to, delivered_at = :at",
            ConditionExpression="lease = :o AND #c = :from",
            ExpressionAttributeNames={"#c": "cursor"},
            ExpressionAttributeValues={":o": {"S": owner}, ":to": {"N": str(to)}, ":from": {"N": str(frm)},
                                       ":at": {"S": at}})

    def resync_progress(self, sub: Subscription, owner: str, resync_id: str, accepted: int, *, done: bool) -> bool:
        """Record how far a re-send of every member went (`done`: all of it), by the lease's
        holder while the cursor stays where the re-send read the membership."""
        return self.t.write_if(
            "update_item", Key=subscription_key(sub.account_id, sub.audience_id, sub.job_id),
            UpdateExpression="SET resync_id = :r, resync_next = :n" + (", resynced = :r" if done else ""),
            ConditionExpression="lease = :o AND #c = :c",
            ExpressionAttributeNames={"#c": "cursor"},
            ExpressionAttributeValues={":o": {"S": owner}, ":r": {"S": resync_id}, ":n": {"N": str(accepted)},
                                       ":c": {"N": str(sub.cursor)}})

    def release(self, sub: Subscription, owner: str) -> bool:
        return self.t.write_if(
            "update_item", Key=subscription_key(sub.account_id, sub.audience_id, sub.job_id),
            UpdateExpression="REMOVE lease, lease_until", ConditionExpression="lease = :o",
            ExpressionAttributeValues={":o": {"S": owner}})

    def drop(self, account_id: str, audience_id: str, job_id: str) -> None:
        """A subscription whose job is gone (the purge deletes jobs without it)."""
        self.t.write("delete_item", Key=subscription_key(account_id, audience_id, job_id))


def _subscription(row: dict[str, Any]) -> Subscription:
    return Subscription(str(row["account_id"]), str(row["audience_id"]), str(row["job_id"]),
                        int(row.get("cursor", 0)), row.get("lease"), float(row.get("lease_until", 0)),
                        row.get("resync_id"), int(row.get("resync_next", 0)), row.get("resynced"))


__all__ = ["SWEEP_SHARDS", "RealtimeRepo", "Subscription", "subscriptions_pk"]
