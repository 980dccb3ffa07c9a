"""Lazily created, cached boto3 clients: nothing talks to AWS at import time.

Endpoints come from boto3's standard settings (AWS_ENDPOINT_URL and friends), so the
same code reaches AWS in production and moto's server locally.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from chalicelib.awsdata import botocore_session
from chalicelib.background import in_background
from chalicelib.config import settings

if TYPE_CHECKING:  # pragma: no cover
    import boto3
    from botocore.config import Config

_lock = threading.Lock()
_session: boto3.session.Session | None = None
_clients: dict[str, Any] = {}
_tracking = threading.local()
T = TypeVar("T")


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


class Beside(Generic[T]):
    """App requests sent on another thread for this thread's work (background.in_background):
    they join the tally of the thread that takes the outcome, once, whatever it is."""

    def __init__(self, work: Callable[[], T], name: str) -> None:
        self._pending = in_background(lambda: _tallied(work), name)
        self._added = False

    def exception(self) -> BaseException | None:
        """Wait for it; what it raised, if anything."""
        _, exc, counts = self._pending.result()
        if not self._added:
            self._added = True
            add_requests(counts)
        return exc

    def result(self) -> T:
        exc = self.exception()
        if exc is not None:
            raise exc
        return cast(T, self._pending.result()[0])  # set whenever nothing was raised


def _tallied(work: Callable[[], T]) -> tuple[T | None, BaseException | None, dict[str, int]]:
    tally = track_requests()
    try:
        return work(), None, tally.by_service()
    except Exception as exc:  # raised by whoever takes the outcome
        return None, exc, tally.by_service()


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


def client_config(service: str, *, read_timeout: int = 10) -> Config:
    """The settings of the app's client for `service`. Only the read timeout can change: a
    bench or test against a loaded moto waits longer, nothing else differs from the app."""
    from botocore.config import Config

    return Config(
        retries={"mode": "standard", "max_attempts": 4},
        connect_timeout=3,
        read_timeout=read_timeout,
        # DynamoDB requests are built by the store only, and DynamoDB validates
        # them again; botocore's client-side check costs ~30% of a batch's CPU.
        parameter_validation=service != "dynamodb",
    )


def client(service: str) -> Any:
    """One client per service per process (clients are thread-safe, sessions are not)."""
    found = _clients.get(service)
    if found is not None:
        return found
    with _lock:
        found = _clients.get(service)
        if found is None:
            found = session().client(service, config=client_config(service))
            _clients[service] = found
    return found


def cached_clients() -> list[Any]:
    """The app's clients made so far (tests and benches that check which requests came from them)."""
    with _lock:
        return list(_clients.values())


def use_client(service: str, replacement: Any) -> None:
    """Make `replacement` the app's client for `service` until the next `reset()`. The app never
    calls it: benches and tests do, to give the app a client made on `session()` (so the
    request tally and their own counting hooks still see it) with a longer read timeout
    (`client_config`), because moto under load answers slower than AWS."""
    with _lock:
        _clients[service] = replacement


def reset() -> None:
    """Drop cached clients (the local runner and tests move the endpoint)."""
    global _session
    with _lock:
        _clients.clear()
        _session = None
