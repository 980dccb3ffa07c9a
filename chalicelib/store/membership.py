"""Export bookkeeping in the main table: confirmed audience memberships and run plans.

Keys (docs/export.md):
  membership chunk  PK=ACCT#<a>#JOB#<job>#MEM   SK=G#<generation 8 digits>#S#<set>#C#<n 5 digits>
  plan chunk        PK=ACCT#<a>#RUN#<run>#PLAN  SK=S#<set>#C#<n 5 digits>

A *membership set* is the sorted list of profile ids an export job has told its
destination about, cut into chunks of at most MEMBER_CHUNK_BYTES of ids ("\\n"-joined,
zlib-compressed into one binary attribute). A *plan* is the list of changes one run sends:
rows `[action, profile_id, value, ...]`, JSON, cut into chunks of at most PLAN_CHUNK_BYTES
compressed.

Both are written under a `set` id chosen by the attempt that writes them (a fresh random
token per attempt), never overwritten: whichever attempt commits the run's step 0 names
its own set in the run's cursor, so a slower, stale attempt can only ever write items that
nothing points at. Those, and superseded generations, get `expires_at` (TTL) and go.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
import zlib
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from chalicelib.store import keys as K
from chalicelib.store.dynamo import IncompleteBatch, Table

MEMBER_CHUNK_BYTES = 300_000  # raw "\n"-joined ids per membership chunk (compressed: less)
PLAN_CHUNK_RAW_BYTES = 1_000_000  # raw JSON rows per plan chunk, before compression...
PLAN_CHUNK_BYTES = 300_000  # ...and at most this much once compressed (items stop at 400 KB)
SUPERSEDED_TTL_SECONDS = 7 * 86400  # old generations and orphaned sets linger a week
PLAN_TTL_SECONDS = 90 * 86400  # like runs: a paused run can be resumed as long as it exists

# One change of a plan: (action "add" | "remove", profile id, values of the exported fields).
PlanRow = tuple[str, str, list[Any]]
_LETTER = {"add": "a", "remove": "r"}
_ACTION = {v: k for k, v in _LETTER.items()}


def new_set_id() -> str:
    return secrets.token_hex(5)


def membership_pk(account_id: str, job_id: str) -> str:
    return f"{K.account_pk(account_id)}#JOB#{job_id}#MEM"


def membership_prefix(generation: int, set_id: str) -> str:
    return f"G#{generation:08d}#S#{set_id}#C#"


def plan_pk(account_id: str, run_id: str) -> str:
    return f"{K.account_pk(account_id)}#RUN#{run_id}#PLAN"


def plan_sk(set_id: str, n: int) -> str:
    return f"S#{set_id}#C#{n:05d}"


class MissingChunk(RuntimeError):
    """A chunk the committed bookkeeping names is not in the table."""


@dataclass(frozen=True)
class SetRef:
    """Where a membership set lives; kept in job.state (confirmed) or the run's cursor."""

    generation: int
    set_id: str
    chunks: int
    members: int

    def to_json(self) -> dict[str, Any]:
        return {"generation": self.generation, "set": self.set_id, "chunks": self.chunks,
                "members": self.members}

    @classmethod
    def from_json(cls, raw: Any) -> SetRef | None:
        if not isinstance(raw, dict):
            return None
        try:
            return cls(int(raw["generation"]), str(raw["set"]), int(raw["chunks"]), int(raw["members"]))
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class PlanRef:
    """Where a run's plan lives; kept in the run's cursor. `starts[n]` is the index of the
    first row of chunk n, so any row is found without reading the chunks before it."""

    set_id: str
    rows: int
    starts: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"set": self.set_id, "rows": self.rows, "starts": list(self.starts)}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> PlanRef:
        return cls(str(raw["set"]), int(raw["rows"]), tuple(int(s) for s in raw["starts"]))


def chunk_ids(ids: Sequence[str], limit: int = MEMBER_CHUNK_BYTES) -> list[list[str]]:
    """Sorted ids cut into chunks of at most `limit` bytes ("\\n"-joined). Pure."""
    chunks: list[list[str]] = []
    current: list[str] = []
    size = 0
    for pid in ids:
        n = len(pid.encode()) + 1
        if current and size + n > limit:
            chunks.append(current)
            current, size = [], 0
        current.append(pid)
        size += n
    if current:
        chunks.append(current)
    return chunks


def _encode_rows(rows: Sequence[PlanRow]) -> bytes:
    packed = [[_LETTER[a], pid, *values] for a, pid, values in rows]
    return zlib.compress(json.dumps(packed, separators=(",", ":"), ensure_ascii=False).encode(), 6)


