"""Lazily created, cached boto3 clients: nothing talks to AWS at import time.

Endpoints come from boto3's standard settings (AWS_ENDPOINT_URL and friends), so the
same code reaches AWS in production and moto's server locally.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from chalicelib.awsdata import botocore_session
from chalicelib.config import settings

if TYPE_CHECKING:  # pragma: no cover
    import boto3

_lock = threading.Lock()
_session: boto3.session.Session | None = None
_clients: dict[str, Any] = {}
_tracking = threading.local()


class RequestTally:
    """AWS requests sent by this thread's app clients since tracking started (per-run cost)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def by_service(self) -> dict[str, int]:
        return dict(self.counts)


def add_requests(counts: dict[str, int]) -> None:
    """Requests another thread sent for this thread's work, added to this thread's tally."""
    tally = getattr(_tracking, "tally", None)
    if tally is not None:
        for service, n in counts.items():
            tally.counts[service] = tally.counts.get(service, 0) + n


def track_requests() -> RequestTally:
    tally = RequestTally()
    _tracking.tally = tally
    return tally


def _count(event_name: str = "", **_: Any) -> None:
    tally = getattr(_tracking, "tally", None)
    if tally is not None:
        service = event_name.split(".")[1] if event_name.count(".") >= 2 else "other"
        service = service.replace("-", "")  # "secrets-manager" -> "secretsmanager"
        tally.counts[service] = tally.counts.get(service, 0) + 1


def session() -> boto3.session.Session:
    global _session
    if _session is None:
        import boto3

        _session = boto3.session.Session(region_name=settings().region, botocore_session=botocore_session())
        # Counted once per HTTP attempt (retries included): what AWS bills.
        _session.events.register("before-send", _count)
    return _session


def client(service: str) -> Any:
    """One client per service per process (clients are thread-safe, sessions are not)."""
    found = _clients.get(service)
    if found is not None:
        return found
    with _lock:
        found = _clients.get(service)
        if found is None:
            from botocore.config import Config

            found = session().client(
                service,
                config=Config(
                    retries={"mode": "standard", "max_attempts": 4},
                    connect_timeout=3,
                    read_timeout=10,
                    # DynamoDB requests are built by the store only, and DynamoDB validates
                    # them again; botocore's client-side check costs ~30% of a batch's CPU.
                    parameter_validation=service != "dynamodb",
                ),
            )
            _clients[service] = found
    return found


def reset() -> None:
    """Drop cached clients (the local runner and tests move the endpoint)."""
    global _session
    with _lock:
        _clients.clear()
        _session = None
