"""Collection through the local stack's own machinery: the app served over HTTP, a Segment
SDK sending to it, and devserver's event loop delivering the FIFO collect queue to the
`collect_handoffs` handler as Lambda would. Events reach profiles with nothing but the
loop in between; the time from the SDK's flush returning to the profile showing the event
is measured (a figure, not a pass mark: moto's speed is not AWS's)."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests import requires
from tests.api import test_collect_sdk
from tests.api.test_collect_sdk import HttpApi
from tests.collect.helpers import receive, write_key_job
from tests.proof.record import record, size
from tests.test_event_loop import wait_until

EVENTS = size(10, 200)
base = test_collect_sdk.base  # the app served over HTTP (a fixture)


@pytest.fixture()
def loop(deps: Any) -> Iterator[None]:
    from app import app
    from devserver.events import EventLoop

    receive()
    stop = threading.Event()
    running = EventLoop(app, stop, retry_delay_seconds=0, tick_seconds=0.2, schedule_group="collect-local-none")
    threads = running.start()
    yield
    stop.set()
    for t in threads:
        t.join(timeout=10)


def test_events_reach_profiles_through_the_queue_and_the_event_loop(
        base: str, loop: None, deps: Any, new_tenant: Any) -> None:
    analytics = requires.module("segment.analytics.client", "pip install -r requirements-dev.txt")
    tenant = new_tenant("Live")
    key, _ = write_key_job(HttpApi(base, tenant.admin_token))
    errors: list[Any] = []
    sdk = analytics.Client(write_key=key, host=base + "/api", gzip=True, on_error=lambda e, b: errors.append(e))
    latencies = []
    for i in range(EVENTS):
        user = f"live-{i}"
        sdk.track(user, "Signed Up")
        sdk.flush()
        flushed = time.monotonic()

        def seen(user: str = user) -> Any:
            prof = deps.profiles.find(tenant.account_id, "user_id", user)
            return prof is not None and prof.fields.get("event_signed_up_count") == 1

        wait_until(seen, timeout=60.0)  # a bound on something that must happen, not a pass mark
        latencies.append(time.monotonic() - flushed)
    sdk.shutdown()
    assert errors == []
    latencies.sort()
    p50 = statistics.median(latencies)
    p95 = latencies[max(0, round(0.95 * len(latencies)) - 1)]
    print(f"flush -> profile over {len(latencies)} events: p50 {p50:.3f} s, p95 {p95:.3f} s")
    record("collect_latency", "Collection: SDK flush to profile, local stack", {
        "events": len(latencies), "p50 s": round(p50, 3), "p95 s": round(p95, 3), "max s": round(latencies[-1], 3),
    }, order=62)