def _decode_rows(blob: bytes) -> list[PlanRow]:
    return [(_ACTION[r[0]], r[1], list(r[2:])) for r in json.loads(zlib.decompress(blob))]


def chunk_plan(rows: Sequence[PlanRow], raw_limit: int = PLAN_CHUNK_RAW_BYTES,
               packed_limit: int = PLAN_CHUNK_BYTES) -> list[tuple[bytes, int]]:
    """Plan rows cut into (compressed chunk, rows in it): at most `raw_limit` bytes of JSON each, halved
    again until the compressed chunk fits `packed_limit` (one row always fits: a profile is
    at most 350 KB). Deterministic: the same rows give the same chunks. Pure."""
    groups: list[Sequence[PlanRow]] = []
    start, size = 0, 0
    for i, (action, pid, values) in enumerate(rows):
        n = len(json.dumps([action, pid, *values], separators=(",", ":"), ensure_ascii=False).encode())
        if i > start and size + n > raw_limit:
            groups.append(rows[start:i])
            start, size = i, 0
        size += n
    if start < len(rows):
        groups.append(rows[start:])
    out: list[tuple[bytes, int]] = []
    pending = list(reversed(groups))
    while pending:
        group = pending.pop()
        blob = _encode_rows(group)
        if len(blob) > packed_limit and len(group) > 1:
            half = len(group) // 2
            pending += [group[half:], group[:half]]
            continue
        out.append((blob, len(group)))
    return out


