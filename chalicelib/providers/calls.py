"""The one client layer every provider call goes through.

It counts API requests per authorization (for the activity chart and per-run cost),
applies timeouts, and retries transient errors; providers never build raw clients.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from chalicelib import config
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
    identity, which is how assume-role starts). `expires_at` (epoch seconds) is set for
    assumed-role credentials: their client is never reused past it."""

    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    region: str | None = None
    expires_at: float | None = None


CLIENT_CACHE_SIZE = 64  # clients kept per process (least recently used go first)

_shared: Any = None
_shared_lock = threading.Lock()
_clients: OrderedDict[tuple[str, ...], tuple[float | None, Any]] = OrderedDict()
# Clients actually built (not reused) since the process started: benches and tests read it.
built = 0
# The clock client expiry is compared with (tests move it).
now: Callable[[], float] = time.time
# The counter of the provider call running on this thread (a cached client is shared by
# every run of one identity; each call says whose requests it sends).
_counting: ContextVar[CallCounter | None] = ContextVar("provider_call_counter", default=None)


def _hooks_class() -> type:
    from botocore.hooks import HierarchicalEmitter

    class Hooks(HierarchicalEmitter):  # type: ignore[misc]
        """The shared session's event handlers, numbering their changes: a client copies
        the handlers when it is built, so one cached before a change must not be reused."""

        changes = 0

        def register(self, *args: Any, **kwargs: Any) -> Any:
            self.changes += 1
            return super().register(*args, **kwargs)

        def register_first(self, *args: Any, **kwargs: Any) -> Any:
            self.changes += 1
            return super().register_first(*args, **kwargs)

        def register_last(self, *args: Any, **kwargs: Any) -> Any:
            self.changes += 1
            return super().register_last(*args, **kwargs)

        def unregister(self, *args: Any, **kwargs: Any) -> Any:
            self.changes += 1
            return super().unregister(*args, **kwargs)

    return Hooks


_hooks: Any = None


def shared_session() -> Any:
    """The one boto3 Session every provider client is made on (tests and benches register
    their botocore event hooks on it). A Session per call would re-parse the service models
    (~135 ms for STS + S3); credentials are passed per client instead."""
    global _shared, _hooks
    if _shared is None:
        import boto3

        hooks = _hooks_class()()
        _shared = boto3.session.Session(botocore_session=botocore_session(hooks))
        _hooks = hooks
    return _shared


# What else `reset` clears: caches built on the shared session, registered by the modules
# that keep them (aws_auth's role sessions) when they load, so this module names none of them.
_forgetters: list[Callable[[], None]] = []


def also_reset(forget: Callable[[], None]) -> None:
    """Have `reset` call `forget` too (once, however often a module registers it)."""
    if forget not in _forgetters:
        _forgetters.append(forget)


def reset() -> None:
    """Forget the shared session, its clients and the cached role sessions obtained through
    it (tests and the local runner move the endpoint)."""
    global _shared, _hooks
    with _shared_lock:
        _shared = None
        _hooks = None
        _clients.clear()
    for forget in list(_forgetters):
        forget()


def _client_key(identity: AwsIdentity, service: str, region: str, timeout: float) -> tuple[str, ...]:
    # The secret and the token are in the key only as a digest: a client is reused only by
    # a caller holding the very same credentials (another tenant's keys never match).
    secret = hashlib.sha256(
        f"{identity.secret_access_key or ''}\x1f{identity.session_token or ''}".encode()
    ).hexdigest()
    return (service, region, config.aws_endpoint(service), str(timeout), identity.access_key_id or "", secret,
            str(_hooks.changes if _hooks is not None else 0))


def _build(identity: AwsIdentity, service: str, region: str, timeout: float) -> Any:
    global built
    from botocore.config import Config

    client = shared_session().client(
        service,
        region_name=region,
        aws_access_key_id=identity.access_key_id,
        aws_secret_access_key=identity.secret_access_key,
        aws_session_token=identity.session_token,
        config=Config(
            connect_timeout=min(timeout, 5),
            read_timeout=timeout,
            retries={"mode": "standard", "max_attempts": 3},
        ),
    )
    built += 1
    # before-send fires once per HTTP attempt, retries included: what AWS bills;
    # response-received once per attempt too, with the status or the exception.
    client.meta.events.register("before-send", partial(_count_sent, service))
    client.meta.events.register("response-received", partial(_count_failed, service))
    return client


def _count_sent(service: str, **kw: Any) -> None:
    counter = _counting.get()
    if counter is not None:
        counter.add(f"{service}.{_operation(kw)}")


def _count_failed(service: str, **kw: Any) -> None:
    counter = _counting.get()
    if counter is not None and _failed(kw):
        counter.add_error(f"{service}.{_operation(kw)}")


def aws_client(identity: AwsIdentity, service: str, counter: CallCounter | None) -> Any:
    """A client for `service` with these credentials, counting its requests in `counter`.

    Clients are cached per process by service, region, endpoint and credentials (a client
    costs ~5 ms of CPU to build); one of expiring credentials is dropped at their expiry."""
    timeout = settings().provider_timeout_seconds
    region = identity.region or settings().region
    # Client creation from a shared session is not thread-safe in botocore.
    with _shared_lock:
        shared_session()
        key = _client_key(identity, service, region, timeout)
        found = _clients.get(key)
        if found is not None and found[0] is not None and now() >= found[0]:
            del _clients[key]
            found = None
        if found is None:
            client = _build(identity, service, region, timeout)
            if identity.expires_at is None or now() < identity.expires_at:
                _clients[key] = (identity.expires_at, client)
                while len(_clients) > CLIENT_CACHE_SIZE:
                    _clients.popitem(last=False)
        else:
            client = found[1]
            _clients.move_to_end(key)
    return CountedClient(client, counter)


class CountedClient:
    """A cached client seen by one caller: its calls (and its paginators' pages) count
    their requests in that caller's counter."""

    def __init__(self, client: Any, counter: CallCounter | None) -> None:
        self._client = client
        self._counter = counter

    @property
    def client(self) -> Any:
        """The botocore client underneath (shared: never register handlers on it)."""
        return self._client

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._client, name)
        if name == "get_paginator":
            return lambda *a, **kw: _CountedPaginator(found(*a, **kw), self._counter)
        if not callable(found) or name.startswith("_") or name in ("can_paginate", "close"):
            return found
        counter = self._counter

        def call(*args: Any, **kwargs: Any) -> Any:
            token = _counting.set(counter)
            try:
                return found(*args, **kwargs)
            finally:
                _counting.reset(token)

        return call


class _CountedPaginator:
    def __init__(self, paginator: Any, counter: CallCounter | None) -> None:
        self._paginator = paginator
        self._counter = counter

    def paginate(self, **kwargs: Any) -> Iterator[Any]:
        pages = iter(self._paginator.paginate(**kwargs))
        while True:
            # Each page's request is sent inside next(): count it for this caller.
            token = _counting.set(self._counter)
            try:
                page = next(pages)
            except StopIteration:
                return
            finally:
                _counting.reset(token)
            yield page


def _failed(kw: dict[str, Any]) -> bool:
    if kw.get("exception") is not None:
        return True
    response = kw.get("response_dict") or {}
    return int(response.get("status_code") or 0) >= 400


def _operation(kw: dict[str, Any]) -> str:
    name = kw.get("event_name", "")
    # event_name looks like "before-send.s3.ListBuckets"
    return name.rsplit(".", 1)[-1] if name else "request"
