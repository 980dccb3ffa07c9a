"""The adaptive rate limit of the HTTP client layer (`providers/http.py`): one token
bucket per provider and authorization, halved by a 429 and raised slowly by successes;
waiting for a token never passes the call's deadline."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from chalicelib.providers.http_errors import HttpError


@dataclass(frozen=True)
class RateLimit:
    """Requests per second an authorization may send at full speed, and the burst."""

    rate: float = 10.0
    burst: int = 10
    min_rate: float = 0.2
    # What one success adds back to a lowered rate, as a fraction of `rate` (slow recovery).
    recover: float = 0.05
    # Requests per second the provider allows all of Switchyard together (every tenant, every
    # Lambda), keyed by provider; None: no shared limit.
    shared_rate: float | None = None


@dataclass
class _Bucket:
    rate: float
    tokens: float
    updated: float
    not_before: float = 0.0


class RateLimiter:
    """In-process token buckets, one per key (provider and authorization).

    A 429 halves the key's rate and empties its bucket (and honours Retry-After for every
    caller of that key); each success adds `recover·rate` back, up to the full rate.
    Lambda containers do not share them: the limit is per container, which is what keeps
    one container's burst from tripping the provider's limit for everyone.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, max_keys: int = 2048) -> None:
        self.clock = clock
        self.sleep = sleep
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def _bucket(self, key: str, limit: RateLimit, now: float) -> _Bucket:
        b = self._buckets.get(key)
        if b is None:
            b = _Bucket(rate=limit.rate, tokens=float(limit.burst), updated=now)
            self._buckets[key] = b
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            b.tokens = min(float(limit.burst), b.tokens + (now - b.updated) * b.rate)
            b.updated = now
        return b

    def wall(self) -> float:
        """Wall-clock seconds on this limiter's clock (for rates shared between machines):
        a test that moves the clock moves this too."""
        return time.time() - time.monotonic() + self.clock()

    def rate(self, key: str) -> float | None:
        with self._lock:
            b = self._buckets.get(key)
            return b.rate if b else None

    def acquire(self, key: str, limit: RateLimit, deadline: float) -> float:
        """Take one token, waiting for it; returns the seconds waited. Raises a transient
        HttpError (with retry_after) when the wait would pass the deadline."""
        waited = 0.0
        while True:
            with self._lock:
                now = self.clock()
                b = self._bucket(key, limit, now)
                wait = max(0.0, b.not_before - now)
                if wait == 0.0:
                    if b.tokens >= 1.0:
                        b.tokens -= 1.0
                        return waited
                    wait = (1.0 - b.tokens) / b.rate
            if now + wait > deadline:
                raise HttpError(f"rate limited: the next request is allowed in {wait:.1f} s",
                                kind="deadline", transient=True, retry_after=max(1.0, wait))
            self.sleep(wait)
            waited += wait

    def throttled(self, key: str, limit: RateLimit, retry_after: float | None) -> None:
        with self._lock:
            now = self.clock()
            b = self._bucket(key, limit, now)
            b.rate = max(limit.min_rate, b.rate / 2)
            b.tokens = 0.0
            if retry_after:
                b.not_before = max(b.not_before, now + retry_after)

    def succeeded(self, key: str, limit: RateLimit) -> None:
        with self._lock:
            b = self._bucket(key, limit, self.clock())
            b.rate = min(limit.rate, b.rate + limit.rate * limit.recover)

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()


LIMITER = RateLimiter()
