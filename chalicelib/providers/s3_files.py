"""S3 file import, one step at a time: CSV / JSON Lines objects under a prefix.

The job engine (docs/engine.md) calls `S3FileReader.read(ctx)` once per step and stores the
returned cursor; the next step starts from it. Everything a step needs to resume is in the
cursor, so a step may run in any process, and reading twice from one cursor returns the
same rows (the engine re-reads after a crash).

Step 0 (no cursor) lists the prefix (ListObjectsV2, 1,000 keys a request), skips "folders"
(keys ending in "/") and empty objects, keeps the objects that are new or changed since the
last finished run (when `incremental`), and writes the plan into the cursor. Every step then
reads objects in key order, at most `ctx.max_records` records, and stops early near the
deadline; it always consumes at least one record (or finishes one object) so a run
progresses whatever the clock says.

Reading is streamed and memory stays flat whatever the file size:

* plain objects: GetObject with `Range: bytes=<offset>-<end>` and `If-Match: <etag>`; the
  window is sized from the run's bytes-per-record so a step normally sends ONE GetObject per
  object; a later step resumes at the byte offset in the cursor without re-reading.
* gzip objects: a gzip stream cannot be entered at an offset, so a step re-reads the object
  from its first byte and discards the decompressed bytes before the checkpoint (cost: the
  transfer and inflate of everything before the offset, at every step of that object).
  Concatenated gzip members are read one after another.
* records: lines are cut by a C BufferedReader (`readline` with a 1 MiB limit); CSV lines
  go through `csv.reader`, which pulls exactly the lines one record needs (quoted fields
  may hold the delimiter, doubled quotes and newlines). A UTF-8 BOM at the start of an
  object is dropped; CRLF and LF both work.

Cursor and state formats, limits: see `S3FileReader` and docs/decisions.md.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import heapq
import io
import json
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chalicelib.providers.base import ProviderError
from chalicelib.providers.calls import aws_client
from chalicelib.providers.roles import ReadResult, SourceRow, StepContext
from chalicelib.providers.s3 import S3ImportConfig, S3Provider, s3_error

CURSOR_VERSION = 1
STATE_VERSION = 1

KIB = 1024
MIB = 1024 * KIB
CHUNK_BYTES = 64 * KIB  # one read from the HTTP body / one BufferedReader fill
MAX_LINE_BYTES = MIB  # a longer line is reported invalid and skipped, never buffered
MAX_RECORD_BYTES = 4 * MIB  # a CSV record over several lines (e.g. an unbalanced quote)
INFLATE_OUT_BYTES = 256 * KIB  # at most this much decompressed output per inflate call
FIRST_WINDOW = MIB  # Range window of a run's first GetObject (nothing to estimate from yet)
MIN_WINDOW = 256 * KIB
MAX_WINDOW = 8 * MIB

CURSOR_BUDGET = 96_000  # the engine allows < 100 KB of cursor JSON
HEADER_MAX_JSON = 32_000  # a CSV header is kept in the cursor; a longer one is refused
MAX_STATE_OBJECTS = 5_000  # objects remembered one by one; older ones go under the watermark
DIGEST_BYTES = 6  # per remembered object: blake2b-48 of (bucket, key, etag)
SAFETY_MARGIN_SECONDS = 1.0  # stop reading this long before ctx.deadline
BOM = b"\xef\xbb\xbf"


def _state_json_bound(max_objects: int) -> int:
    return (max_objects * DIGEST_BYTES + 2) // 3 * 4 + 400


def _default_page_bytes(max_objects: int) -> int:
    # What is left for the plan once the next state, a CSV header and the counters are in.
    return CURSOR_BUDGET - _state_json_bound(max_objects) - HEADER_MAX_JSON - 2_000


# -- errors that end one object, not the run -----------------------------------------------


class _ObjectProblem(Exception):
    """The object cannot be read (further); it is skipped with this reason."""

    def __init__(self, reason: str, *, forget: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.forget = forget  # drop it from the next state: the next run must read it


class _LineTooLong(Exception):
    pass


class _RecordTooLong(Exception):
    pass


# -- state: what the last finished run imported ---------------------------------------------


def _digest(bucket: str, key: str, etag: str) -> bytes:
    text = f"{bucket}\0{key}\0{etag.strip(chr(34))}"
    return hashlib.blake2b(text.encode("utf-8"), digest_size=DIGEST_BYTES).digest()


def _encode_digests(digests: set[bytes]) -> str:
    return base64.b64encode(b"".join(sorted(digests))).decode("ascii")


def _decode_digests(text: str) -> set[bytes]:
    raw = base64.b64decode(text.encode("ascii"))
    return {raw[i : i + DIGEST_BYTES] for i in range(0, len(raw), DIGEST_BYTES)}


@dataclass
class _Seen:
    """The previous run's state: is this (key, etag) already imported?"""

    digests: set[bytes] = field(default_factory=set)
    watermark: datetime | None = None

    @classmethod
    def from_state(cls, state: dict[str, Any] | None, cfg: S3ImportConfig) -> _Seen:
        if not state or state.get("v") != STATE_VERSION:
            return cls()
        try:
            digests = _decode_digests(str(state.get("digests") or ""))
            mark = state.get("watermark")
            # The watermark speaks of one listing: another bucket or prefix is not covered.
            same = state.get("bucket") == cfg.bucket and state.get("prefix") == cfg.prefix
            watermark = datetime.fromisoformat(mark) if (mark and same) else None
        except (ValueError, TypeError):
            return cls()  # unreadable state: import everything (safe, at worst twice)
        return cls(digests, watermark)

    def covers(self, last_modified: datetime, digest: bytes) -> bool:
        if self.watermark is not None and last_modified <= self.watermark:
            return True
        return digest in self.digests


