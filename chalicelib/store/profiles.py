"""The profile store: profiles per account, found by their identifiers (docs/profiles.md).

Items (the profiles table, keys PK/SK):
  profile     PK=ACCT#<a>#PROFILES#<shard 00..15>  SK=PROF#<profile_id>   d=<JSON>
  identifier  PK=ACCT#<a>#ID#<kind>#<value>          SK=ID                 profile_id
  writer      PK=ACCT#<a>#PROFILES                   SK=WRITER  (the account's write lease)

A profile's id is derived from its creating identifier, so a record's identifiers are
looked up first as profile keys (no lookup item); only identifiers linked later to a
profile created by another one have an identifier item. A profile is one JSON attribute:
DynamoDB (and moto) pay per attribute, and nothing queries inside a profile.

An import step upserts a batch in a bounded number of requests: BatchGetItem (100 keys)
for the profiles its identifiers create, BatchGetItem for the identifier items of the
others (and for the profiles those name), BatchWriteItem (25 items) for new identifier
items first, then for the profiles. BatchWriteItem has no conditions, so the account's
profile writes are serialised by a lease, and exactly-once under redelivery comes from the
data itself:

* a new profile's id is derived from (account, creating identifier), so a replayed step
  mints the same id;
* identifier items are written before any profile item, so a crash leaves at worst
  identifiers pointing at a profile not written yet, which the replay then writes;
* each written profile remembers the outcomes of the last steps that wrote it, so a
  replayed step reports them instead of merging twice;
* a step applied in order within its job (a collection job's hand-offs) also gives a
  watermark (job, sequence): the profile keeps, per such job, the highest sequence that
  wrote it and its outcomes, so its replay is found however many other steps came between.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from chalicelib.domain import profiles as P
from chalicelib.domain.errors import BadRequest
from chalicelib.store import keys as K
from chalicelib.store.aws import Beside
from chalicelib.store.dynamo import (
    Backoff,
    ConditionFailed,
    IncompleteBatch,
    Page,
    Table,
    conditional,
    deser,
    now_iso,
)

SHARDS = 16
PROFILE_PREFIX = "PROF#"
ID_SK = "ID"
WRITER_SK = "WRITER"
STEP_HISTORY = 4  # steps whose outcomes a profile remembers
MAX_PROFILE_BYTES = 350_000  # DynamoDB items stop at 400 KB
LEASE_WAIT = Backoff(attempts=0, base=0.1, jitter=False)  # paces the wait; lease_wait_seconds bounds it
_LETTER = {"added": "a", "updated": "u", "unchanged": "n"}
_OUTCOME = {v: k for k, v in _LETTER.items()}
DATA = "d"  # the one attribute that holds a profile (JSON)


# -- keys ---------------------------------------------------------------------------------


def shard_of(profile_id: str) -> int:
    return zlib.crc32(profile_id.encode()) % SHARDS


def profiles_pk(account_id: str, shard: int) -> str:
    return f"{K.account_pk(account_id)}#PROFILES#{shard:02d}"


def profile_key(account_id: str, profile_id: str) -> dict[str, str]:
    return {"PK": profiles_pk(account_id, shard_of(profile_id)), "SK": PROFILE_PREFIX + profile_id}


def identifier_key(account_id: str, kind: str, value: str) -> dict[str, str]:
    return {"PK": f"{K.account_pk(account_id)}#ID#{kind}#{value}", "SK": ID_SK}


def writer_key(account_id: str) -> dict[str, str]:
    return {"PK": f"{K.account_pk(account_id)}#PROFILES", "SK": WRITER_SK}


def _attr_key(key: Mapping[str, str]) -> dict[str, Any]:
    return {k: {"S": v} for k, v in key.items()}


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# -- errors and figures -------------------------------------------------------------------


class ProfilesBusy(RuntimeError):
    """Another step holds the account's profile write lease (or took it over): retry later."""


@dataclass
class StoreStats:
    """What the store spent: requests per operation (retries included) and capacity units."""

    requests: dict[str, int] = field(default_factory=dict)
    read_units: float = 0.0
    write_units: float = 0.0
    retries: int = 0  # requests re-sent for unprocessed keys/items

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def add(self, op: str, units: float, *, write: bool) -> None:
        self.requests[op] = self.requests.get(op, 0) + 1
        if write:
            self.write_units += units
        else:
            self.read_units += units


