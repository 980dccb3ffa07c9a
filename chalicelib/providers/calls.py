"""The one client layer every provider call goes through.

It counts API requests per authorization (for the activity chart and per-run cost),
applies timeouts, and retries transient errors; providers never build raw clients.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from chalicelib.config import settings


@dataclass
class CallCounter:
    """Requests sent on behalf of one authorization, by 'service.operation'."""

    counts: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def aws_session(
    *,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    session_token: str | None = None,
    region: str | None = None,
) -> Any:
    """A boto3 session for a customer's AWS account (never the app's own credentials
    unless none are given, which is how assume-role starts)."""
    import boto3

    return boto3.session.Session(
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        aws_session_token=session_token,
        region_name=region or settings().region,
    )


def aws_client(session: Any, service: str, counter: CallCounter | None) -> Any:
    from botocore.config import Config

    timeout = settings().provider_timeout_seconds
    client = session.client(
        service,
        config=Config(
            connect_timeout=min(timeout, 5),
            read_timeout=timeout,
            retries={"mode": "standard", "max_attempts": 3},
        ),
    )
    if counter is not None:
        # before-send fires once per HTTP attempt, retries included: what AWS bills.
        client.meta.events.register(
            "before-send",
            lambda request, **kw: counter.add(f"{service}.{_operation(kw)}"),
        )
    return client


def _operation(kw: dict[str, Any]) -> str:
    name = kw.get("event_name", "")
    # event_name looks like "before-send.s3.ListBuckets"
    return name.rsplit(".", 1)[-1] if name else "request"
