"""The local DynamoDB stream poller: Lambda's DynamoDB event source mapping, played against
moto's stream (DescribeStream, GetShardIterator, GetRecords).

For each `@app.on_dynamodb_record` handler, every shard of the stream is read in order from
TRIM_HORIZON, at most `batch_size` records a batch, and the batch is handed to
`app.handler_map[name](event, context)` as Lambda's DynamoDB event. As the mapping does:

* a batch that returns normally is done, and the shard moves past it;
* a handler with ReportBatchItemFailures (`chalicelib.workers.STREAM_PARTIAL_BATCH_RESPONSES`)
  that answers `{"batchItemFailures": [{"itemIdentifier": <sequence number>}]}` has the shard
  moved to just before the first failed record, and the batch from there is delivered again;
* a handler that raises gets the same batch again;
* after `max_retries` retries of one batch, it is skipped with an error in the log
  (MaximumRetryAttempts in the package).

No sleeping between retries in `poll_once` (tests call it and hold states with events);
the thread in `run` waits `interval` seconds between passes that found nothing.

Chalice needs a literal stream ARN at import, so the handler names a placeholder; `streams`
maps it to the local table whose stream it stands for.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chalice.app import Chalice, DynamoDBEventConfig

log = logging.getLogger("devserver.streams")


def _lambda_value(value: Any) -> Any:
    """A typed attribute value as the Lambda event carries it (binary as base64 text)."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k == "B" and isinstance(v, bytes | bytearray):
                out[k] = base64.b64encode(v).decode()
            elif k == "BS":
                out[k] = [base64.b64encode(b).decode() if isinstance(b, bytes | bytearray) else b for b in v]
            else:
                out[k] = _lambda_value(v)
        return out
    if isinstance(value, list):
        return [_lambda_value(v) for v in value]
    return value


def stream_record(record: Mapping[str, Any], stream_arn: str, region: str) -> dict[str, Any]:
    """One record of Lambda's DynamoDB event, from a GetRecords record."""
    ddb = dict(record["dynamodb"])
    created = ddb.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        ddb["ApproximateCreationDateTime"] = created.timestamp()
    for image in ("Keys", "NewImage", "OldImage"):
        if image in ddb:
            ddb[image] = _lambda_value(ddb[image])
    return {
        "eventID": record.get("eventID", ""),
        "eventName": record["eventName"],
        "eventVersion": record.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": ddb,
        "eventSourceARN": stream_arn,
    }


def first_failure(result: Any, sequence_numbers: list[str]) -> int | None:
    """The index of the first record Lambda retries from, given the handler's answer (None:
    the batch is done). A malformed answer fails the whole batch, as Lambda treats it."""
    if not isinstance(result, Mapping) or "batchItemFailures" not in result:
        return None
    failures = result.get("batchItemFailures")
    if not isinstance(failures, list):
        return 0
    if not failures:
        return None
    positions = []
    for f in failures:
        ident = f.get("itemIdentifier") if isinstance(f, Mapping) else None
        if ident not in sequence_numbers:
            return 0
        positions.append(sequence_numbers.index(ident))
    return min(positions)


@dataclass
class _Shard:
    shard_id: str
    iterator: str | None = None
    after: str | None = None  # the last sequence number done
    retries: int = 0


@dataclass
class StreamSource:
    """One handler on one table's stream."""

    handler: str
    table: str
    batch_size: int
    partial: bool
    shards: dict[str, _Shard] = field(default_factory=dict)
    stream_arn: str | None = None


