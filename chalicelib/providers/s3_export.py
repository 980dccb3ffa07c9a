"""S3 audience export: one object per export step (docs/export.md).

The export service (chalicelib/runs/export.py) computes what a run sends — a plan of
changes, each `(action, profile_id, values of the exported fields)` — and calls
`write_part` once per step with the next slice of it. This module only turns rows into a
file and puts it:

* key: `<prefix><job_id>/<run_id>/part-<step:05d>.<csv|jsonl>[.gz]`, so a redelivered step
  overwrites its own object (the destination write is idempotent);
* CSV (RFC 4180, header row, CRLF) or JSON Lines, columns `_action` (add | remove),
  `_profile_id`, then the configured fields in their configured order;
* a part holds at most the rows it is given and at most `max_part_mb` MB before
  compression (it tells the caller how many rows it took: the rest go to the next part);
* gzip with a zero timestamp: the same rows always make the same bytes.

The last step of a run also puts `<prefix><job_id>/<run_id>/manifest.json`: written after
every part, it tells a consumer that the run's parts are complete.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chalicelib.providers.base import ProviderError
from chalicelib.providers.calls import aws_client
from chalicelib.providers.roles import StepContext
from chalicelib.providers.s3 import S3ExportConfig, S3Provider, s3_error

MB = 1024 * 1024
COLUMNS = ("_action", "_profile_id")
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


@dataclass(frozen=True)
class Part:
    key: str
    rows: int  # rows taken from the slice given (the first `rows` of them)
    bytes: int  # before compression
    stored_bytes: int  # as put (compressed when gzip)
    skipped: tuple[int, ...] = ()  # a file takes any row: nothing is ever skipped


# A spreadsheet runs a cell that starts with one of these as a formula (=HYPERLINK(...),
# -2+3+cmd|...); tab and CR shift what it sees as the first character.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A signed number or a phone number ("+33 1 23 45 67 89", "-12.5") calls no function in any
# spreadsheet; escaping it would put a quote into every E.164 phone number a CRM receives.
NUMBER_LIKE = re.compile(r"[+-]?[0-9][0-9 ().-]*")


def _cell(value: Any, escape_formulas: bool) -> str:
    """A CSV cell: empty when missing; lists (append fields, identifiers with several
    values) as JSON arrays; booleans as true/false; numbers as JSON writes them. Text that
    a spreadsheet would run gets a leading ' when `escape_formulas` (numbers never need it:
    -12.5 is a number to a spreadsheet, and JSON numbers cannot carry a formula)."""
    if value is None:
        return ""
    if isinstance(value, str):
        risky = value.startswith(FORMULA_STARTS) and not NUMBER_LIKE.fullmatch(value)
        return "'" + value if escape_formulas and risky else value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class _Encoder:
    def __init__(self, fmt: str, fields: Sequence[str], escape_formulas: bool) -> None:
        self.fmt = fmt
        self.fields = list(fields)
        self.escape_formulas = escape_formulas

    def header(self) -> bytes:
        if self.fmt != "csv":
            return b""
        return self._csv([*COLUMNS, *self.fields])

    def row(self, action: str, profile_id: str, values: Sequence[Any]) -> bytes:
        if self.fmt == "csv":
            return self._csv([action, profile_id, *(_cell(v, self.escape_formulas) for v in values)])
        obj = {"_action": action, "_profile_id": profile_id, **dict(zip(self.fields, values, strict=True))}
        return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode()

    @staticmethod
    def _csv(cells: Sequence[str]) -> bytes:
        buf = io.StringIO()
        csv.writer(buf).writerow(cells)  # QUOTE_MINIMAL, "\r\n": RFC 4180
        return buf.getvalue().encode()


class S3AudienceExport:
    """What the export service needs from S3: freeze the settings, write parts, a manifest."""

    def __init__(self, provider: S3Provider) -> None:
        self.provider = provider

    def freeze(self, config: dict[str, Any]) -> dict[str, Any]:
        """The settings a run keeps from its step 0: editing the job mid-run changes the
        next run, never the files of this one."""
        try:
            cfg = S3ExportConfig.model_validate(config)
        except ValueError as exc:
            raise ProviderError(f"the export configuration is not valid: {exc}") from None
        return {
            "bucket": cfg.bucket,
            "prefix": cfg.prefix,
            "format": cfg.format,
            "compression": cfg.compression,
            "escape_formulas": cfg.escape_formulas,
            "fields": list(cfg.fields),
            "max_part_bytes": cfg.max_part_mb * MB,
        }

    @staticmethod
    def folder(frozen: dict[str, Any], job_id: str, run_id: str) -> str:
        return f"{frozen['prefix']}{job_id}/{run_id}/"

    def part_key(self, frozen: dict[str, Any], job_id: str, run_id: str, part: int) -> str:
        ext = frozen["format"] + (".gz" if frozen["compression"] == "gzip" else "")
        return f"{self.folder(frozen, job_id, run_id)}part-{part:05d}.{ext}"

    def encode(self, frozen: dict[str, Any], rows: Sequence[tuple[str, str, list[Any]]]) -> tuple[bytes, int]:
        """The file for the first rows of `rows` that fit `max_part_bytes` (always one at
        least), and how many rows it holds. Deterministic."""
        # A run frozen before the option existed wrote values as stored: its redelivered
        # steps must write the same bytes.
        enc = _Encoder(frozen["format"], frozen["fields"], bool(frozen.get("escape_formulas", False)))
        limit = int(frozen["max_part_bytes"])
        chunks = [enc.header()]
        size = len(chunks[0])
        taken = 0
        for action, pid, values in rows:
            line = enc.row(action, pid, values)
            if taken and size + len(line) > limit:
                break
            chunks.append(line)
            size += len(line)
            taken += 1
        return b"".join(chunks), taken

    def _put(self, ctx: StepContext, bucket: str, key: str, body: bytes, content_type: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        session = self.provider.identity(ctx.method, ctx.credentials, ctx.counter)
        try:
            aws_client(session, "s3", ctx.counter).put_object(
                Bucket=bucket, Key=key, Body=body, ContentType=content_type
            )
        except (ClientError, BotoCoreError) as exc:
            raise s3_error(exc, f"bucket {bucket!r}") from None

    def write_part(self, ctx: StepContext, frozen: dict[str, Any], part: int,
                   rows: Sequence[tuple[str, str, list[Any]]]) -> Part:
        """Put part `part` with the first rows of `rows` that fit; PutObject returned = the
        destination has it."""
        raw, taken = self.encode(frozen, rows)
        gz = frozen["compression"] == "gzip"
        body = gzip.compress(raw, compresslevel=6, mtime=0) if gz else raw
        key = self.part_key(frozen, ctx.job_id, ctx.run_id, part)
        self._put(ctx, frozen["bucket"], key, body,
                  "application/gzip" if gz else CONTENT_TYPES[frozen["format"]])
        return Part(key=key, rows=taken, bytes=len(raw), stored_bytes=len(body))

    def write_manifest(self, ctx: StepContext, frozen: dict[str, Any], summary: dict[str, Any]) -> str:
        """Put manifest.json once every part is written (deterministic content)."""
        key = self.folder(frozen, ctx.job_id, ctx.run_id) + "manifest.json"
        parts = int(summary["parts"])
        doc = {
            **summary,
            "format": frozen["format"],
            "compression": frozen["compression"],
            "columns": [*COLUMNS, *frozen["fields"]],
            "keys": [self.part_key(frozen, ctx.job_id, ctx.run_id, n) for n in range(1, parts + 1)],
        }
        body = json.dumps(doc, sort_keys=True, indent=1).encode()
        self._put(ctx, frozen["bucket"], key, body, "application/json")
        return key


__all__ = ["COLUMNS", "Part", "S3AudienceExport"]
