"""Current audience membership and each audience's ordered change log, in the main table.

Keys (docs/export.md, "Change log"):
  member   PK=ACCT#<a>#AUD#<aud>#MEM  SK=P#<profile_id>        in, pos, pv, av, at
  change   PK=ACCT#<a>#AUD#<aud>#CHG  SK=N#<n, 12 digits>      n, profile_id, change, at, pos, av
  head     PK=ACCT#<a>#AUD#<aud>#CHG  SK=HEAD                  n (the last change's number)
  backfill PK=ACCT#<a>#AUD#<aud>#CHG  SK=BACKFILL              av, shard, start, done, pages

Every change is one transaction: the head moves from n to n+1 (conditional on n), change
n+1 is put (conditional on being new) and the member item flips (conditional on the state
it was read in, and on the change being newer than what it holds). So a reader that sees
head = n knows changes 1..n are all committed: the log has no gaps and no reordering, and
a cursor is a plain number.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from chalicelib.domain.membership import MemberState, Verdict
from chalicelib.store import keys as K
from chalicelib.store.dynamo import (
    IncompleteBatch,
    Table,
    Transaction,
    TransactionFailed,
    deser,
    now_iso,
)

HEAD_SK = "HEAD"
BACKFILL_SK = "BACKFILL"
CHANGE_PREFIX = "N#"
MEMBER_PREFIX = "P#"


def members_pk(account_id: str, audience_id: str) -> str:
    return f"{K.account_pk(account_id)}#AUD#{audience_id}#MEM"


def changes_pk(account_id: str, audience_id: str) -> str:
    return f"{K.account_pk(account_id)}#AUD#{audience_id}#CHG"


def change_sk(n: int) -> str:
    return f"{CHANGE_PREFIX}{n:012d}"


@dataclass(frozen=True)
class Change:
    """One entry of an audience's change log."""

    n: int
    profile_id: str
    change: str  # "enter" | "exit"
    at: str
    position: str  # the stream position that caused it ("" for a backfill)
    audience_version: int


@dataclass(frozen=True)
class BackfillState:
    audience_version: int
    shard: int
    start: dict[str, Any] | None  # the profiles Query's ExclusiveStartKey (typed attributes)
    done: bool
    pages: int


