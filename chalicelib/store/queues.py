"""SQS: the runs queue (run now, resume, first run of a new job) and the health queue."""

from __future__ import annotations

import json
import threading
from typing import Any

from chalicelib.config import settings, stage_queue
from chalicelib.store import aws
from chalicelib.store.dynamo import Backoff, attempts

_urls: dict[str, str] = {}
_lock = threading.Lock()


def queue_url(name: str) -> str:
    """The URL of a queue, by label (`switchyard-runs`, the stage's queue) or by full name."""
    url = _urls.get(name)
    if url is None:
        with _lock:
            url = aws.client("sqs").get_queue_url(QueueName=stage_queue(name))["QueueUrl"]
            _urls[name] = url
    return url


def reset() -> None:
    _urls.clear()


class RunQueue:
    """Messages name a job and a trigger, never credentials or config."""

    def send(self, message: dict[str, Any], *, delay_seconds: int = 0) -> None:
        conf = settings()
        aws.client("sqs").send_message(
            QueueUrl=conf.runs_queue_url or queue_url(conf.runs_queue_name),
            MessageBody=json.dumps(message, sort_keys=True),
            DelaySeconds=max(0, min(900, delay_seconds)),
        )


class BackfillQueue:
    """Audience backfills, one message per page (ids and the page number only)."""

    def send(self, message: dict[str, Any]) -> None:
        aws.client("sqs").send_message(QueueUrl=queue_url(settings().backfill_queue_name),
                                       MessageBody=json.dumps(message, sort_keys=True))


class RealtimeQueue:
    """Nudges of real-time export jobs: ids only; the job's cursor says what to send."""

    def send(self, message: dict[str, Any], *, delay_seconds: int = 0) -> None:
        aws.client("sqs").send_message(QueueUrl=queue_url(settings().realtime_queue_name),
                                       MessageBody=json.dumps(message, sort_keys=True),
                                       DelaySeconds=max(0, min(900, delay_seconds)))

    def send_batch(self, messages: list[dict[str, Any]]) -> None:
        send_batches(queue_url(settings().realtime_queue_name), messages, what="real-time queue")


class HealthQueue:
    """The daily sweep's fan-out: one message per authorization (ids only)."""

    def send_batch(self, messages: list[dict[str, Any]]) -> int:
        """`send_batches` to the health queue (a refusal fails the sweep, which is retried whole)."""
        return send_batches(queue_url(settings().health_queue_name), messages, what="health queue")


SQS_BATCH = 10  # entries one SendMessageBatch may carry
# Entries SQS reports failed in a batch's answer are sent again, after a pause, this many
# sends in all (botocore's retries cover a request that failed whole, not these).
REFUSED_ENTRIES = Backoff(attempts=2)


def send_batches(url: str, messages: list[dict[str, Any]], *, what: str) -> int:
    """SendMessageBatch, 10 entries a request, the entries SQS refused sent again; returns
    the requests sent. Entries still refused raise RuntimeError naming `what`."""
    sqs = aws.client("sqs")
    sent = 0
    for start in range(0, len(messages), SQS_BATCH):
        entries = [{"Id": str(i), "MessageBody": json.dumps(m, sort_keys=True)}
                   for i, m in enumerate(messages[start:start + SQS_BATCH])]
        for _ in attempts(REFUSED_ENTRIES):
            failed = {f["Id"] for f in sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed", [])}
            sent += 1
            entries = [e for e in entries if e["Id"] in failed]
            if not entries:
                break
        else:
            raise RuntimeError(f"the {what} refused {len(entries)} messages")
    return sent
