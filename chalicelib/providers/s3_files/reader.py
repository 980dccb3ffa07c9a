"""S3FileReader, the `Source` of the s3_file_import workflow: a step lists (step 0) or pages
the plan, then reads each object's bytes (a Range GetObject, or the whole gzip stream) into
records."""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator
from typing import Any

from chalicelib.providers.base import job_config
from chalicelib.providers.calls import aws_client
from chalicelib.providers.roles import ReadResult, StepContext
from chalicelib.providers.s3 import S3ImportConfig, S3Provider, s3_error
from chalicelib.providers.s3_files.early import FirstWindow
from chalicelib.providers.s3_files.lines import KIB, MIB, ChunkReader, Lines, ObjectProblem
from chalicelib.providers.s3_files.plan import Cursor, Listed, Page, default_page_bytes
from chalicelib.providers.s3_files.records import Step, read_csv, read_jsonl
from chalicelib.providers.s3_files.state import (
    MAX_STATE_OBJECTS,
    NextState,
    Seen,
    decode_digests,
    encode_digests,
    object_digest,
)

CHUNK_BYTES = 64 * KIB  # one read from the HTTP body / one BufferedReader fill
INFLATE_OUT_BYTES = 256 * KIB  # at most this much decompressed output per inflate call
FIRST_WINDOW = MIB  # Range window of a run's first GetObject (nothing to estimate from yet)
MIN_WINDOW = 256 * KIB
MAX_WINDOW = 8 * MIB
SAFETY_MARGIN_SECONDS = 1.0  # stop reading this long before ctx.deadline


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
        self._page_bytes = plan_page_bytes or default_page_bytes(max_state_objects)
        self._margin = safety_margin

    # -- the step --------------------------------------------------------------------------

    def read(self, ctx: StepContext) -> ReadResult:
        cfg = job_config(S3ImportConfig, ctx.config)
        identity = self._provider.identity(ctx.method, ctx.credentials, ctx.counter)
        s3 = aws_client(identity, "s3", ctx.counter)
        seen = Seen.from_state(ctx.state, cfg) if cfg.incremental else Seen()

        early = FirstWindow.ask(identity, cfg, seen, FIRST_WINDOW, ctx.counter) if ctx.cursor is None else None
        try:
            cur = self._start(s3, cfg, seen) if ctx.cursor is None else Cursor.from_dict(ctx.cursor)
            step = Step(max(1, ctx.max_records), ctx.deadline - self._margin)
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
                self._read_object(s3, cfg, cur, step, early)
        finally:
            if early is not None:
                early.drop()

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

    def _list(self, s3: Any, cfg: S3ImportConfig, start_after: str | None) -> Iterator[Listed]:
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
                    yield Listed(key, str(o["ETag"]), size, o["LastModified"])
        except (ClientError, BotoCoreError) as exc:
            raise s3_error(exc, f"bucket {cfg.bucket!r}") from None

    def _start(self, s3: Any, cfg: S3ImportConfig, seen: Seen) -> Cursor:
        """Step 0: list everything once for the totals and the next state; keep the first
        page of the plan (the rest is listed again, page by page, as the run gets there)."""
        next_state = NextState(self._max_state_objects)
        page = Page(self._page_bytes)
        total_bytes = objects = 0
        for obj in self._list(s3, cfg, None):
            digest = object_digest(cfg.bucket, obj.key, obj.etag)
            next_state.add(obj.last_modified, digest)
            if seen.covers(obj.last_modified, digest):
                continue
            total_bytes += obj.size
            objects += 1
            page.add(obj)
        return Cursor(
            plan=page.entries,
            more_after=page.more_after,
            next_state=next_state.to_state(cfg),
            total_bytes=total_bytes,
            objects=objects,
        )

    def _next_page(
        self, s3: Any, cfg: S3ImportConfig, seen: Seen, after: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        page = Page(self._page_bytes)
        for obj in self._list(s3, cfg, after):
            if seen.covers(obj.last_modified, object_digest(cfg.bucket, obj.key, obj.etag)):
                continue
            if not page.add(obj):
                break
        return page.entries, page.more_after

    # -- one object --------------------------------------------------------------------------

    def _read_object(self, s3: Any, cfg: S3ImportConfig, cur: Cursor, step: Step,
                     early: FirstWindow | None = None) -> None:
        """Read records of plan[cur.i] into `step` until the object ends or the step is full
        or late; cur moves along with every record (and to the next object at the end).
        `early`: step 0's first window, asked for beside the listing (used if it matches)."""
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
            else self._plain_chunks(s3, cfg.bucket, key, etag, size, cur, step, early)
        )
        raw = ChunkReader(chunks)
        stream = io.BufferedReader(raw, buffer_size=self._chunk_bytes)
        try:
            lines = Lines(stream, cur)
            if cfg.format == "csv":
                ended = read_csv(lines, cfg, cur, step, where)
            else:
                ended = read_jsonl(lines, cur, step, where)
            if not ended:
                ended = (cur.offset >= size) if not gz else not stream.peek(1)
        except ObjectProblem as exc:
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
    def _finish(cur: Cursor, step: Step) -> None:
        cur.finish_object()
        step.objects_finished += 1

    @staticmethod
    def _forget(cfg: S3ImportConfig, cur: Cursor, key: str, etag: str) -> None:
        digests = decode_digests(str(cur.next_state.get("digests") or ""))
        digests.discard(object_digest(cfg.bucket, key, etag))
        cur.next_state = {**cur.next_state, "digests": encode_digests(digests)}

    def _window(self, cur: Cursor, step: Step) -> int:
        # Bytes one step is expected to need, from this run's bytes per record so far.
        records = cur.processed + cur.invalid + step.records
        if records == 0 or cur.bytes_read == 0:
            return FIRST_WINDOW
        need = max(1, step.max_records - step.records)
        guess = cur.bytes_read / records * need * 1.25 + 64 * KIB
        return int(min(MAX_WINDOW, max(MIN_WINDOW, guess)))

    def _plain_chunks(
        self, s3: Any, bucket: str, key: str, etag: str, size: int, cur: Cursor, step: Step,
        early: FirstWindow | None = None,
    ) -> Iterator[bytes]:
        from botocore.exceptions import ClientError

        pos = cur.offset
        window = self._window(cur, step)
        while pos < size:
            end = min(size, pos + window) - 1
            resp = early.take(key, etag, pos, window) if early is not None else None
            early = None
            try:
                if resp is None:
                    resp = s3.get_object(Bucket=bucket, Key=key, IfMatch=etag, Range=f"bytes={pos}-{end}")
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code", "")) not in ("InvalidRange", "416"):
                    raise
                # The object holds fewer bytes than its listing said: a problem of this object,
                # not of the job's configuration (the run goes on with the other objects).
                raise ObjectProblem(
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
                raise ObjectProblem(f"S3 returned no data at byte {pos} of {size}", forget=True)
            window = min(MAX_WINDOW, window * 2)

    def _gzip_chunks(self, s3: Any, bucket: str, key: str, etag: str, cur: Cursor) -> Iterator[bytes]:
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
            raise ObjectProblem(f"not a valid gzip file ({exc})") from None
        finally:
            body.close()

    def _inflate(self, body: Any, cur: Cursor) -> Iterator[bytes]:
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
            raise ObjectProblem("the gzip file is truncated")