class Refused(Exception):
    """A change was not recorded: `head` (another change took the number; retry) or
    `member` (the member item moved since it was read: re-read and decide again)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class AudienceMemberRepo:
    def __init__(self, table: Table) -> None:
        self.t = table

    # -- reads ----------------------------------------------------------------------------

    def state(self, account_id: str, audience_id: str, profile_id: str) -> MemberState | None:
        row = self.t.get(members_pk(account_id, audience_id), MEMBER_PREFIX + profile_id, consistent=True)
        return _state(row) if row is not None else None

    def states(self, account_id: str, audience_id: str, profile_ids: list[str]) -> dict[str, MemberState]:
        """The recorded state of many profiles (BatchGetItem, 100 keys a request, consistent)."""
        pk = members_pk(account_id, audience_id)
        rows = self.t.batch_get([{"PK": pk, "SK": MEMBER_PREFIX + pid} for pid in profile_ids], consistent=True)
        return {row["SK"][len(MEMBER_PREFIX):]: _state(row) for row in rows}

    def head(self, account_id: str, audience_id: str) -> int:
        row = self.t.get(changes_pk(account_id, audience_id), HEAD_SK, consistent=True)
        return int(row["n"]) if row else 0

    def heads(self, audiences: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """The heads of many (account, audience) logs (BatchGetItem, 100 keys a request,
        consistent); 0 for a log with no change yet."""
        wanted = sorted(set(audiences))
        rows = self.t.batch_get([{"PK": changes_pk(a, aud), "SK": HEAD_SK} for a, aud in wanted], consistent=True)
        found = {str(r["PK"]): int(r["n"]) for r in rows}
        return {(a, aud): found.get(changes_pk(a, aud), 0) for a, aud in wanted}

    def changes(self, account_id: str, audience_id: str, *, after: int, upto: int,
                limit: int = 1000) -> list[Change]:
        """Changes after..upto (numbers), oldest first, at most `limit`: one Query a page.
        Consistent: a reader that saw head = upto must find every change up to it."""
        if upto <= after:
            return []
        resp = self.t.client.query(
            TableName=self.t.name, ConsistentRead=True, Limit=limit, ScanIndexForward=True,
            KeyConditionExpression="PK = :pk AND SK BETWEEN :a AND :b",
            ExpressionAttributeValues={":pk": {"S": changes_pk(account_id, audience_id)},
                                       ":a": {"S": change_sk(after + 1)}, ":b": {"S": change_sk(upto)}})
        return [Change(int(i["n"]), i["profile_id"], i["change"], i["at"], i.get("pos", ""), int(i.get("av", 0)))
                for i in (deser(row) for row in resp.get("Items", []))]

    def all_changes(self, account_id: str, audience_id: str, *, after: int, upto: int,
                    on_page: Callable[[], None] | None = None) -> list[Change]:
        """Every change after..upto, oldest first (a Query per 1,000; `on_page` after each)."""
        out: list[Change] = []
        while after < upto:
            page = self.changes(account_id, audience_id, after=after, upto=upto)
            if not page:
                raise IncompleteBatch(f"audience {audience_id}: change {after + 1} is missing below head {upto}")
            out += page
            after = page[-1].n
            if on_page is not None:
                on_page()
        return out

    def members(self, account_id: str, audience_id: str, page_size: int = 1000) -> Iterator[str]:
        """The audience's current members' profile ids (a Query per page, filtered on `in`)."""
        kwargs: dict[str, Any] = {
            "TableName": self.t.name,
            "KeyConditionExpression": "PK = :pk AND begins_with(SK, :p)",
            "FilterExpression": "#in = :t",
            "ExpressionAttributeNames": {"#in": "in"},
            "ExpressionAttributeValues": {":pk": {"S": members_pk(account_id, audience_id)},
                                          ":p": {"S": MEMBER_PREFIX}, ":t": {"BOOL": True}},
            "ProjectionExpression": "SK",
            "ConsistentRead": True,
            "Limit": page_size,
        }
        while True:
            resp = self.t.client.query(**kwargs)
            for item in resp.get("Items", []):
                yield item["SK"]["S"][len(MEMBER_PREFIX):]
            last = resp.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last

    # -- the one write --------------------------------------------------------------------

    def record(self, account_id: str, verdict: Verdict, change: str, *, was: MemberState | None,
               head: int, position: str, profile_version: int) -> int:
        """Record `change` ("enter"/"exit") as change head+1; returns its number.

        The member item's condition is what makes this idempotent: it must still be in the
        state it was read in (`was`), and the change must be newer than what it reflects:
        from the stream, a later stream position (a redelivered record is never newer than
        itself); from a backfill (position ""), a profile version at least as recent as the
        one recorded. Raises Refused naming the write that refused."""
        aid = verdict.audience_id
        n = head + 1
        at = now_iso()
        mem_key = {"PK": {"S": members_pk(account_id, aid)}, "SK": {"S": MEMBER_PREFIX + verdict.profile_id}}
        values: dict[str, Any] = {
            ":in": {"BOOL": verdict.member}, ":pv": {"N": str(profile_version)},
            ":av": {"N": str(verdict.audience_version)}, ":at": {"S": at},
        }
        if was is None:
            cond = "attribute_not_exists(PK)"
        else:
            values[":was"] = {"BOOL": was.member}
            cond = "#in = :was AND av <= :av"
        sets = "#in = :in, pv = :pv, av = :av, #at = :at"
        if position:
            values[":pos"] = {"S": position}
            sets += ", pos = :pos"
            if was is not None:
                cond += " AND (attribute_not_exists(pos) OR pos < :pos)"
        elif was is not None:
            cond += " AND pv <= :pv"
        head_key = {"PK": {"S": changes_pk(account_id, aid)}, "SK": {"S": HEAD_SK}}
        head_cond: dict[str, Any] = (
            {"ConditionExpression": "attribute_not_exists(PK)"} if head == 0 else
            {"ConditionExpression": "n = :h", "ExpressionAttributeValues": {":h": {"N": str(head)}, ":n": {"N": str(n)}}})
        head_values = head_cond.pop("ExpressionAttributeValues", {":n": {"N": str(n)}})
        entry = {
            "PK": {"S": changes_pk(account_id, aid)}, "SK": {"S": change_sk(n)}, "type": {"S": "audience_change"},
            "n": {"N": str(n)}, "profile_id": {"S": verdict.profile_id}, "change": {"S": change},
            "at": {"S": at}, "pos": {"S": position}, "av": {"N": str(verdict.audience_version)},
        }
        tx = Transaction(self.t)
        tx.add("head", {"Update": {"TableName": self.t.name, "Key": head_key, "UpdateExpression": "SET n = :n",
                                   "ExpressionAttributeValues": head_values, **head_cond}})
        tx.add("entry", {"Put": {"TableName": self.t.name, "Item": entry,
                                 "ConditionExpression": "attribute_not_exists(PK)"}})
        tx.add("member", {"Update": {"TableName": self.t.name, "Key": mem_key, "UpdateExpression": "SET " + sets,
                                     "ConditionExpression": cond, "ExpressionAttributeNames": {"#in": "in", "#at": "at"},
                                     "ExpressionAttributeValues": values}})
        try:
            tx.commit()
        except TransactionFailed as exc:
            if "member" in exc.refused:
                raise Refused("member") from None
            if exc.refused or exc.conflict:
                raise Refused("head") from None
            raise
        return n

    # -- backfills ------------------------------------------------------------------------

    def backfill(self, account_id: str, audience_id: str) -> BackfillState | None:
        row = self.t.get(changes_pk(account_id, audience_id), BACKFILL_SK, consistent=True)
        if row is None:
            return None
        start = row.get("start_key")
        return BackfillState(int(row["av"]), int(row["shard"]), _typed_key(start) if start else None,
                             bool(row.get("done")), int(row.get("pages", 0)))

    def start_backfill(self, account_id: str, audience_id: str, audience_version: int) -> bool:
        """A backfill of `audience_version` from the first page; False when one of this
        version (or a later one) already exists."""
        return self.t.write_if(
            "put_item",
            Item={"PK": {"S": changes_pk(account_id, audience_id)}, "SK": {"S": BACKFILL_SK},
                  "type": {"S": "audience_backfill"}, "av": {"N": str(audience_version)},
                  "shard": {"N": "0"}, "done": {"BOOL": False}, "pages": {"N": "0"},
                  "started_at": {"S": now_iso()}},
            ConditionExpression="attribute_not_exists(PK) OR av < :av",
            ExpressionAttributeValues={":av": {"N": str(audience_version)}},
        )

    def advance_backfill(self, account_id: str, audience_id: str, at: BackfillState,
                         shard: int, start: dict[str, Any] | None, done: bool) -> bool:
        """Move the backfill past the page it was at, only if it is still there (one
        delivery of a page advances it; a duplicate finds it moved and stops)."""
        names = {"#d": "done", "#s": "shard"}
        values: dict[str, Any] = {
            ":av": {"N": str(at.audience_version)}, ":pages": {"N": str(at.pages)},
            ":next": {"N": str(at.pages + 1)}, ":shard": {"N": str(shard)}, ":done": {"BOOL": done},
            ":at": {"S": now_iso()},
        }
        update = "SET pages = :next, #s = :shard, #d = :done, updated_at = :at"
        if start:
            values[":start"] = {"S": _key_text(start)}
            update += ", start_key = :start"
        else:
            update += " REMOVE start_key"
        return self.t.write_if(
            "update_item",
            Key={"PK": {"S": changes_pk(account_id, audience_id)}, "SK": {"S": BACKFILL_SK}},
            UpdateExpression=update,
            ConditionExpression="av = :av AND pages = :pages",
            ExpressionAttributeNames=names, ExpressionAttributeValues=values,
        )


def _state(row: dict[str, Any]) -> MemberState:
    return MemberState(bool(row.get("in")), str(row.get("pos", "")), int(row.get("pv", 0)), int(row.get("av", 0)))


def _key_text(key: dict[str, Any]) -> str:
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


def _typed_key(text: Any) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(str(text))
    return loaded


__all__ = [
    "AudienceMemberRepo",
    "BackfillState",
    "Change",
    "Refused",
    "change_sk",
    "changes_pk",
    "members_pk",
]
