"""SQS: the runs queue (run now, resume, first run of a new job) and the health queue."""

from __future__ import annotations

import json
import threading
from typing import Any

from chalicelib.config import settings, stage_queue
from chalicelib.store import aws

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
        url = queue_url(settings().realtime_queue_name)
        sqs = aws.client("sqs")
        for start in range(0, len(messages), 10):
            entries = [{"Id": str(i), "MessageBody": json.dumps(m, sort_keys=True)}
                       for i, m in enumerate(messages[start:start + 10])]
            failed = sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed", [])
            if failed:
                raise RuntimeError(f"the real-time queue refused {len(failed)} nudges")


class HealthQueue:
    """The daily sweep's fan-out: one message per authorization (ids only)."""

    def send_batch(self, messages: list[dict[str, Any]]) -> int:
        """SendMessageBatch, 10 entries a request; returns the requests sent. Entries SQS
        reports as failed are sent again once, then raise (the sweep is retried whole)."""
        conf = settings()
        url = queue_url(conf.health_queue_name)
        sqs = aws.client("sqs")
        sent = 0
        for start in range(0, len(messages), 10):
            entries = [{"Id": str(i), "MessageBody": json.dumps(m, sort_keys=True)}
                       for i, m in enumerate(messages[start:start + 10])]
            for _attempt in range(2):
                resp = sqs.send_message_batch(QueueUrl=url, Entries=entries)
                sent += 1
                failed = {f["Id"] for f in resp.get("Failed", [])}
                entries = [e for e in entries if e["Id"] in failed]
                if not entries:
                    break
            if entries:
                raise RuntimeError(f"the health queue refused {len(entries)} messages")
        return sent
