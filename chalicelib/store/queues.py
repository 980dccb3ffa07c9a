"""SQS: the runs queue (run now, resume, first run of a new job)."""

from __future__ import annotations

import json
import threading
from typing import Any

from chalicelib.config import settings
from chalicelib.store import aws

_urls: dict[str, str] = {}
_lock = threading.Lock()


def queue_url(name: str) -> str:
    url = _urls.get(name)
    if url is None:
        with _lock:
            url = aws.client("sqs").get_queue_url(QueueName=name)["QueueUrl"]
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
