"""The one client layer every provider call goes through.

It counts API requests per authorization (for the activity chart and per-run cost),
applies timeouts, and retries transient errors; providers never build raw clients.
"""

from __future__ import annotations

import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from chalicelib.awsdata import botocore_session
from chalicelib.config import settings


class SharedRates(Protocol):
    """Request rates shared by every process (the store keeps them in DynamoDB)."""

    def reserve(self, key: str, interval: float, now: float, latest: float) -> tuple[bool, float]:
        """Reserve the next free slot of `key` (slots `interval` seconds apart; `now` in
        wall-clock seconds) if it comes within `latest` seconds: (True, seconds until it).
        Else (False, seconds until the next free slot), reserving nothing."""
        ...


@dataclass
class CallCounter:
    """Requests sent on behalf of one authorization, by 'service.operation'.

    `counts` has every attempt (retries included: what the provider sees and bills);
    `errors` the attempts that failed (no answer, or an error status). The authorization
    id, when known, also keys the HTTP layer's per-authorization rate limit.
    """

    counts: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    errors: Counter[str] = field(default_factory=Counter)
    authorization_id: str | None = None
    # Where rates shared by every tenant are reserved (providers whose quota is per app,
    # not per customer); None: the per-container rate limit only.
    rates: SharedRates | None = None

    def add(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def add_error(self, key: str) -> None:
        with self._lock:
            self.errors[key] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def error_total(self) -> int:
        return sum(self.errors.values())


@dataclass(frozen=True)
class AwsIdentity:
    """Whose credentials a provider call uses: a customer's keys, or none (the app's own
    identity, which is how assume-role starts)."""

    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    region: str | None = None


_shared: Any = None
_shared_lock = threading.Lock()


def shared_session() -> Any:
    """The one boto3 Session every provider client is made on (tests and benches register
    their botocore event hooks on it). A Session per call would re-parse the service models
    (~135 ms for STS + S3); credentials are passed per client instead."""
    global _shared
    if _shared is None:
        import boto3

        _shared = boto3.session.Session(botocore_session=botocore_session())
    return _shared


def reset() -> None:
    """Forget the shared session and the cached role sessions obtained through it (tests
    and the local runner move the endpoint)."""
    global _shared
    with _shared_lock:
        _shared = None
    auth = sys.modules.get("chalicelib.providers.aws_auth")  # never loaded just to be cleared
    if auth is not None:
        auth.reset()


def aws_client(identity: AwsIdentity, service: str, counter: CallCounter | None) -> Any:
    from botocore.config import Config

    timeout = settings().provider_timeout_seconds
    # Client creation from a shared session is not thread-safe in botocore.
    with _shared_lock:
        client = shared_session().client(
            service,
            region_name=identity.region or settings().region,
            aws_access_key_id=identity.access_key_id,
            aws_secret_access_key=identity.secret_access_key,
            aws_session_token=identity.session_token,
            config=Config(
                connect_timeout=min(timeout, 5),
                read_timeout=timeout,
                retries={"mode": "standard", "max_attempts": 3},
            ),
        )
    if counter is not None:
        # before-send fires once per HTTP attempt, retries included: what AWS bills;
        # response-received once per attempt too, with the status or the exception.
        client.meta.events.register(
            "before-send",
            lambda request, **kw: counter.add(f"{service}.{_operation(kw)}"),
        )
        client.meta.events.register(
            "response-received",
            lambda **kw: counter.add_error(f"{service}.{_operation(kw)}") if _failed(kw) else None,
        )
    return client


def _failed(kw: dict[str, Any]) -> bool:
    if kw.get("exception") is not None:
        return True
    response = kw.get("response_dict") or {}
    return int(response.get("status_code") or 0) >= 400


def _operation(kw: dict[str, Any]) -> str:
    name = kw.get("event_name", "")
    # event_name looks like "before-send.s3.ListBuckets"
    return name.rsplit(".", 1)[-1] if name else "request"
