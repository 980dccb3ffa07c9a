"""Time in tests: bounds that come from what this machine does now, not from constants.

A read timeout must let every healthy answer through and stop a late one. A constant
(0.3 s, 1 s) does both on an idle machine and fails healthy answers on a loaded one, so
tests that need a short read timeout take it from `read_timeout()`: a multiple of the
slowest of a few immediate answers of a local server, measured when it is asked for. A
"late" answer is then made later than that (`late()`), or held until the test lets it go.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from tests.http_receiver import Receiver

FLOOR_SECONDS = 1.0  # never shorter: an idle machine's round trip is ~2 ms
FACTOR = 20  # a healthy answer may be this many times slower than the slowest just measured


def healthy_round_trip(samples: int = 5) -> float:
    """Seconds the slowest of `samples` immediate answers took, each on a new connection."""
    slowest = 0.0
    with Receiver() as receiver:
        for _ in range(samples):
            began = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=60)
            try:
                conn.request("GET", "/")
                conn.getresponse().read()
            finally:
                conn.close()
            slowest = max(slowest, time.monotonic() - began)
    return slowest


def read_timeout() -> float:
    """A read timeout no healthy local answer reaches, on this machine, at this load."""
    return max(FLOOR_SECONDS, FACTOR * healthy_round_trip())


def late(timeout: float) -> float:
    """How long a "too late" answer takes: surely past `timeout`, whatever the load (a
    delay is a lower bound: the answer cannot come sooner)."""
    return 2 * timeout


def concurrent_seconds(work: Callable[[], object], n: int = 10) -> float:
    """Seconds `n` threads took to each do `work` once, started together: the baseline for
    a bound on a batch of that work done concurrently, measured at the load of the moment."""
    threads = [threading.Thread(target=work) for _ in range(n)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return time.monotonic() - began


def bound(baseline: float, floor: float) -> float:
    """A wall-clock bound for work whose same-run baseline took `baseline` seconds."""
    return max(floor, FACTOR * baseline)


class MovedClock:
    """A clock and a sleep for the HTTP client layer (providers.http.LIMITER's): sleeping
    moves the clock instead of waiting, and every wait is kept. The clock still follows real
    time too, so deadlines taken from `time.monotonic()` keep their meaning."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.slept: list[float] = []

    def now(self) -> float:
        return time.monotonic() + self.offset

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.offset += seconds


class Ticking(Protocol):
    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


T = TypeVar("T", bound=Ticking)


def on_http_layer(monkeypatch: Any, clock: T) -> T:
    """Give the HTTP client layer (providers.http.LIMITER) this clock and its sleep, for the
    test; returns the clock."""
    from chalicelib.providers import http

    monkeypatch.setattr(http.LIMITER, "clock", clock.now)
    monkeypatch.setattr(http.LIMITER, "sleep", clock.sleep)
    return clock


def moved_http_clock(monkeypatch: Any) -> None:
    """The HTTP client layer's retry and rate-limit waits move a clock instead of sleeping
    (MovedClock): a fake provider's 429s, 5xx and rate limits cost the suite no wall time.
    A test that gave the layer a clock of its own keeps it."""
    from chalicelib.providers import http

    if http.LIMITER.clock is time.monotonic and http.LIMITER.sleep is time.sleep:
        on_http_layer(monkeypatch, MovedClock())
