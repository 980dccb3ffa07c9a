"""Kinesis JSON import, one step at a time (the job engine calls `KinesisReader.read`).

A run reads every shard from its checkpoint (the sequence number of the last record
imported from it) up to the records that arrived before the run started, then ends; a
continuous job sleeps until its next schedule and the next run goes on from the
checkpoints the job's state keeps.

* **The run's horizon.** A run reads records whose ApproximateArrivalTimestamp is before
  the run's start (read from its id, so every step and every redelivery of a step agree).
  On each shard it stops at the first record at or after that instant, or at the shard's
  tip (GetRecords answers MillisBehindLatest = 0). Fixed per shard, so reading again from
  one cursor returns the same rows, as the engine requires of a replayed step.
* **Shards.** ListShards (every step; a reshard mid-run is seen) lists the shards the
  stream still holds. A shard is read only once each of its parents (ParentShardId,
  AdjacentParentShardId) that is still listed is finished — closed and read to its end
  (GetRecords' NextShardIterator is null, or it reached its EndingSequenceNumber) — so a
  key's records are imported in order across a split or a merge. Shards are read in id
  order; a step reads until it has `ctx.max_records` records or is near its deadline.
* **Where a shard starts.** After its checkpoint (GetShardIterator AFTER_SEQUENCE_NUMBER).
  Without one: TRIM_HORIZON, or for a `LATEST` job AT_TIMESTAMP of the job's first run
  start (`since`): a replayed step finds the same position, and a child shard created
  later is read from its first record.
* **Records.** Data must be a UTF-8 JSON object; anything else (and KPL-aggregated
  records) is reported invalid with its position `kinesis://<stream>/<shard>/<sequence>`.

Cursor (JSON; ~90 bytes a shard, so at most ~900 shards fit the engine's 100 KB):
    {"v": 1, "until_ms": int, "since_ms": int | None,
     "checkpoints": {shard_id: sequence number}, "finished": [shard_id], "ended": [shard_id],
     "processed": int, "invalid": int}
State (kept by the engine once a run is done):
    {"v": 1, "stream": str, "since_ms": int | None,
     "checkpoints": {shard_id: sequence number}, "finished": [shard_id]}
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chalicelib.domain.ids import created_ms
from chalicelib.providers import aws_auth
from chalicelib.providers.base import ProviderError, job_config
from chalicelib.providers.json_records import json_object
from chalicelib.providers.kinesis import KinesisImportConfig, stream_error
from chalicelib.providers.roles import ReadResult, SourceRow, StepContext

CURSOR_VERSION = 1
STATE_VERSION = 1
MAX_LIMIT = 10_000  # GetRecords: records per call
MAX_EMPTY_CALLS = 250  # empty GetRecords behind the tip in a row, per shard and step (a gap)
EMPTY_PAUSE_SECONDS = 0.2  # between them: GetRecords allows 5 calls a second per shard
CURSOR_BUDGET = 90_000  # the engine allows < 100 KB of cursor JSON
SAFETY_MARGIN_SECONDS = 1.0
KPL_MAGIC = b"\xf3\x89\x9a\xc2"  # an aggregated record of the Kinesis Producer Library


@dataclass
class _Cursor:
    until_ms: int
    since_ms: int | None
    checkpoints: dict[str, str]
    finished: set[str]
    ended: set[str] = field(default_factory=set)
    processed: int = 0
    invalid: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"v": CURSOR_VERSION, "until_ms": self.until_ms, "since_ms": self.since_ms,
                "checkpoints": dict(sorted(self.checkpoints.items())), "finished": sorted(self.finished),
                "ended": sorted(self.ended), "processed": self.processed, "invalid": self.invalid}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> _Cursor:
        if d.get("v") != CURSOR_VERSION:
            raise ProviderError("the run's cursor was not written by this reader version")
        try:
            return cls(until_ms=int(d["until_ms"]),
                       since_ms=None if d["since_ms"] is None else int(d["since_ms"]),
                       checkpoints={str(k): str(v) for k, v in d["checkpoints"].items()},
                       finished=set(d["finished"]), ended=set(d["ended"]),
                       processed=int(d["processed"]), invalid=int(d["invalid"]))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProviderError(f"the run's cursor is damaged ({exc!r})") from None

    @classmethod
    def start(cls, ctx: StepContext, cfg: KinesisImportConfig) -> _Cursor:
        """Step 0: the run's horizon, and where the last finished run left each shard."""
        until = created_ms(ctx.run_id) or int(time.time() * 1000)
        state = ctx.state or {}
        if state.get("v") == STATE_VERSION and state.get("stream") == cfg.stream_name:
            since = state.get("since_ms")
            checkpoints = {str(k): str(v) for k, v in (state.get("checkpoints") or {}).items()}
            finished = set(state.get("finished") or ())
        else:  # first run, or another stream: nothing of the old state applies
            since, checkpoints, finished = None, {}, set()
        if cfg.starting_position == "LATEST" and since is None:
            since = until  # only records that arrive from the job's first run on
        if cfg.starting_position == "TRIM_HORIZON":
            since = None
        return cls(until_ms=until, since_ms=since, checkpoints=checkpoints, finished=finished)


