"""Google Tag Manager's quota is per Cloud project: 0.25 requests/s for every tenant of the
app together (Google enforces it on a 100 s sliding window). Each Lambda's own rate limit
cannot keep concurrent Lambdas under it; the slot each request takes in DynamoDB
(chalicelib/store/rates.py) does.

Time is simulated: every participant thread's sleep waits until all participants sleep,
then the clock jumps to the earliest wake-up (a discrete-event clock). Requests in flight
hold the clock still, so the fake Google sees each request at the time it was sent, and
nothing depends on the machine's speed.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.providers.base import ProviderError
from chalicelib.providers.calls import CallCounter
from chalicelib.providers.gtm import GoogleOAuth, GtmInstallConfig
from chalicelib.providers.registry import Registry
from chalicelib.providers.roles import StepContext
from chalicelib.store.rates import SharedRateStore
from tests.engine.fresh import fresh_deps
from tests.fakes.google import FakeGoogle
from tests.timing import on_http_layer

INTERVAL = 4.0  # 1 / 0.25 requests a second


class EventClock:
    """A clock for `participants` threads: time moves only when all of them sleep."""

    def __init__(self, participants: int, start: float = 1_000_000.0) -> None:
        self.t = start
        self.running = participants
        self.wakes: list[tuple[float, int]] = []
        self.cv = threading.Condition()
        self._n = 0

    def now(self) -> float:
        with self.cv:
            return self.t

    def sleep(self, seconds: float) -> None:
        with self.cv:
            self._n += 1
            me = (self.t + max(0.0, seconds), self._n)
            heapq.heappush(self.wakes, me)
            self.running -= 1
            self._advance()
            while me in self.wakes or self.t < me[0]:
                assert self.cv.wait(120), "the simulated clock stalled"

    def leave(self) -> None:
        with self.cv:
            self.running -= 1
            self._advance()

    def _advance(self) -> None:
        if self.running == 0 and self.wakes:
            self.t = max(self.t, self.wakes[0][0])
            while self.wakes and self.wakes[0][0] <= self.t:
                heapq.heappop(self.wakes)
                self.running += 1  # on behalf of the thread woken
            self.cv.notify_all()


@pytest.fixture()
def table(aws_endpoint: str) -> Iterator[Any]:
    for d in fresh_deps():
        yield d.table


def test_slots_reserved_at_once_by_many_containers_are_all_distinct_and_spaced(table: Any) -> None:
    store = SharedRateStore(table)
    now = 1_700_000_000.0
    got: list[float] = []
    guard = threading.Lock()
    start = threading.Barrier(8)

    def container() -> None:
        start.wait(30)
        for _ in range(3):
            granted, wait = store.reserve("google_tag_manager", INTERVAL, now, latest=3600)
            assert granted
            with guard:
                got.append(wait)

    # WHEN 8 threads reserve 3 slots each at the same instant, racing on one item
    threads = [threading.Thread(target=container) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # THEN the 24 slots are 0, 4, 8, ... s away: none shared, none skipped
    assert sorted(got) == [i * INTERVAL for i in range(24)]
    # AND a caller that cannot wait that long reserves nothing, and is told how long it is
    granted, wait = store.reserve("google_tag_manager", INTERVAL, now, latest=10)
    assert (granted, wait) == (False, 24 * INTERVAL)
    assert store.reserve("google_tag_manager", INTERVAL, now + 24 * INTERVAL, latest=0) == (True, 0.0)
    # AND another key has its own slots
    assert store.reserve("other", INTERVAL, now, latest=0) == (True, 0.0)


def _steps(fake: FakeGoogle, clock: EventClock, tenants: int, rates: SharedRateStore | None,
           monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """One install step per tenant, all at once, each in its own thread (its own Lambda);
    returns each step's result or the error it raised."""
    on_http_layer(monkeypatch, clock)
    results: list[Any] = [None] * tenants

    def step(i: int) -> None:
        try:
            account, container = str(7000 + i), str(9000 + i)
            creds = GoogleOAuth.model_validate(fake.grant())
            cfg = GtmInstallConfig.model_validate({"account_id": account, "container_id": container,
                                                   "workspace_id": "3"}).model_dump(mode="json")
            ctx = StepContext(account_id=f"acct_{i}", job_id=f"job_{i}", run_id=f"run_{i}", step=0,
                              method="oauth", credentials=creds, config=cfg, cursor=None, state={},
                              max_records=1000, deadline=clock.now() + 900,
                              counter=CallCounter(authorization_id=f"auth_{i}", rates=rates))
            results[i] = Registry().task("google_tag_manager", "gtm_install_tag").run(ctx)
        except ProviderError as exc:
            results[i] = exc
        finally:
            clock.leave()

    threads = [threading.Thread(target=step, args=(i,)) for i in range(tenants)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return results


@pytest.fixture()
def google(fake_google: FakeGoogle, monkeypatch: pytest.MonkeyPatch) -> FakeGoogle:
    from chalicelib import config

    monkeypatch.setattr("chalicelib.providers.gtm.PROJECT_RATE", 0.25)  # Google's, not the fixture's
    # A request may wait for its slot longer than the default 25 s here: 10 tenants queue.
    monkeypatch.setenv("SWITCHYARD_PROVIDER_CALL_SECONDS", "300")
    config.reset()
    config.settings()
    for i in range(10):
        fake_google.add_account(str(7000 + i), f"Tenant {i}")
        fake_google.add_container(str(7000 + i), str(9000 + i), f"t{i}.example", workspace_id="3")
    return fake_google


def test_concurrent_steps_of_ten_tenants_stay_under_the_project_quota(google: FakeGoogle, table: Any,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN Google's project quota (25 requests in any 100 s) on the simulated clock
    clock = EventClock(participants=10)
    google.limit_project(25, 100.0, clock=clock.now)
    # WHEN ten tenants' install steps run at once, in ten "Lambdas" sharing the rate in DynamoDB
    results = _steps(google, clock, 10, SharedRateStore(table), monkeypatch)
    # THEN every step finished, and Google refused none of the 30 requests for quota
    assert all(not isinstance(r, BaseException) and r is not None for r in results), results
    assert google.quota_refused == 0
    assert len(google.calls) == 30 and google.refused == []
    # AND the whole took 29 intervals of simulated time: the quota, used in full
    assert clock.now() == pytest.approx(1_000_000.0 + 29 * INTERVAL, abs=1.0)


def test_without_the_shared_rate_concurrent_steps_trip_the_quota_and_are_told_to_wait(
        google: FakeGoogle, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the same quota, and each "Lambda" limited only by its own per-authorization rate
    clock = EventClock(participants=10)
    google.limit_project(25, 100.0, clock=clock.now)
    # WHEN the ten steps run at once
    results = _steps(google, clock, 10, None, monkeypatch)
    # THEN Google refused some requests for quota (the positive control of the test above)
    assert google.quota_refused > 0
    # AND each of those was handled as "wait", never as refused credentials: the step either
    # finished after backing off or ended transient (the engine retries it later)
    for r in results:
        assert r is not None
        if isinstance(r, ProviderError):
            assert r.transient and not r.auth, r.reason
