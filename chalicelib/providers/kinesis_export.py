"""Kinesis audience export: one PutRecords batch after another, per export step.

The export service (chalicelib/runs/export.py) computes a run's plan and calls
`write_part` once per step with the next slice of it (docs/export.md). Each change becomes
one event (chalicelib/providers/events.py: same JSON shape for every event destination,
`event_id` derived from run, part and position) and one Kinesis record:

* Data = the event's compact JSON; PartitionKey = the profile id, or the value of the
  configured field (missing/empty -> the profile id; longer than 256 characters -> its
  sha256), so the events of one key land on one shard, in order;
* records go in batches of at most 500 records and 5 MiB (data + partition keys), and a
  record over 1 MiB is not sent: it is reported (`skipped`, counted omitted `too_large`);
* entries PutRecords answers with an ErrorCode (throttling, internal failure) are sent
  again, only those, with backoff and jitter (event_batches.send_all); still refused after
  the attempts, the step fails as transient and the engine retries it: the whole part is
  sent again with the same event ids (at-least-once delivery, docs/providers/kinesis.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from chalicelib.providers import aws_auth
from chalicelib.providers.base import ProviderError
from chalicelib.providers.event_batches import EventPart, Refused, Retry, event_bytes, pack, send_all
from chalicelib.providers.events import build_events
from chalicelib.providers.kinesis import KinesisExportConfig, stream_error
from chalicelib.providers.roles import StepContext

MIB = 1024 * 1024
MAX_RECORDS = 500  # PutRecords: records per request
MAX_REQUEST_BYTES = 5 * MIB  # PutRecords: data + partition keys per request
MAX_RECORD_BYTES = MIB  # a stream's default record limit (data + partition key)
MAX_KEY_CHARS = 256  # PartitionKey: 1 to 256 Unicode characters


def partition_key(event: dict[str, Any], name: str) -> str:
    """The event's partition key: its profile id, or the value of field `name`."""
    if name == "profile_id":
        return str(event["profile_id"])
    value = event["fields"].get(name)
    if value is None or value == "" or value == []:
        return str(event["profile_id"])
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))
    if len(text) > MAX_KEY_CHARS:
        # Too long for Kinesis: a digest keeps "same value, same shard".
        return hashlib.sha256(text.encode()).hexdigest()
    return text


class KinesisAudienceExport:
    """What the export service needs from Kinesis: freeze the settings, write parts."""

    def __init__(self, retry: Retry | None = None) -> None:
        self.retry = retry or Retry()

    def freeze(self, config: dict[str, Any]) -> dict[str, Any]:
        """The settings a run keeps from its step 0 (editing the job changes the next run)."""
        try:
            cfg = KinesisExportConfig.model_validate(config)
        except ValueError as exc:
            raise ProviderError(f"the export configuration is not valid: {exc}") from None
        return {
            "audience_id": cfg.audience_id,
            "fields": list(cfg.fields),
            "stream_name": cfg.stream_name,
            "partition_key": cfg.partition_key,
        }

    def write_part(self, ctx: StepContext, frozen: dict[str, Any], part: int,
                   rows: Sequence[tuple[str, str, list[Any]]]) -> EventPart:
        """Put one event per row; returning means Kinesis stored every one not skipped."""
        from botocore.exceptions import BotoCoreError, ClientError

        name = str(frozen["stream_name"])
        records: dict[int, dict[str, Any]] = {}
        sizes: list[tuple[int, int]] = []
        skipped: list[int] = []
        for i, event in enumerate(build_events(ctx, frozen, part, rows)):
            data = event_bytes(event)
            key = partition_key(event, str(frozen["partition_key"]))
            size = len(data) + len(key.encode())
            if size > MAX_RECORD_BYTES:
                skipped.append(i)
                continue
            records[i] = {"Data": data, "PartitionKey": key}
            sizes.append((i, size))
        sess = aws_auth.session(ctx.method, ctx.credentials, ctx.counter)
        kinesis = sess.client("kinesis")

        def send(positions: list[int]) -> Refused:
            try:
                resp = kinesis.put_records(StreamName=name, Records=[records[p] for p in positions])
            except (ClientError, BotoCoreError) as exc:
                raise stream_error(sess, exc, name) from None
            # Entries answer in request order; a refused one carries an ErrorCode.
            return [(p, str(entry["ErrorCode"]))
                    for p, entry in zip(positions, resp["Records"], strict=True) if entry.get("ErrorCode")]

        batches = pack(sizes, MAX_RECORDS, MAX_REQUEST_BYTES)
        requests = send_all(batches, send, self.retry, deadline=ctx.deadline, what=f"stream {name!r}")
        return EventPart(key=f"stream {name!r} part {part}", rows=len(rows),
                         bytes=sum(size for _, size in sizes), skipped=tuple(skipped), requests=requests)

    def write_manifest(self, ctx: StepContext, frozen: dict[str, Any], summary: dict[str, Any]) -> str:
        """Nothing to write: every event stands alone (no end-of-run marker in the stream)."""
        return ""


def destination(provider: object) -> KinesisAudienceExport:
    """The step of kinesis_audience_export (declared in providers/kinesis.py)."""
    return KinesisAudienceExport()


__all__ = ["KinesisAudienceExport", "destination", "partition_key"]