class _NextState:
    """The state of this run's listing: the newest objects one by one, the rest under a
    LastModified watermark. Bounded: MAX_STATE_OBJECTS digests at most."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._heap: list[tuple[datetime, bytes]] = []
        self._dropped: datetime | None = None
        self.count = 0

    def add(self, last_modified: datetime, digest: bytes) -> None:
        self.count += 1
        heapq.heappush(self._heap, (last_modified, digest))
        if len(self._heap) > self._limit:
            oldest, _ = heapq.heappop(self._heap)
            if self._dropped is None or oldest > self._dropped:
                self._dropped = oldest

    def to_state(self, cfg: S3ImportConfig) -> dict[str, Any]:
        # The watermark is the newest LastModified that did not fit: everything at or before
        # it was in this listing. (LastModified has whole seconds; an object uploaded after
        # the listing within that very second would be missed, which takes more than
        # `limit` objects last modified in the second of the listing.)
        mark = self._dropped
        kept = {d for lm, d in self._heap if mark is None or lm > mark}
        return {
            "v": STATE_VERSION,
            "bucket": cfg.bucket,
            "prefix": cfg.prefix,
            "count": self.count,
            "digests": _encode_digests(kept),
            "watermark": mark.isoformat() if mark is not None else None,
        }


# -- the cursor ----------------------------------------------------------------------------


@dataclass
class _Cursor:
    plan: list[dict[str, Any]]  # this page of the plan: {"key", "etag", "size"}
    more_after: str | None  # the plan goes on after this key (listed again); None: it ends here
    next_state: dict[str, Any]
    total_bytes: int
    objects: int  # objects planned for the run
    i: int = 0  # index in `plan` of the object being read
    offset: int = 0  # bytes of object i consumed (of the decompressed stream for gzip)
    line: int = 0  # lines of object i consumed (refs are line numbers)
    header: list[str] | None = None  # CSV header of object i, once read
    zpos: int = 0  # gzip: compressed bytes of object i read so far (progress only)
    processed: int = 0  # rows returned by this run
    invalid: int = 0  # records reported invalid by this run
    bytes_done: int = 0  # sizes of the objects finished
    objects_done: int = 0

    @property
    def bytes_read(self) -> int:
        if self.i >= len(self.plan):
            return self.bytes_done
        size = int(self.plan[self.i]["size"])
        return self.bytes_done + min(self.zpos or self.offset, size)

    def finish_object(self) -> None:
        self.bytes_done += int(self.plan[self.i]["size"])
        self.objects_done += 1
        self.i += 1
        self.offset = self.line = self.zpos = 0
        self.header = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": CURSOR_VERSION,
            "plan": self.plan,
            "more_after": self.more_after,
            "i": self.i,
            "offset": self.offset,
            "line": self.line,
            "header": self.header,
            "zpos": self.zpos,
            "processed": self.processed,
            "invalid": self.invalid,
            "bytes_read": self.bytes_read,
            "bytes_done": self.bytes_done,
            "total_bytes": self.total_bytes,
            "objects": self.objects,
            "objects_done": self.objects_done,
            "next_state": self.next_state,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> _Cursor:
        if d.get("v") != CURSOR_VERSION:
            raise ProviderError("the run's cursor was not written by this reader version")
        try:
            return cls(
                plan=[dict(e) for e in d["plan"]],
                more_after=d["more_after"],
                next_state=dict(d["next_state"]),
                total_bytes=int(d["total_bytes"]),
                objects=int(d["objects"]),
                i=int(d["i"]),
                offset=int(d["offset"]),
                line=int(d["line"]),
                header=list(d["header"]) if d["header"] is not None else None,
                zpos=int(d["zpos"]),
                processed=int(d["processed"]),
                invalid=int(d["invalid"]),
                bytes_done=int(d["bytes_done"]),
                objects_done=int(d["objects_done"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProviderError(f"the run's cursor is damaged ({exc!r})") from None


# -- one step's output -----------------------------------------------------------------------


@dataclass
class _Step:
    max_records: int
    stop_at: float  # time.monotonic() past which the step stops (deadline - margin)
    rows: list[SourceRow] = field(default_factory=list)
    invalid: list[tuple[str, str]] = field(default_factory=list)
    records: int = 0  # rows + invalid records this step
    blank: int = 0  # blank lines passed this step (progress, but not records)
    objects_finished: int = 0

    def full(self) -> bool:
        return self.records >= self.max_records

    def late(self) -> bool:
        # Progress first: a step that has consumed nothing reads one record even when late.
        progressed = self.records > 0 or self.blank > 0 or self.objects_finished > 0
        return progressed and time.monotonic() > self.stop_at

    def should_stop(self) -> bool:
        return self.full() or self.late()

    def row(self, data: dict[str, Any], ref: str) -> None:
        self.rows.append(SourceRow(data=data, ref=ref))
        self.records += 1

    def bad(self, ref: str, reason: str) -> None:
        self.invalid.append((ref, reason))
        self.records += 1


# -- bytes -> lines ----------------------------------------------------------------------------


class _ChunkReader(io.RawIOBase):
    """A raw stream over an iterator of byte chunks (for io.BufferedReader)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self._chunks = chunks
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            nxt = next(self._chunks, None)
            if nxt is None:
                return 0
            self._buf = memoryview(nxt)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()  # a generator: runs its `finally`, which closes the HTTP body
        super().close()