@dataclass
class _Step:
    want: int
    stop_at: float
    rows: list[SourceRow] = field(default_factory=list)
    invalid: list[tuple[str, str]] = field(default_factory=list)
    calls: int = 0

    @property
    def taken(self) -> int:
        return len(self.rows) + len(self.invalid)

    def full(self) -> bool:
        return self.taken >= self.want

    def late(self) -> bool:
        # Progress first: a step that has read nothing makes at least one call.
        return self.calls > 0 and time.monotonic() > self.stop_at


class KinesisReader:
    """`Source` of the kinesis_import workflow. `client` builds the Kinesis client from
    a session (tests hand in a double where moto departs from AWS: resharding)."""

    def __init__(self, *, client: Callable[[aws_auth.AwsSession], Any] | None = None,
                 safety_margin: float = SAFETY_MARGIN_SECONDS,
                 pause: Callable[[float], None] = time.sleep) -> None:
        self._client = client or (lambda sess: sess.client("kinesis"))
        self._margin = safety_margin
        self._pause = pause

    def read(self, ctx: StepContext) -> ReadResult:
        from botocore.exceptions import BotoCoreError, ClientError

        cfg = job_config(KinesisImportConfig, ctx.config)
        sess = aws_auth.session(ctx.method, ctx.credentials, ctx.counter)
        kinesis = self._client(sess)
        name = cfg.stream_name
        cur = _Cursor.start(ctx, cfg) if ctx.cursor is None else _Cursor.from_dict(ctx.cursor)
        step = _Step(max(1, ctx.max_records), ctx.deadline - self._margin)
        try:
            shards = self._shards(kinesis, name)
            tried: set[str] = set()  # a shard is read at most once a step
            while not step.full() and not step.late():
                # Again after each pass: a parent read to its end makes its children readable.
                todo = [s for s in self._readable(shards, cur) if s["ShardId"] not in tried]
                if not todo:
                    break
                for shard in todo:
                    if step.full() or step.late():
                        break
                    tried.add(shard["ShardId"])
                    self._read_shard(kinesis, name, shard, cur, step)
        except (ClientError, BotoCoreError) as exc:
            raise stream_error(sess, exc, name) from None
        listed = {s["ShardId"] for s in shards}
        done = not self._readable(shards, cur)
        cur.processed += len(step.rows)
        cur.invalid += len(step.invalid)
        cursor = cur.to_dict()
        if len(json.dumps(cursor)) > CURSOR_BUDGET:
            raise ProviderError(f"stream {name!r} has too many shards for one import job ({len(shards)} "
                                "listed); see docs/providers/kinesis.md, Limits")
        state = dict(ctx.state or {})
        if done:
            # Shards the stream no longer lists (past retention) are forgotten.
            state = {"v": STATE_VERSION, "stream": name, "since_ms": cur.since_ms,
                     "checkpoints": {k: v for k, v in sorted(cur.checkpoints.items())
                                     if k in listed and k not in cur.finished},
                     "finished": sorted(cur.finished & listed)}
        return ReadResult(rows=step.rows, cursor=cursor, done=done, state=state,
                          processed=cur.processed, total=None, total_unit="rows", invalid=step.invalid)

    # -- shards ---------------------------------------------------------------------------------

    @staticmethod
    def _shards(kinesis: Any, name: str) -> list[dict[str, Any]]:
        shards: list[dict[str, Any]] = []
        page = kinesis.list_shards(StreamName=name, MaxResults=1000)
        shards += page.get("Shards", [])
        while page.get("NextToken"):
            # With NextToken, ListShards refuses the stream name: the token names it.
            page = kinesis.list_shards(NextToken=page["NextToken"], MaxResults=1000)
            shards += page.get("Shards", [])
        return sorted(shards, key=lambda s: str(s["ShardId"]))

    @staticmethod
    def _readable(shards: list[dict[str, Any]], cur: _Cursor) -> list[dict[str, Any]]:
        """Shards this run may read now: not finished, not at the run's horizon, and every
        parent still listed is finished (a child never overtakes its parent)."""
        listed = {s["ShardId"] for s in shards}
        out = []
        for s in shards:
            sid = s["ShardId"]
            if sid in cur.finished or sid in cur.ended:
                continue
            parents = [p for p in (s.get("ParentShardId"), s.get("AdjacentParentShardId")) if p]
            if all(p not in listed or p in cur.finished for p in parents):
                out.append(s)
        return out

    # -- one shard ------------------------------------------------------------------------------

    def _iterator(self, kinesis: Any, name: str, sid: str, cur: _Cursor) -> str | None:
        from botocore.exceptions import ClientError

        kwargs: dict[str, Any] = {"StreamName": name, "ShardId": sid}
        seq = cur.checkpoints.get(sid)
        if seq is not None:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=seq)
        elif cur.since_ms is not None:
            kwargs.update(ShardIteratorType="AT_TIMESTAMP",
                          Timestamp=datetime.fromtimestamp(cur.since_ms / 1000, UTC))
        else:
            kwargs.update(ShardIteratorType="TRIM_HORIZON")
        try:
            return str(kinesis.get_shard_iterator(**kwargs)["ShardIterator"])
        except ClientError as exc:
            if (aws_auth.error_code(exc) == "ResourceNotFoundException"
                    and aws_auth.aws_words(exc).startswith("Shard ")):
                return None  # the shard expired since ListShards: nothing left to read
            raise

    def _read_shard(self, kinesis: Any, name: str, shard: dict[str, Any], cur: _Cursor, step: _Step) -> None:
        """Read records of one shard into `step` from its checkpoint until the step is full
        or late, the shard reaches the run's horizon or its tip (-> ended), or its end
        (-> finished)."""
        from botocore.exceptions import ClientError

        sid = str(shard["ShardId"])
        ending = shard.get("SequenceNumberRange", {}).get("EndingSequenceNumber")
        if _reached(cur.checkpoints.get(sid), ending):
            cur.finished.add(sid)  # closed, and its last record already imported
            cur.checkpoints.pop(sid, None)
            return
        iterator = self._iterator(kinesis, name, sid, cur)
        if iterator is None:
            cur.finished.add(sid)
            return
        empty = 0
        renewed = False
        while not step.full():
            limit = min(MAX_LIMIT, step.want - step.taken)
            try:
                step.calls += 1
                resp = kinesis.get_records(ShardIterator=iterator, Limit=limit)
            except ClientError as exc:
                if aws_auth.error_code(exc) == "ExpiredIteratorException" and not renewed:
                    renewed = True  # iterators live 5 minutes: start again from the checkpoint
                    iterator = self._iterator(kinesis, name, sid, cur)
                    if iterator is None:
                        cur.finished.add(sid)
                        return
                    continue
                raise
            records = resp.get("Records", [])
            for n, record in enumerate(records):
                if _arrival_ms(record) >= cur.until_ms:
                    cur.ended.add(sid)  # arrived after the run started: the next run's
                    return
                self._take(name, sid, record, step)
                cur.checkpoints[sid] = str(record["SequenceNumber"])
                if step.full() and n + 1 < len(records):
                    return
            nxt = resp.get("NextShardIterator")
            # Caught up only when the answer also left room: a full answer may hide more
            # records of the same millisecond (and moto counts lag in whole milliseconds).
            at_tip = int(resp.get("MillisBehindLatest", 1) or 0) == 0 and len(records) < limit
            if nxt is None or _reached(cur.checkpoints.get(sid), ending):
                cur.finished.add(sid)  # closed, and read to its end
                cur.checkpoints.pop(sid, None)
                return
            if at_tip:
                if ending is not None and not records:
                    # A closed shard with nothing left (moto never answers a null iterator).
                    cur.finished.add(sid)
                    cur.checkpoints.pop(sid, None)
                else:
                    cur.ended.add(sid)
                return
            # Behind the tip without records: a gap in the shard, walked call by call.
            empty = 0 if records else empty + 1
            if empty >= MAX_EMPTY_CALLS or step.late():
                return  # the next step goes on from the checkpoint
            if empty:
                self._pause(EMPTY_PAUSE_SECONDS)
            iterator = nxt

    @staticmethod
    def _take(name: str, sid: str, record: dict[str, Any], step: _Step) -> None:
        ref = f"kinesis://{name}/{sid}/{record['SequenceNumber']}"
        data = bytes(record.get("Data") or b"")
        if data.startswith(KPL_MAGIC):
            step.invalid.append((ref, "a KPL-aggregated record (turn aggregation off in the producer)"))
            return
        value = json_object(data)
        if isinstance(value, str):
            step.invalid.append((ref, value))
            return
        step.rows.append(SourceRow(data=value, ref=ref))


def _arrival_ms(record: dict[str, Any]) -> int:
    stamp = record.get("ApproximateArrivalTimestamp")
    if isinstance(stamp, datetime):
        return int(stamp.timestamp() * 1000)
    return int(float(stamp or 0) * 1000)


def _reached(seq: str | None, ending: str | None) -> bool:
    # Sequence numbers are decimal strings of up to 128 bits: compare them as numbers.
    return seq is not None and ending is not None and int(seq) >= int(ending)


def source(provider: object) -> KinesisReader:
    """The step of kinesis_import (declared in providers/kinesis.py)."""
    return KinesisReader()


__all__ = ["KinesisReader", "source"]