def _units(resp: Mapping[str, Any]) -> float:
    cc = resp.get("ConsumedCapacity")
    if not cc:
        return 0.0
    if isinstance(cc, dict):
        cc = [cc]
    return float(sum(float(c.get("CapacityUnits", 0) or 0) for c in cc))


def _data(row: Mapping[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(row[DATA])
    return data


def _profile(data: Mapping[str, Any]) -> P.Profile:
    return P.Profile(
        id=data["id"],
        account_id=data["account_id"],
        identifiers=data.get("identifiers") or {},
        fields=data.get("fields") or {},
        created_at=data["created_at"],
        updated_at=data["updated_at"],
        version=int(data.get("version", 1)),
    )


# -- planning a batch ---------------------------------------------------------------------


@dataclass
class _Group:
    """One profile and the records of the batch that resolved to it, in batch order."""

    id: str
    new: bool
    identifiers: dict[str, list[str]]
    fields: dict[str, Any]
    created_at: str | None
    version: int
    steps: list[list[str]]
    marks: dict[str, list[Any]]  # job -> [highest sequence applied, its outcome letters]
    recorded: str | None  # outcome letters this step already wrote (a replay)
    members: list[int] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)
    new_links: list[tuple[str, str]] = field(default_factory=list)
    dirty: bool = False

    @classmethod
    def start(cls, pid: str, data: Mapping[str, Any] | None, step_tag: str,
              watermark: tuple[str, int] | None) -> _Group:
        if data is None:
            # Never written, or its identifiers were linked just before a crash.
            return cls(pid, True, {}, {}, None, 0, [], {}, None)
        steps = data.get("steps") or []
        marks = {str(k): list(v) for k, v in (data.get("marks") or {}).items()}
        recorded = next((letters for tag, letters in steps if tag == step_tag), None)
        mark = marks.get(watermark[0]) if watermark is not None and recorded is None else None
        if watermark is not None and mark is not None and int(mark[0]) >= watermark[1]:
            # Applied already, though other steps have since pushed its tag out of `steps`.
            # A higher mark would be a later step of the job: it reports nothing new.
            recorded = str(mark[1]) if int(mark[0]) == watermark[1] else ""
        return cls(
            pid,
            False,
            {k: list(v) for k, v in (data.get("identifiers") or {}).items()},
            dict(data.get("fields") or {}),
            data["created_at"],
            int(data.get("version", 1)),
            steps,
            marks,
            recorded,
        )

    def has(self, kind: str, value: str) -> bool:
        return value in self.identifiers.get(kind, ())

    def link(self, kind: str, value: str) -> None:
        self.identifiers[kind] = sorted({*self.identifiers.get(kind, ()), value})


class _Planner:
    """Resolves every record to a profile and merges it in, in batch order. Pure.

    A record joins the profile of its first identifier (mapping order) that is known,
    in the store or earlier in this batch; its unknown identifiers are linked to that
    profile (an identifier item, unless the profile's id derives from it). A record with
    no known identifier creates the profile its first identifier derives. An identifier
    already pointing at another profile is never moved.

    Resumable, so that planning overlaps the reads still in flight: `plan_read` takes
    the records, in order, whose every identifier derives a profile already read. Such a
    record resolves the same whatever arrives later: `known` holds a derived id found in
    the store before any identifier item is looked up, and the records before it are
    planned first. The first record that needs more stops it; `plan_rest` takes the
    others once every read and lookup is in.
    """

    def __init__(self, account_id: str, *, step_tag: str, rules: Mapping[str, str], default: str,
                 watermark: tuple[str, int] | None = None) -> None:
        self.account_id, self.step_tag, self.rules, self.default = account_id, step_tag, rules, default
        self.watermark = watermark
        self.records: list[P.ProfileRecord] = []
        self.derived: dict[tuple[str, str], str] = {}  # the profile id each identifier would create
        self.stored: dict[str, Mapping[str, Any]] = {}  # profiles read, by id
        self.known: dict[tuple[str, str], str] = {}  # identifier -> the stored profile it reaches
        self.in_batch: dict[tuple[str, str], str] = {}
        self.groups: dict[str, _Group] = {}
        self.planned = 0

    def plan_read(self, upto: int) -> None:
        """Plan records[planned:upto] while each one reaches only profiles already read."""
        while self.planned < upto:
            rec = self.records[self.planned]
            pids = [(k, self.derived[k]) for k in rec.identifiers.items()]
            if not all(pid in self.stored for _, pid in pids):
                return
            self.known.update(pids)
            self._merge(self.planned, rec)
            self.planned += 1

    def plan_rest(self) -> tuple[dict[str, _Group], list[str]]:
        """The records not planned yet, then each record's outcome."""
        for i in range(self.planned, len(self.records)):
            self._merge(i, self.records[i])
        self.planned = len(self.records)
        outcomes: list[str] = ["unchanged"] * len(self.records)
        for g in self.groups.values():
            if g.recorded is not None:
                letters = g.recorded
                for n, i in enumerate(g.members):
                    outcomes[i] = _OUTCOME.get(letters[n], "unchanged") if n < len(letters) else "unchanged"
            else:
                for i, outcome in zip(g.members, g.outcomes, strict=True):
                    outcomes[i] = outcome
        return self.groups, outcomes

    def _merge(self, i: int, rec: P.ProfileRecord) -> None:
        keys = list(rec.identifiers.items())
        resolved = [(k, self.known.get(k) or self.in_batch.get(k)) for k in keys]
        target = next((pid for _, pid in resolved if pid), None)
        if target is None:
            target = self.derived[keys[0]]
        g = self.groups.get(target)
        if g is None:
            g = self.groups[target] = _Group.start(target, self.stored.get(target), self.step_tag, self.watermark)
        g.members.append(i)
        if g.recorded is not None:
            return
        linked = False
        for (kind, value), pid in resolved:
            if pid is None:
                if len(g.identifiers.get(kind, ())) >= P.MAX_VALUES_PER_KIND:
                    continue
                self.in_batch[(kind, value)] = target
                if self.derived[(kind, value)] != target:
                    g.new_links.append((kind, value))  # found through an identifier item
                g.link(kind, value)
                linked = True
            elif pid == target and not g.has(kind, value):
                g.link(kind, value)  # its identifier item was written before a crash
                linked = True
        g.fields, changed = P.merge(g.fields, rec.fields, self.rules, self.default)
        if g.new and not g.outcomes:
            outcome = "added"
        elif linked or changed:
            outcome = "updated"
        else:
            outcome = "unchanged"
        g.outcomes.append(outcome)
        g.dirty = g.dirty or outcome != "unchanged"


# -- the repository -----------------------------------------------------------------------


class LeaseTicket:
    """The account's write lease being taken on another thread (ProfileRepo.lease_ahead)."""

    def __init__(self, repo: ProfileRepo, account_id: str, owner: str, taken: Beside[float]) -> None:
        self.repo, self.account_id, self.owner, self._taken = repo, account_id, owner, taken

    def hold(self, account_id: str, owner: str) -> None:
        """Wait until the lease is held (ProfilesBusy when it never was), and write under it."""
        if (account_id, owner) != (self.account_id, self.owner):
            raise ValueError("the ticket was taken for another account or step")
        self.repo._lease = (account_id, owner, self._taken.result())

    def release(self) -> None:
        """Give the lease up once the take has finished (a take still in flight would
        otherwise leave it held); nothing to give up if it was never taken."""
        self.repo._lease = None
        if self._taken.exception() is None:
            self.repo._release(self.account_id, self.owner)


class ProfileRepo:
    """Profiles of one table. Keep one instance per step: `last_stats` is per call.

    `checkpoint(writes_done)` is called before the first write request (0) and after each
    one; raising there simulates a crash at that point (tests inject it; no patching).

    `parallel` > 1 keeps that many batch requests in flight at once: a step's time is mostly
    waiting on DynamoDB, one request after another. Identifier writes still all finish
    before the first profile write; within one kind the items are independent, so any
    subset written before a crash is a state the replay completes. The lease is checked
    before each request is sent, so at most `parallel - 1` requests already sent finish
    after the lease was lost (one request with `parallel` 1).
    """

    def __init__(
        self,
        table: Table,
        *,
        checkpoint: Callable[[int], None] | None = None,
        write_batch: int = 25,
        read_batch: int = 100,
        parallel: int = 1,
        lease_seconds: float = 60.0,
        lease_wait_seconds: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.t = table
        self.checkpoint = checkpoint
        self.write_batch = max(1, min(25, write_batch))
        self.read_batch = max(1, min(100, read_batch))
        self.parallel = max(1, parallel)
        self._stats_lock = threading.Lock()
        self.lease_seconds = lease_seconds
        self.lease_wait_seconds = lease_wait_seconds
        self.sleep = sleep
        self.clock = clock
        self.stats = StoreStats()  # since this repo was made
        self.last_stats = StoreStats()  # of the last public call
        self._lease: tuple[str, str, float] | None = None  # account, owner, renewed at
        self._writes = 0

    # -- requests -------------------------------------------------------------------------

    def _call(self, op: str, *, write: bool, **kwargs: Any) -> dict[str, Any]:
        method = "".join("_" + c.lower() if c.isupper() else c for c in op).lstrip("_")
        resp: dict[str, Any] = getattr(self.t.client, method)(ReturnConsumedCapacity="TOTAL", **kwargs)
        units = _units(resp)
        with self._stats_lock:
            self.stats.add(op, units, write=write)
            self.last_stats.add(op, units, write=write)
        return resp

    def _backoff(self, seconds: float) -> None:
        with self._stats_lock:
            self.stats.retries += 1
            self.last_stats.retries += 1
        self.sleep(seconds)

    def _batch_get(
        self,
        keys: Sequence[Mapping[str, str]],
        attributes: Sequence[str],
        convert: Callable[[dict[str, Any]], dict[str, Any]] = lambda item: item,
    ) -> list[dict[str, Any]]:
        """`attributes` of every item that exists among `keys` (strongly consistent), any
        order, each passed through `convert` on the thread that read it (decoding overlaps
        the requests still in flight)."""
        chunks = [keys[start : start + self.read_batch] for start in range(0, len(keys), self.read_batch)]
        if self.parallel == 1 or len(chunks) < 2:
            return [item for chunk in chunks for item in self._read_chunk(chunk, attributes, convert)]
        with ThreadPoolExecutor(min(self.parallel, len(chunks))) as pool:
            parts = pool.map(lambda chunk: self._read_chunk(chunk, attributes, convert), chunks)
            return [item for part in parts for item in part]

    def _read_chunk(
        self,
        chunk: Sequence[Mapping[str, str]],
        attributes: Sequence[str],
        convert: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> list[dict[str, Any]]:
        """One BatchGetItem of at most `read_batch` keys, and its unprocessed keys again."""
        rows = self.t.batch_get(chunk, consistent=True, attributes=attributes, per_request=self.read_batch,
                                sleep=self._backoff, send=functools.partial(self._call, "BatchGetItem", write=False))
        return [convert(row) for row in rows]

    def _send(self, chunk: Sequence[dict[str, Any]]) -> None:
        self.t.batch_put(chunk, per_request=self.write_batch, sleep=self._backoff,
                         send=functools.partial(self._call, "BatchWriteItem", write=True))

    def _sent(self) -> None:
        self._writes += 1
        if self.checkpoint is not None:
            self.checkpoint(self._writes)

    def _chunks(self, items: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        chunk: list[dict[str, Any]] = []
        for item in items:
            chunk.append(item)
            if len(chunk) == self.write_batch:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def _batch_write(self, items: Iterable[dict[str, Any]]) -> None:
        """Write `items`, 25 a request. `items` may be produced lazily: with `parallel` > 1,
        the next chunk is built on this thread while the previous ones are in flight."""
        if self.parallel == 1:
            for chunk in self._chunks(items):
                self._keep_lease()
                self._send(chunk)
                self._sent()
            return
        # A sliding window: the lease check and the checkpoints stay on this thread, in order.
        with ThreadPoolExecutor(self.parallel) as pool:
            inflight: deque[Future[None]] = deque()
            try:
                for chunk in self._chunks(items):
                    if len(inflight) >= self.parallel:
                        inflight.popleft().result()
                        self._sent()
                    self._keep_lease()
                    inflight.append(pool.submit(self._send, chunk))
                while inflight:
                    inflight.popleft().result()
                    self._sent()
            except BaseException:
                for f in inflight:
                    f.cancel()
                raise

    # -- the write lease ------------------------------------------------------------------

    @contextmanager
    def lease(self, account_id: str, owner: str) -> Iterator[None]:
        """Hold the account's profile write lease. The same owner (a redelivered step) takes
        it over at once; others wait up to lease_wait_seconds, then get ProfilesBusy."""
        self._lease = (account_id, owner, self._acquire(account_id, owner))
        try:
            yield
        finally:
            self._lease = None
            self._release(account_id, owner)

    def lease_ahead(self, account_id: str, owner: str) -> LeaseTicket:
        """Start taking the lease (as `lease` does) on another thread, while the caller reads
        what it will write: `upsert_batch(..., ticket=)` waits for it. The caller must end
        every path with `ticket.release()`."""
        self.last_stats = StoreStats()  # the step's upsert adds to these
        return LeaseTicket(self, account_id, owner, Beside(lambda: self._acquire(account_id, owner), "profile-lease"))

    def _acquire(self, account_id: str, owner: str) -> float:
        """Wait for the lease; returns when it was taken (its renewal counts from then)."""
        waited, attempt = 0.0, 0
        while not self._take(account_id, owner, "attribute_not_exists(PK) OR #u < :now OR #o = :me"):
            if waited >= self.lease_wait_seconds:
                raise ProfilesBusy("another import is writing this account's profiles; retry shortly")
            pause = LEASE_WAIT.delay(attempt)
            self.sleep(pause)
            waited += pause
            attempt += 1
        return self.clock()

    def _take(self, account_id: str, owner: str, condition: str) -> bool:
        now = self.clock()
        until = now + self.lease_seconds
        try:
            conditional(
                self._call,
                "UpdateItem",
                write=True,
                TableName=self.t.name,
                Key=_attr_key(writer_key(account_id)),
                UpdateExpression="SET #o = :me, #u = :until, #x = :x",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#o": "owner", "#u": "lease_until", "#x": "expires_at"},
                ExpressionAttributeValues={
                    ":me": {"S": owner},
                    ":until": {"N": f"{until:.3f}"},
                    ":x": {"N": str(int(until) + 86400)},  # TTL cleans up abandoned leases
                    **({":now": {"N": f"{now:.3f}"}} if ":now" in condition else {}),
                },
            )
        except ConditionFailed:
            return False
        return True

    def _keep_lease(self) -> None:
        """Renew the lease once a third of it has gone; refuse to write if it was lost."""
        if self._lease is None:
            raise RuntimeError("profile writes need the account's lease")
        account_id, owner, renewed = self._lease
        if self.clock() - renewed < self.lease_seconds / 3:
            return
        if not self._take(account_id, owner, "#o = :me"):
            raise ProfilesBusy("the profile write lease was taken over; this step will be retried")
        self._lease = (account_id, owner, self.clock())

    def release(self, account_id: str, owner: str) -> None:
        """Give up the account's write lease if `owner` still holds it: a replayed step
        that finds nothing left to write frees the lease its dead first attempt kept."""
        self._release(account_id, owner)

    def _release(self, account_id: str, owner: str) -> None:
        with contextlib.suppress(ConditionFailed):  # not (or no longer) ours: nothing to give up
            conditional(
                self._call,
                "DeleteItem",
                write=True,
                TableName=self.t.name,
                Key=_attr_key(writer_key(account_id)),
                ConditionExpression="#o = :me",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":me": {"S": owner}},
            )

    # -- upsert ---------------------------------------------------------------------------

    def upsert_batch(
        self,
        account_id: str,
        records: Iterable[P.ProfileRecord],
        *,
        step_tag: str,
        rules: Mapping[str, str] | None = None,
        default: str = "latest",
        ticket: LeaseTicket | None = None,
        watermark: tuple[str, int] | None = None,
    ) -> list[str]:
        """Upsert records in order; one outcome per record: "added" (a new profile),
        "updated", "unchanged" or "too_large" (the profile would pass 350 KB; not stored).

        Exactly once per step_tag: replaying the same batch with the same tag, after a
        crash anywhere inside an earlier attempt (or after it finished), returns the same
        outcomes and leaves the same profiles.

        `records` may be a generator (an import maps its rows as it goes): it is consumed
        once the lease is held, and the profiles of the records seen so far are read while
        the rest are made. Nothing is written before the last record is planned.
        `ticket`: the lease, taken ahead by `lease_ahead` with this step_tag as owner.
        `watermark`: (job, sequence) of a step that its job applies strictly in sequence
        order, one at a time. Each profile it writes keeps, for that job, the sequence and
        the outcomes; a step whose sequence is not above the profile's mark is a replay and
        merges nothing, however many other steps wrote the profile since (the `steps`
        history only remembers the last few).
        """
        if ticket is None:  # with one, the stats count from lease_ahead on
            self.last_stats = StoreStats()
        if not step_tag or len(step_tag) > 256:
            raise ValueError("step_tag must be 1 to 256 characters")
        if watermark is not None and (not watermark[0] or len(watermark[0]) > 256 or watermark[1] < 1):
            raise ValueError("a watermark is a job id and a sequence number from 1")
        rest = iter(records)
        first = next(rest, None)
        if first is None:
            return []
        chained = itertools.chain((first,), rest)
        if ticket is not None:
            # The caller took the lease ahead and gives it up itself.
            ticket.hold(account_id, step_tag)
            try:
                return self._upsert(account_id, chained, step_tag, dict(rules or {}), default, watermark)
            finally:
                self._lease = None
        with self.lease(account_id, step_tag):
            return self._upsert(account_id, chained, step_tag, dict(rules or {}), default, watermark)

    def lookup(self, account_id: str, identifiers: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """(kind, normalized value) -> profile id, for those that reach a profile: the one
        they created (its key derives from them) or the one they were linked to."""
        self.last_stats = StoreStats()
        derived = {k: P.profile_id_for(account_id, *k) for k in identifiers}
        keys = [profile_key(account_id, p) for p in dict.fromkeys(derived.values())]
        found = {row["SK"].removeprefix(PROFILE_PREFIX) for row in self._batch_get(keys, ("SK",))}
        out = {k: p for k, p in derived.items() if p in found}
        return out | self._lookup(account_id, [k for k in identifiers if k not in out])

    def _lookup(self, account_id: str, identifiers: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        keys = {identifier_key(account_id, kind, value)["PK"]: (kind, value) for kind, value in identifiers}
        items = self._batch_get([{"PK": pk, "SK": ID_SK} for pk in keys], ("PK", "profile_id"))
        return {keys[i["PK"]]: i["profile_id"] for i in items}

    def _read_profiles(self, account_id: str, pids: Sequence[str]) -> dict[str, dict[str, Any]]:
        rows = self._batch_get([profile_key(account_id, p) for p in pids], (DATA,), _data)
        return {d["id"]: d for d in rows}

    def _take_records(self, source: Iterable[P.ProfileRecord], planner: _Planner) -> None:
        """Fills `planner` with the records, the profile id each identifier would create,
        and those profiles as stored: every `read_batch` new ids are read (on the pool)
        while later records are still being taken from `source`, and the records whose
        profiles have been read are planned while the later reads are in flight."""
        account_id, records, derived = planner.account_id, planner.records, planner.derived
        pids: set[str] = set()
        chunk: list[Mapping[str, str]] = []
        # Each read, and how many records had all their ids in the reads up to it.
        parts: list[tuple[Future[list[dict[str, Any]]] | list[dict[str, Any]], int]] = []
        pool = ThreadPoolExecutor(self.parallel) if self.parallel > 1 else None

        def read(keys: list[Mapping[str, str]], complete: int) -> None:
            if pool is None:
                parts.append((self._read_chunk(keys, (DATA,), _data), complete))
            else:
                parts.append((pool.submit(self._read_chunk, keys, (DATA,), _data), complete))

        try:
            for rec in source:
                if not rec.identifiers:
                    raise ValueError("every record needs an identifier (map_record omits the others)")
                records.append(rec)
                for k in rec.identifiers.items():
                    if k in derived:
                        continue
                    pid = derived[k] = P.profile_id_for(account_id, *k)
                    if pid not in pids:
                        pids.add(pid)
                        chunk.append(profile_key(account_id, pid))
                        if len(chunk) == self.read_batch:
                            read(chunk, len(records) - 1)  # this record's later ids may come next
                            chunk = []
            if chunk:
                read(chunk, len(records))
            for part, complete in parts:
                for d in part if isinstance(part, list) else part.result():
                    planner.stored[d["id"]] = d
                planner.plan_read(complete)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def _upsert(
        self,
        account_id: str,
        source: Iterable[P.ProfileRecord],
        step_tag: str,
        rules: dict[str, str],
        default: str,
        watermark: tuple[str, int] | None,
    ) -> list[str]:
        # 1. The profiles the batch's identifiers would have created: most records hit here.
        planner = _Planner(account_id, step_tag=step_tag, rules=rules, default=default, watermark=watermark)
        self._take_records(source, planner)
        derived, stored, known = planner.derived, planner.stored, planner.known
        known.update((k, pid) for k, pid in derived.items() if pid in stored)
        # 2. The others are new, or were linked to a profile another identifier created.
        linked = self._lookup(account_id, [k for k in derived if k not in known])
        known.update(linked)
        stored.update(self._read_profiles(account_id, [p for p in dict.fromkeys(linked.values()) if p not in stored]))
        groups, outcomes = planner.plan_rest()

        now = now_iso()

        def item(g: _Group) -> dict[str, Any] | None:
            """The profile item of a dirty group; None (outcomes: too_large) past 350 KB."""
            letters = "".join(_LETTER[o] for o in g.outcomes)
            steps = [*(s for s in g.steps if s[0] != step_tag), [step_tag, letters]][-STEP_HISTORY:]
            marks = g.marks if watermark is None else {**g.marks, watermark[0]: [watermark[1], letters]}
            body: dict[str, Any] = {
                "id": g.id,
                "account_id": account_id,
                "identifiers": g.identifiers,
                "fields": g.fields,
                "steps": steps,
                "created_at": g.created_at or now,
                "updated_at": now,
                "version": g.version + 1,
            }
            if marks:  # only profiles a collection job wrote carry them (one entry per such job)
                body["marks"] = marks
            data = _dumps(body)
            if len(data.encode()) > MAX_PROFILE_BYTES:
                for i, o in zip(g.members, g.outcomes, strict=True):
                    outcomes[i] = "too_large" if o != "unchanged" else o
                return None
            return {**profile_key(account_id, g.id), DATA: data}

        # A profile that links new identifiers is encoded now: whether it fits decides
        # whether its identifier items are written. The others (most) are encoded while
        # the writes before them are in flight.
        id_items: list[dict[str, Any]] = []
        ready: list[dict[str, Any]] = []
        later: list[_Group] = []
        for g in groups.values():
            if not g.dirty:
                continue
            if not g.new_links:
                later.append(g)
                continue
            found = item(g)
            if found is not None:
                ready.append(found)
                id_items += [{**identifier_key(account_id, kind, value), "profile_id": g.id}
                             for kind, value in g.new_links]

        def profile_items() -> Iterator[dict[str, Any]]:
            yield from ready
            for g in later:
                found = item(g)
                if found is not None:
                    yield found

        self._writes = 0
        if self.checkpoint is not None:
            self.checkpoint(0)
        # Identifiers first: a crash between the two leaves identifiers pointing at a
        # profile the replay writes, never a profile that no identifier reaches.
        self._batch_write(id_items)
        self._batch_write(profile_items())
        return outcomes

    # -- reads ----------------------------------------------------------------------------

    def _get(self, key: Mapping[str, str], *, consistent: bool) -> dict[str, Any] | None:
        resp = self._call("GetItem", write=False, TableName=self.t.name, Key=_attr_key(key),
                          ConsistentRead=consistent)
        item = resp.get("Item")
        return deser(item) if item else None

    def get(self, account_id: str, profile_id: str, *, consistent: bool = False) -> P.Profile | None:
        self.last_stats = StoreStats()
        if not P.PROFILE_ID.match(profile_id):
            return None
        row = self._get(profile_key(account_id, profile_id), consistent=consistent)
        return _profile(_data(row)) if row else None

    def get_many(self, account_id: str, profile_ids: Sequence[str], *,
                 step_tag: str | None = None) -> tuple[dict[str, P.Profile], set[str]]:
        """Profiles by id (BatchGetItem, 100 a request, strongly consistent), and the ids of
        those that `step_tag` already wrote: an enrichment step replayed after a crash
        skips them instead of asking the provider again (docs/providers/enrichment.md)."""
        self.last_stats = StoreStats()
        wanted = [p for p in dict.fromkeys(profile_ids) if P.PROFILE_ID.match(p)]
        rows = self._read_profiles(account_id, wanted)
        written = {pid for pid, d in rows.items()
                   if step_tag and any(s[0] == step_tag for s in d.get("steps") or [])}
        return {pid: _profile(d) for pid, d in rows.items()}, written

    def find(self, account_id: str, kind: str, value: str) -> P.Profile | None:
        """The profile an identifier points at (the value is normalized first)."""
        self.last_stats = StoreStats()
        try:
            normalized = P.normalize_identifier(kind, value)
        except ValueError:
            return None
        if normalized is None:
            return None
        # Most identifiers created their profile: its key derives from them.
        row = self._get(profile_key(account_id, P.profile_id_for(account_id, kind, normalized)), consistent=False)
        if row is None:
            item = self._get(identifier_key(account_id, kind, normalized), consistent=False)
            if item is None:
                return None
            row = self._get(profile_key(account_id, item["profile_id"]), consistent=False)
        return _profile(_data(row)) if row else None

    def _query(
        self, pk: str, *, limit: int | None, start: dict[str, Any] | None, count: bool = False
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "TableName": self.t.name,
            "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :p)",
            "ExpressionAttributeNames": {"#pk": "PK", "#sk": "SK"},
            "ExpressionAttributeValues": {":pk": {"S": pk}, ":p": {"S": PROFILE_PREFIX}},
            "ScanIndexForward": True,
        }
        if not count:
            kwargs["ProjectionExpression"] = DATA
        if limit is not None:
            kwargs["Limit"] = limit
        if start:
            kwargs["ExclusiveStartKey"] = start
        if count:
            kwargs["Select"] = "COUNT"
        return self._call("Query", write=False, **kwargs)

    def iterate(self, account_id: str, page_size: int = 100) -> Iterator[P.Profile]:
        """Every profile of the account, shard by shard (a Query per page; never a Scan)."""
        self.last_stats = StoreStats()
        for shard in range(SHARDS):
            start = None
            while True:
                resp = self._query(profiles_pk(account_id, shard), limit=page_size, start=start)
                for item in resp.get("Items", []):
                    yield _profile(_data(deser(item)))
                start = resp.get("LastEvaluatedKey")
                if not start:
                    break

    def shard_page(self, account_id: str, shard: int, start: dict[str, Any] | None,
                   limit: int) -> tuple[list[P.Profile], dict[str, Any] | None]:
        """One page of one shard's profiles (a Query) and the key to continue from, if any."""
        self.last_stats = StoreStats()
        resp = self._query(profiles_pk(account_id, shard), limit=limit, start=start)
        rows = [_profile(_data(deser(i))) for i in resp.get("Items", [])]
        return rows, resp.get("LastEvaluatedKey")

    def count(self, account_id: str) -> int:
        self.last_stats = StoreStats()
        total = 0
        for shard in range(SHARDS):
            start = None
            while True:
                resp = self._query(profiles_pk(account_id, shard), limit=None, start=start, count=True)
                total += int(resp.get("Count", 0))
                start = resp.get("LastEvaluatedKey")
                if not start:
                    break
        return total

    def page(self, account_id: str, *, limit: int, cursor: str | None) -> Page:
        """One page of the account's profiles, shard after shard, with an opaque cursor that
        only this account's listing accepts. At most SHARDS + 1 Queries per page."""
        self.last_stats = StoreStats()
        pks = [profiles_pk(account_id, s) for s in range(SHARDS)]
        shard, start = 0, None
        if cursor:
            key = K.decode_cursor(cursor, expect={}, key_names=("PK", "SK"), sk_prefix=PROFILE_PREFIX)
            if key["PK"] not in pks:
                raise _bad_cursor()
            shard, start = pks.index(key["PK"]), _attr_key(key)
        out: list[P.Profile] = []
        while shard < SHARDS and len(out) < limit:
            need = limit - len(out)
            # One extra item tells whether this shard has more, without an empty read.
            resp = self._query(pks[shard], limit=need + 1, start=start)
            rows = [_profile(_data(deser(i))) for i in resp.get("Items", [])]
            out += rows[:need]
            if len(rows) > need:
                break
            start = resp.get("LastEvaluatedKey")
            if not start:
                shard, start = shard + 1, None
        next_cursor = None
        if shard < SHARDS and out:
            next_cursor = K.encode_cursor(profile_key(account_id, out[-1].id))
        return Page(items=out, next_cursor=next_cursor)


def profile_from_image(image: Mapping[str, Any] | None) -> P.Profile | None:
    """A profile from a stream record's image (typed attributes); None for an absent image
    or an item that is not a profile (identifier items, the write lease)."""
    if not image or not str((image.get("SK") or {}).get("S", "")).startswith(PROFILE_PREFIX):
        return None
    data = image.get(DATA) or {}
    if "S" not in data:
        return None
    return _profile(json.loads(data["S"]))


def account_of_profiles_pk(pk: str) -> str | None:
    """The account of a profile item's partition key (ACCT#<a>#PROFILES#<nn>)."""
    head, sep, shard = pk.rpartition("#PROFILES#")
    if not sep or not head.startswith("ACCT#") or not shard.isdigit():
        return None
    return head[len("ACCT#"):]


def _bad_cursor() -> BadRequest:
    return BadRequest(
        "the cursor is not valid for this listing; start again without it",
        code="request.invalid_cursor",
        fields={"cursor": "invalid"},
    )


__all__ = [
    "SHARDS",
    "IncompleteBatch",
    "ProfileRepo",
    "ProfilesBusy",
    "StoreStats",
    "account_of_profiles_pk",
    "identifier_key",
    "profile_from_image",
    "profile_key",
    "profiles_pk",
    "shard_of",
]