class _Lines:
    """Physical lines of one object, counted into the cursor as they are consumed."""

    def __init__(self, stream: io.BufferedIOBase, cur: _Cursor) -> None:
        self._stream = stream
        self._cur = cur

    def next_line(self) -> bytes | None:
        at_start = self._cur.offset == 0
        line = self._stream.readline(MAX_LINE_BYTES)
        if not line:
            return None
        if len(line) == MAX_LINE_BYTES and not line.endswith(b"\n"):
            n = len(line)
            while True:  # skip the rest of the line without keeping it
                more = self._stream.readline(MAX_LINE_BYTES)
                n += len(more)
                if not more or more.endswith(b"\n"):
                    break
            self._cur.offset += n
            self._cur.line += 1
            raise _LineTooLong
        self._cur.offset += len(line)
        self._cur.line += 1
        if at_start and line.startswith(BOM):
            line = line[len(BOM) :]
        return line


class _CsvFeeder:
    """Lines for csv.reader, which pulls exactly the lines one record needs. An iterator
    class, not a generator: it raises (too long) and is used again for the next record."""

    def __init__(self, lines: _Lines) -> None:
        self._lines = lines
        self._record_bytes = 0
        self.bad_text = False

    def begin_record(self) -> None:
        self._record_bytes = 0
        self.bad_text = False

    def __iter__(self) -> _CsvFeeder:
        return self

    def __next__(self) -> str:
        line = self._lines.next_line()
        if line is None:
            raise StopIteration
        self._record_bytes += len(line)
        if self._record_bytes > MAX_RECORD_BYTES:
            raise _RecordTooLong
        try:
            return line.decode("utf-8")
        except UnicodeDecodeError:
            self.bad_text = True
            return line.decode("utf-8", errors="replace")