class MembershipRepo:
    """Membership sets and run plans of export jobs (one instance per step)."""

    def __init__(self, table: Table, *, sleep: Any = time.sleep) -> None:
        self.t = table
        self.sleep = sleep

    # -- requests -------------------------------------------------------------------------

    def _batch_put(self, items: Sequence[dict[str, Any]]) -> None:
        """BatchWriteItem of serialised items, 25 (at most 25 x 400 KB < 16 MB) per request."""
        self.t.batch_write([{"PutRequest": {"Item": i}} for i in items], sleep=self.sleep)

    def _query(self, pk: str, prefix: str, *, projection: str | None = None,
               only_live: bool = False) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self.t.name,
            "KeyConditionExpression": "PK = :pk AND begins_with(SK, :p)",
            "ExpressionAttributeValues": {":pk": {"S": pk}, ":p": {"S": prefix}},
            "ConsistentRead": True,
        }
        if projection:
            kwargs["ProjectionExpression"] = projection
        if only_live:
            kwargs["FilterExpression"] = "attribute_not_exists(expires_at)"
        out: list[dict[str, Any]] = []
        while True:
            resp = self.t.client.query(**kwargs)
            out += resp.get("Items", [])
            last = resp.get("LastEvaluatedKey")
            if not last:
                return out
            kwargs["ExclusiveStartKey"] = last

    def _expire(self, pk: str, sks: Iterable[str], seconds: int) -> int:
        until = str(int(time.time()) + seconds)
        n = 0
        for sk in sks:
            self._expire_one(pk, sk, until)
            n += 1
        return n

    def _expire_one(self, pk: str, sk: str, until: str) -> None:
        # Conditional: never recreate an item TTL already deleted.
        self.t.write_if(
            "update_item",
            Key={"PK": {"S": pk}, "SK": {"S": sk}},
            UpdateExpression="SET expires_at = :x",
            ConditionExpression="attribute_exists(PK)",
            ExpressionAttributeValues={":x": {"N": until}},
        )

    # -- membership sets ------------------------------------------------------------------

    def write_set(self, account_id: str, job_id: str, generation: int, set_id: str,
                  ids: Iterable[str]) -> SetRef:
        """Write a new set (sorted ids) and return where it is. Nothing expires it: it
        becomes the confirmed set when its run finishes, or the sweep expires it."""
        ordered = sorted(set(ids))
        pk = membership_pk(account_id, job_id)
        items = []
        for n, chunk in enumerate(chunk_ids(ordered)):
            items.append({
                "PK": {"S": pk},
                "SK": {"S": membership_prefix(generation, set_id) + f"{n:05d}"},
                "type": {"S": "membership"},
                "generation": {"N": str(generation)},
                "count": {"N": str(len(chunk))},
                "ids_z": {"B": zlib.compress("\n".join(chunk).encode(), 6)},
            })
        self._batch_put(items)
        return SetRef(generation, set_id, len(items), len(ordered))

    def read_set(self, account_id: str, job_id: str, ref: SetRef) -> set[str]:
        """Every id of a set (a Query over its chunks; none when it has no chunk)."""
        if ref.chunks == 0:
            return set()
        rows = self._query(membership_pk(account_id, job_id), membership_prefix(ref.generation, ref.set_id))
        if len(rows) != ref.chunks:
            raise MissingChunk(f"membership generation {ref.generation}: {len(rows)} of {ref.chunks} chunks found")
        out: set[str] = set()
        for row in rows:
            text = zlib.decompress(row["ids_z"]["B"]).decode()
            out.update(text.split("\n") if text else ())
        if len(out) != ref.members:
            raise MissingChunk(f"membership generation {ref.generation}: {len(out)} of {ref.members} members found")
        return out

    def sweep(self, account_id: str, job_id: str, keep: SetRef | None) -> int:
        """Give a TTL to every set of the job but `keep` (superseded generations, sets of
        attempts that never committed). Reads keys only; returns the chunks expired."""
        pk = membership_pk(account_id, job_id)
        kept = membership_prefix(keep.generation, keep.set_id) if keep else None
        rows = self._query(pk, "G#", projection="SK", only_live=True)
        stale = [r["SK"]["S"] for r in rows if not (kept and r["SK"]["S"].startswith(kept))]
        return self._expire(pk, stale, SUPERSEDED_TTL_SECONDS)

    def expire_set(self, account_id: str, job_id: str, ref: SetRef) -> int:
        """Give a superseded set's chunks a TTL (its keys are known: no read)."""
        prefix = membership_prefix(ref.generation, ref.set_id)
        sks = [f"{prefix}{n:05d}" for n in range(ref.chunks)]
        return self._expire(membership_pk(account_id, job_id), sks, SUPERSEDED_TTL_SECONDS)

    # -- plans ----------------------------------------------------------------------------

    def write_plan(self, account_id: str, run_id: str, set_id: str, rows: Sequence[PlanRow]) -> PlanRef:
        pk = plan_pk(account_id, run_id)
        until = str(int(time.time()) + PLAN_TTL_SECONDS)
        items, starts, first = [], [], 0
        for n, (blob, count) in enumerate(chunk_plan(rows)):
            items.append({
                "PK": {"S": pk},
                "SK": {"S": plan_sk(set_id, n)},
                "type": {"S": "export_plan"},
                "first": {"N": str(first)},
                "count": {"N": str(count)},
                "rows_z": {"B": blob},
                "expires_at": {"N": until},
            })
            starts.append(first)
            first += count
        self._batch_put(items)
        return PlanRef(set_id, len(rows), tuple(starts))

    def read_plan(self, account_id: str, run_id: str, ref: PlanRef, start: int, limit: int) -> list[PlanRow]:
        """Rows [start, start + limit) of a plan: one GetItem per chunk they span."""
        end = min(ref.rows, start + limit)
        out: list[PlanRow] = []
        n = bisect_right(ref.starts, start) - 1
        pk = plan_pk(account_id, run_id)
        while start + len(out) < end:
            resp = self.t.client.get_item(TableName=self.t.name, ConsistentRead=True,
                                          Key={"PK": {"S": pk}, "SK": {"S": plan_sk(ref.set_id, n)}})
            item = resp.get("Item")
            if not item:
                raise MissingChunk(f"plan chunk {n} of run {run_id} is missing")
            rows = _decode_rows(item["rows_z"]["B"])
            skip = start + len(out) - ref.starts[n]
            out += rows[skip:skip + end - start - len(out)]
            n += 1
        return out

    def delete_plan(self, account_id: str, run_id: str, ref: PlanRef) -> None:
        """Drop a finished run's plan (it holds exported values: keep no copy longer than needed)."""
        pk = plan_pk(account_id, run_id)
        keys = [{"PK": {"S": pk}, "SK": {"S": plan_sk(ref.set_id, n)}} for n in range(len(ref.starts))]
        # Chunks DynamoDB keeps leaving go by their TTL (expires_at); the run's outcome stands.
        with contextlib.suppress(IncompleteBatch):
            self.t.batch_write([{"DeleteRequest": {"Key": k}} for k in keys], sleep=self.sleep)


__all__ = [
    "MEMBER_CHUNK_BYTES",
    "MembershipRepo",
    "MissingChunk",
    "PlanRef",
    "PlanRow",
    "SetRef",
    "chunk_ids",
    "chunk_plan",
    "membership_pk",
    "new_set_id",
    "plan_pk",
]