class StreamPoller:
    """See the module docstring. `poll_once()` delivers what the streams hold now; `run()`
    polls until `stop` is set."""

    def __init__(self, app: Chalice, stop: threading.Event, streams: Mapping[str, str], *,
                 context_for: Callable[[str], Any], region: str, partial: frozenset[str],
                 client: Callable[[str], Any], max_retries: int = 20, interval: float = 0.25) -> None:
        self.app = app
        self.stop = stop
        self.context_for = context_for
        self.region = region
        self.client = client
        self.max_retries = max_retries
        self.interval = interval
        self.sources = []
        for src in app.event_sources:
            if isinstance(src, DynamoDBEventConfig):
                table = streams.get(src.stream_arn)
                if table is None:
                    log.warning("%s reads stream %s, which has no local table: nothing is delivered to it",
                                src.name, src.stream_arn)
                    continue
                self.sources.append(StreamSource(src.name, table, max(1, min(1000, int(src.batch_size or 100))),
                                                 src.name in partial))

    def _discover(self, source: StreamSource) -> None:
        if source.stream_arn is None:
            desc = self.client("dynamodb").describe_table(TableName=source.table)["Table"]
            source.stream_arn = desc.get("LatestStreamArn")
            if source.stream_arn is None:
                raise RuntimeError(f"table {source.table} has no stream (StreamSpecification)")
        streams = self.client("dynamodbstreams")
        shards = streams.describe_stream(StreamArn=source.stream_arn)["StreamDescription"].get("Shards", [])
        for s in shards:
            if s["ShardId"] not in source.shards:
                source.shards[s["ShardId"]] = _Shard(s["ShardId"])

    def _iterator(self, source: StreamSource, shard: _Shard) -> str:
        streams = self.client("dynamodbstreams")
        args: dict[str, Any] = {"StreamArn": source.stream_arn, "ShardId": shard.shard_id}
        if shard.after:
            args.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=shard.after)
        else:
            args["ShardIteratorType"] = "TRIM_HORIZON"
        return str(streams.get_shard_iterator(**args)["ShardIterator"])

    def poll_once(self) -> int:
        """One pass: every shard of every source read to its end (retries included, up to
        max_retries per batch). Returns the records delivered successfully."""
        done = 0
        for source in self.sources:
            self._discover(source)
            for shard in source.shards.values():
                done += self._drain(source, shard)
        return done

    def _drain(self, source: StreamSource, shard: _Shard) -> int:
        streams = self.client("dynamodbstreams")
        done = 0
        while not self.stop.is_set():
            if shard.iterator is None:
                shard.iterator = self._iterator(source, shard)
            resp = streams.get_records(ShardIterator=shard.iterator, Limit=source.batch_size)
            records = resp.get("Records", [])
            if not records:
                shard.iterator = resp.get("NextShardIterator")
                return done
            delivered = self._deliver(source, shard, records)
            done += delivered
            # Read again from the checkpoint: a retry starts at the first failed record.
            shard.iterator = resp.get("NextShardIterator") if delivered == len(records) else None
        return done

    def _deliver(self, source: StreamSource, shard: _Shard, records: list[dict[str, Any]]) -> int:
        """Hand one batch to the handler; move the shard's checkpoint past what succeeded."""
        seqs = [r["dynamodb"]["SequenceNumber"] for r in records]
        event = {"Records": [stream_record(r, source.stream_arn or "", self.region) for r in records]}
        handler = self.app.handler_map[source.handler]
        try:
            result = handler(event, self.context_for(source.handler))
        except Exception:
            log.exception("%s raised on %d stream record(s); the batch is retried", source.handler, len(records))
            failed_at: int | None = 0
        else:
            failed_at = first_failure(result, seqs) if source.partial else None
        ok = len(records) if failed_at is None else failed_at
        if ok:
            shard.after = seqs[ok - 1]
        if failed_at is None:
            shard.retries = 0
            return ok
        shard.retries = 0 if ok else shard.retries + 1
        if shard.retries > self.max_retries:
            log.error("%s: stream record %s failed %d retries; skipped (MaximumRetryAttempts)",
                      source.handler, seqs[failed_at], self.max_retries)
            shard.after, shard.retries = seqs[failed_at], 0
        return ok

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                found = self.poll_once()
            except Exception:
                log.exception("stream poll failed")
                found = 0
            if not found:
                self.stop.wait(self.interval)


__all__ = ["StreamPoller", "first_failure", "stream_record"]