# -- the reader ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Listed:
    key: str
    etag: str
    size: int
    last_modified: datetime


class S3FileReader:
    """`Source` of the s3_file_import workflow.

    Cursor (JSON, < 100 KB; `plan` is paged to stay inside the budget):
        {"v": 1,
         "plan": [{"key": str, "etag": str, "size": int}, ...],  # a page of planned objects
         "more_after": str | None,   # more planned objects after this key: listed again
                                     # (ListObjectsV2 StartAfter) when the page is read
         "i": int,                   # object of `plan` being read
         "offset": int,              # bytes of it consumed (decompressed bytes for gzip)
         "line": int,                # lines of it consumed
         "header": [str] | None,     # its CSV header once read
         "zpos": int,                # gzip: compressed bytes read (progress only)
         "processed": int, "invalid": int,        # rows / invalid records, whole run
         "bytes_read": int,          # progress: bytes of planned objects read so far
         "bytes_done": int,          # sizes of the finished objects
         "total_bytes": int, "objects": int, "objects_done": int,
         "next_state": {...}}        # the state returned once the run is done

    State (returned with done=True; the engine keeps it for the next run):
        {"v": 1, "bucket": str, "prefix": str,
         "count": int,               # objects of the listing the state speaks for
         "digests": str,             # base64 of sorted 6-byte blake2b(bucket, key, etag)
                                     # of the newest (LastModified) <= 5,000 objects
         "watermark": str | None}    # ISO time: objects last modified at or before it
                                     # count as imported (set past 5,000 objects only)
    """

    def __init__(
        self,
        provider: S3Provider,
        *,
        chunk_bytes: int = CHUNK_BYTES,
        plan_page_bytes: int | None = None,
        max_state_objects: int = MAX_STATE_OBJECTS,
        safety_margin: float = SAFETY_MARGIN_SECONDS,
    ) -> None:
        self._provider = provider
        self._chunk_bytes = chunk_bytes
        self._max_state_objects = max_state_objects
        self._page_bytes = plan_page_bytes or _default_page_bytes(max_state_objects)
        self._margin = safety_margin

    # -- the step --------------------------------------------------------------------------

    def read(self, ctx: StepContext) -> ReadResult:
        from pydantic import ValidationError

        try:
            cfg = S3ImportConfig.model_validate(ctx.config)
        except ValidationError as exc:
            raise ProviderError(f"the job's config is not valid: {exc.errors()[0]['msg']}") from None
        identity = self._provider.identity(ctx.method, ctx.credentials, ctx.counter)
        s3 = aws_client(identity, "s3", ctx.counter)
        seen = _Seen.from_state(ctx.state, cfg) if cfg.incremental else _Seen()

        cur = self._start(s3, cfg, seen) if ctx.cursor is None else _Cursor.from_dict(ctx.cursor)
        step = _Step(max(1, ctx.max_records), ctx.deadline - self._margin)
        done = False
        while True:
            if cur.i >= len(cur.plan) and cur.more_after is None:
                done = True
                break
            if step.should_stop():
                break
            if cur.i >= len(cur.plan):
                cur.plan, cur.more_after = self._next_page(s3, cfg, seen, cur.more_after)
                cur.i = 0
                continue
            self._read_object(s3, cfg, cur, step)

        cur.processed += len(step.rows)
        cur.invalid += len(step.invalid)
        cursor = cur.to_dict()
        return ReadResult(
            rows=step.rows,
            cursor=cursor,
            done=done,
            state=cur.next_state if done else dict(ctx.state or {}),
            processed=cur.processed,
            total=max(cur.total_bytes, cur.bytes_read),
            total_unit="bytes",
            invalid=step.invalid,
        )

    # -- listing -----------------------------------------------------------------------------

    def _list(self, s3: Any, cfg: S3ImportConfig, start_after: str | None) -> Iterator[_Listed]:
        from botocore.exceptions import BotoCoreError, ClientError

        kwargs: dict[str, Any] = {"Bucket": cfg.bucket, "Prefix": cfg.prefix}
        if start_after is not None:
            kwargs["StartAfter"] = start_after
        try:
            for page in s3.get_paginator("list_objects_v2").paginate(**kwargs):
                for o in page.get("Contents", []):
                    key, size = str(o["Key"]), int(o["Size"])
                    if key.endswith("/") or size == 0:
                        continue  # a "folder" marker or an empty object: nothing to read
                    yield _Listed(key, str(o["ETag"]), size, o["LastModified"])
        except (ClientError, BotoCoreError) as exc:
            raise s3_error(exc, f"bucket {cfg.bucket!r}") from None

    def _start(self, s3: Any, cfg: S3ImportConfig, seen: _Seen) -> _Cursor:
        """Step 0: list everything once for the totals and the next state; keep the first
        page of the plan (the rest is listed again, page by page, as the run gets there)."""
        next_state = _NextState(self._max_state_objects)
        page = _Page(self._page_bytes)
        total_bytes = objects = 0
        for obj in self._list(s3, cfg, None):
            digest = _digest(cfg.bucket, obj.key, obj.etag)
            next_state.add(obj.last_modified, digest)
            if seen.covers(obj.last_modified, digest):
                continue
            total_bytes += obj.size
            objects += 1
            page.add(obj)
        return _Cursor(
            plan=page.entries,
            more_after=page.more_after,
            next_state=next_state.to_state(cfg),
            total_bytes=total_bytes,
            objects=objects,
        )

    def _next_page(
        self, s3: Any, cfg: S3ImportConfig, seen: _Seen, after: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        page = _Page(self._page_bytes)
        for obj in self._list(s3, cfg, after):
            if seen.covers(obj.last_modified, _digest(cfg.bucket, obj.key, obj.etag)):
                continue
            if not page.add(obj):
                break
        return page.entries, page.more_after

    # -- one object --------------------------------------------------------------------------

    def _read_object(self, s3: Any, cfg: S3ImportConfig, cur: _Cursor, step: _Step) -> None:
        """Read records of plan[cur.i] into `step` until the object ends or the step is full
        or late; cur moves along with every record (and to the next object at the end)."""
        from botocore.exceptions import BotoCoreError, ClientError

        entry = cur.plan[cur.i]
        key, etag, size = str(entry["key"]), str(entry["etag"]), int(entry["size"])
        where = f"s3://{cfg.bucket}/{key}"
        gz = cfg.compression == "gzip" or (cfg.compression == "auto" and key.lower().endswith(".gz"))
        if not gz and cur.offset >= size:
            self._finish(cur, step)
            return
        chunks = (
            self._gzip_chunks(s3, cfg.bucket, key, etag, cur)
            if gz
            else self._plain_chunks(s3, cfg.bucket, key, etag, size, cur, step)
        )
        raw = _ChunkReader(chunks)
        stream = io.BufferedReader(raw, buffer_size=self._chunk_bytes)
        try:
            lines = _Lines(stream, cur)
            if cfg.format == "csv":
                ended = self._csv(lines, cfg, cur, step, where)
            else:
                ended = self._jsonl(lines, cur, step, where)
            if not ended:
                ended = (cur.offset >= size) if not gz else not stream.peek(1)
        except _ObjectProblem as exc:
            step.bad(where, exc.reason)
            if exc.forget:
                self._forget(cfg, cur, key, etag)
            ended = True
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404"):
                step.bad(where, "object disappeared")
                self._forget(cfg, cur, key, etag)
                ended = True
            elif code in ("PreconditionFailed", "412"):
                step.bad(where, "object changed while the run read it; the next run reads it again")
                self._forget(cfg, cur, key, etag)
                ended = True
            else:
                what = f"bucket {cfg.bucket!r}" if code == "NoSuchBucket" else where
                raise s3_error(exc, what) from None
        except BotoCoreError as exc:
            raise s3_error(exc, where) from None
        finally:
            stream.close()
        if ended:
            self._finish(cur, step)

    @staticmethod
    def _finish(cur: _Cursor, step: _Step) -> None:
        cur.finish_object()
        step.objects_finished += 1

    @staticmethod
    def _forget(cfg: S3ImportConfig, cur: _Cursor, key: str, etag: str) -> None:
        digests = _decode_digests(str(cur.next_state.get("digests") or ""))
        digests.discard(_digest(cfg.bucket, key, etag))
        cur.next_state = {**cur.next_state, "digests": _encode_digests(digests)}

    def _window(self, cur: _Cursor, step: _Step) -> int:
        # Bytes one step is expected to need, from this run's bytes per record so far.
        records = cur.processed + cur.invalid + step.records
        if records == 0 or cur.bytes_read == 0:
            return FIRST_WINDOW
        need = max(1, step.max_records - step.records)
        guess = cur.bytes_read / records * need * 1.25 + 64 * KIB
        return int(min(MAX_WINDOW, max(MIN_WINDOW, guess)))

    def _plain_chunks(
        self, s3: Any, bucket: str, key: str, etag: str, size: int, cur: _Cursor, step: _Step
    ) -> Iterator[bytes]:
        from botocore.exceptions import ClientError

        pos = cur.offset
        window = self._window(cur, step)
        while pos < size:
            end = min(size, pos + window) - 1
            try:
                resp = s3.get_object(Bucket=bucket, Key=key, IfMatch=etag, Range=f"bytes={pos}-{end}")
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code", "")) not in ("InvalidRange", "416"):
                    raise
                # The object holds fewer bytes than its listing said: a problem of this object,
                # not of the job's configuration (the run goes on with the other objects).
                raise _ObjectProblem(
                    f"S3 has no byte {pos:,} of an object listed as {size:,} bytes (InvalidRange):"
                    " it is shorter than its listed size; the next run reads it again", forget=True) from None
            body = resp["Body"]
            start = pos
            try:
                for chunk in body.iter_chunks(self._chunk_bytes):
                    pos += len(chunk)
                    yield chunk
            finally:
                body.close()
            if pos == start:
                raise _ObjectProblem(f"S3 returned no data at byte {pos} of {size}", forget=True)
            window = min(MAX_WINDOW, window * 2)

    def _gzip_chunks(self, s3: Any, bucket: str, key: str, etag: str, cur: _Cursor) -> Iterator[bytes]:
        # No Range: a gzip stream is only readable from its start. Skip what earlier steps read.
        skip = cur.offset
        resp = s3.get_object(Bucket=bucket, Key=key, IfMatch=etag)
        body = resp["Body"]
        try:
            for out in self._inflate(body, cur):
                if skip:
                    if len(out) <= skip:
                        skip -= len(out)
                        continue
                    out, skip = out[skip:], 0
                yield out
        except zlib.error as exc:
            raise _ObjectProblem(f"not a valid gzip file ({exc})") from None
        finally:
            body.close()

    def _inflate(self, body: Any, cur: _Cursor) -> Iterator[bytes]:
        """Decompressed pieces of at most INFLATE_OUT_BYTES; gzip members one after another."""
        inflater: Any = None
        zpos = 0
        for chunk in body.iter_chunks(self._chunk_bytes):
            zpos += len(chunk)
            cur.zpos = zpos
            data = chunk
            while True:
                if data and (inflater is None or inflater.eof):
                    inflater = zlib.decompressobj(wbits=31)  # the first member, or the next
                if inflater is None:
                    break
                out = inflater.decompress(data, INFLATE_OUT_BYTES)
                if out:
                    yield out
                if inflater.eof:
                    data = inflater.unused_data
                    if not data:
                        break
                else:
                    data = inflater.unconsumed_tail
                    if not data and not out:
                        break  # input used up and no output pending
        if inflater is None or not inflater.eof:
            raise _ObjectProblem("the gzip file is truncated")

    # -- records -------------------------------------------------------------------------------

    def _csv(self, lines: _Lines, cfg: S3ImportConfig, cur: _Cursor, step: _Step, where: str) -> bool:
        """CSV records into `step`; True when the object ended."""
        feeder = _CsvFeeder(lines)
        reader = csv.reader(feeder, delimiter=cfg.csv_delimiter, quotechar='"', strict=True)
        if cur.header is None:
            if cur.offset != 0:
                raise _ObjectProblem("the cursor lost this file's CSV header")
            header = self._csv_header(reader, feeder)
            if header is None:
                return True  # nothing but blank lines
            cur.header = header
        header = cur.header
        width = len(header)
        while not step.should_stop():
            start = cur.line + 1
            feeder.begin_record()
            try:
                record = next(reader)
            except StopIteration:
                return True
            except csv.Error as exc:
                step.bad(f"{where}#{start}", f"malformed CSV ({exc})")
                continue
            except _LineTooLong:
                step.bad(f"{where}#{start}", f"line longer than {MAX_LINE_BYTES // MIB} MiB")
                continue
            except _RecordTooLong:
                step.bad(f"{where}#{start}", f"record longer than {MAX_RECORD_BYTES // MIB} MiB")
                continue
            if not record:
                step.blank += 1
                continue
            if feeder.bad_text:
                step.bad(f"{where}#{start}", "not UTF-8 text")
            elif len(record) != width:
                step.bad(f"{where}#{start}", f"expected {width} fields, found {len(record)}")
            else:
                step.row(dict(zip(header, record, strict=True)), f"{where}#{start}")
        return False

    @staticmethod
    def _csv_header(reader: Any, feeder: _CsvFeeder) -> list[str] | None:
        while True:
            feeder.begin_record()
            try:
                record = next(reader)
            except StopIteration:
                return None
            except (csv.Error, _LineTooLong, _RecordTooLong) as exc:
                raise _ObjectProblem(f"cannot read the CSV header ({exc or type(exc).__name__})") from None
            if not record:
                continue
            if feeder.bad_text:
                raise _ObjectProblem("the CSV header is not UTF-8 text")
            header = [str(name) for name in record]
            dupes = sorted({n for n in header if header.count(n) > 1})
            if dupes:
                raise _ObjectProblem(f"the CSV header repeats a column: {', '.join(dupes)}")
            if len(json.dumps(header)) > HEADER_MAX_JSON:
                raise _ObjectProblem(f"the CSV header is longer than {HEADER_MAX_JSON // 1000} KB")
            return header

    @staticmethod
    def _jsonl(lines: _Lines, cur: _Cursor, step: _Step, where: str) -> bool:
        """JSON Lines records into `step`; True when the object ended."""
        while not step.should_stop():
            start = cur.line + 1
            try:
                line = lines.next_line()
            except _LineTooLong:
                step.bad(f"{where}#{start}", f"line longer than {MAX_LINE_BYTES // MIB} MiB")
                continue
            if line is None:
                return True
            text = line.strip()
            if not text:
                step.blank += 1
                continue
            ref = f"{where}#{start}"
            try:
                value = json.loads(text.decode("utf-8"))
            except UnicodeDecodeError:
                step.bad(ref, "not UTF-8 text")
                continue
            except json.JSONDecodeError as exc:
                step.bad(ref, f"not valid JSON ({exc.msg} at column {exc.colno})")
                continue
            except RecursionError:
                step.bad(ref, "JSON nested too deeply")
                continue
            if not isinstance(value, dict):
                step.bad(ref, f"not a JSON object (a JSON {_json_kind(value)})")
                continue
            step.row(value, ref)
        return False


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


class _Page:
    """Planned objects that fit the cursor's plan budget, in key order."""

    def __init__(self, budget: int) -> None:
        self._budget = budget
        self._used = 0
        self.entries: list[dict[str, Any]] = []
        self.more_after: str | None = None

    def add(self, obj: _Listed) -> bool:
        """Add obj if it fits; False (and more_after set) once the page is full."""
        if self.more_after is not None:
            return False
        entry = {"key": obj.key, "etag": obj.etag, "size": obj.size}
        cost = len(json.dumps(entry)) + 2
        if self.entries and self._used + cost > self._budget:
            self.more_after = str(self.entries[-1]["key"])
            return False
        self.entries.append(entry)
        self._used += cost
        return True
