"""End-to-end latency of a real-time export through the local stack: from a Segment SDK's
flush returning to a webhook receiving the profile's `audience.entered` event.

The path, as `make run` runs it (`python -m devserver` in a child process, moto in it):

    SDK identify + flush ─▶ POST /api/v1/batch ─▶ collect queue ─▶ collect_handoffs
    (profile written) ─▶ profiles table stream ─▶ stream poller ─▶ profile_changes (enter
    recorded, job nudged) ─▶ realtime queue ─▶ deliver_realtime ─▶ webhook (this process)

Events are sent at a steady pace (one identify + flush every --gap seconds, each a new
profile on the pro plan), not one at a time, so the figure includes queueing behind the
previous ones (`--gap 0.25` for 4 a second; the pace actually reached is printed, since a
flush waits for its POST). Each latency is the receiver's arrival time minus the moment that
event's flush returned (one monotonic clock, both in this process). Goal: p95 <= 2 s. It
also prints the time per hop (flush -> profile written -> enter recorded -> webhook) from
the devserver's log.

What AWS adds that the local stack does not model: docs/engine.md, "Real-time latency".

    .venv/bin/python bench/realtime_latency.py [--events 200] [--gap 1.0]   (BENCH_QUICK=1: 40, 0.5)

Prints `RESULT PASS|FAIL ...`; exit status 1 on FAIL.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.awsnet import quick  # noqa: E402
from tests.http_receiver import Answer, Received, Receiver  # noqa: E402
from tests.test_local_stack import Stack  # noqa: E402

GOAL_P95 = 2.0
WARM_UP = 3  # events sent and awaited one by one before measuring
PRO = {"all": [{"field": "plan", "op": "equals", "value": "pro"}]}


class QuietStack(Stack):
    """`python -m devserver` without its periodic state snapshot: it pauses moto while it
    pickles every backend (seconds once streams and queues fill up), a local artifact."""

    def env(self) -> dict[str, str]:
        return {**super().env(), "SWITCHYARD_SAVE_EVERY": "3600"}


class Arrivals:
    """The webhook: when each profile's enter arrived (by its email)."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.changed = threading.Condition()

    def __call__(self, req: Received) -> Answer:
        now = time.monotonic()
        events = req.json().get("events", [])
        with self.changed:
            for e in events:
                if e.get("type") == "audience.entered":
                    self.at.setdefault(str(e["fields"].get("email")), now)
            self.changed.notify_all()
        return Answer(200, {"accepted": len(events)})

    def wait_for(self, n: int, seconds: float) -> bool:
        end = time.monotonic() + seconds
        with self.changed:
            while len(self.at) < n:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(left)
        return True


def ok(status_body: tuple[int, Any], what: str) -> dict[str, Any]:
    status, body = status_body
    if status not in (200, 201):
        raise SystemExit(f"{what}: {status} {body}")
    return dict(body["data"])


def log_times(log: str, since: float) -> dict[str, list[float]]:
    """Epoch times, from the devserver's JSON log, of each hand-off applied and of each
    enter recorded by the stream handler (a batch's count of them at its end), after `since`."""
    out: dict[str, list[float]] = {"applied": [], "recorded": []}
    for line in log.splitlines():
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        msg = str(rec.get("message", ""))
        if msg.startswith("hand-off applied") or msg == "profile changes applied":
            at = datetime.fromisoformat(str(rec["timestamp"])).timestamp()
            if at < since:
                continue
            if msg.startswith("hand-off applied"):
                out["applied"].append(at)
            else:
                out["recorded"] += [at] * int(rec.get("recorded") or 0)
    return out


def stages(flushed_at: list[float], arrived_at: list[float | None], times: dict[str, list[float]]) -> None:
    """Where the time goes, per hop (median and p95 over the events): the k-th event sent is
    the k-th hand-off applied and the k-th enter recorded (one FIFO group, one stream shard,
    every event a new member)."""
    applied, recorded = times["applied"], times["recorded"]
    n = min(len(flushed_at), len(applied), len(recorded))
    hops: dict[str, list[float]] = {"flush -> profile written (collect queue, hand-off)": [],
                                    "profile written -> enter recorded (stream, membership)": [],
                                    "enter recorded -> webhook (nudge, delivery)": []}
    for k in range(n):
        arrived = arrived_at[k]
        hops["flush -> profile written (collect queue, hand-off)"].append(applied[k] - flushed_at[k])
        hops["profile written -> enter recorded (stream, membership)"].append(recorded[k] - applied[k])
        if arrived is not None:
            hops["enter recorded -> webhook (nudge, delivery)"].append(arrived - recorded[k])
    print(f"per hop over {n} events (log times, ms precision):")
    for name, values in hops.items():
        if values:
            print(f"  {name}: p50 {statistics.median(values):.3f} s, p95 {percentile(values, 95):.3f} s")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser()
    # Quick mode (`make test`): 40 events, 2 a second; the same p95 goal.
    parser.add_argument("--events", type=int, default=40 if quick() else 200)
    parser.add_argument("--gap", type=float, default=0.5 if quick() else 1.0, help="seconds between two events sent")
    args = parser.parse_args()
    # `timeout` (make bench) sends SIGTERM: unwind, so the child stack is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    from segment.analytics.client import Client

    with tempfile.TemporaryDirectory() as tmp:
        stack = QuietStack(Path(tmp) / "state", Path(tmp) / "devserver.log")
        arrivals = Arrivals()
        try:
            print(f"local stack up in {stack.start():.1f} s")
            with Receiver(handler=arrivals) as hook:
                aud = ok(stack.call("POST", "/api/v1/audiences", {"name": "Pro", "filter": PRO}), "audience")
                auth = ok(stack.call("POST", "/api/v1/authorizations", {
                    "provider": "webhook", "method": "none", "label": "bench hook",
                    "credentials": {"url": hook.url("/in")}}), "webhook authorization")
                ok(stack.call("POST", "/api/v1/jobs", {
                    "provider": "webhook", "job_type": "export", "workflow": "webhook_audience_export",
                    "authorization_id": auth["id"], "label": "pro, live", "schedule": {"type": "realtime"},
                    "config": {"audience_id": aud["id"], "fields": ["email"], "batch_size": 50}}), "real-time job")
                key_auth = ok(stack.call("POST", "/api/v1/authorizations", {
                    "provider": "http_api", "method": "write_key", "label": "site", "credentials": {}}), "write key")
                ok(stack.call("POST", "/api/v1/jobs", {
                    "provider": "http_api", "job_type": "import", "workflow": "http_collect",
                    "authorization_id": key_auth["id"], "label": "events", "config": {}}), "collection job")
                errors: list[Any] = []
                sdk = Client(write_key=key_auth["write_key"], host=stack.base + "/api", max_retries=3,
                             on_error=lambda e, batch: errors.append(e))
                # Warm-up, not measured: the audience's backfill pages and first imports run now.
                for i in range(WARM_UP):
                    sdk.identify(f"warm-{i}", {"email": f"warm{i}@example.com", "plan": "pro"})
                    sdk.flush()
                    arrivals.wait_for(i + 1, 60)
                arrivals.at.clear()
                started = time.time()
                flushed: dict[str, float] = {}
                wall: list[float] = []  # epoch time of each flush, for the log's per-hop times
                next_at = time.monotonic()
                for i in range(args.events):
                    email = f"bench{i}@example.com"
                    sdk.identify(f"bench-user-{i}", {"email": email, "plan": "pro"})
                    sdk.flush()
                    flushed[email] = time.monotonic()
                    wall.append(time.time())
                    next_at += args.gap
                    time.sleep(max(0.0, next_at - time.monotonic()))  # the pace events are sent at
                arrivals.wait_for(args.events, 60)
                if errors:
                    print(f"the SDK reported {len(errors)} errors, first: {errors[0]}")
        finally:
            log = stack.tail(50_000_000)
            if os.environ.get("BENCH_LOG"):
                Path(os.environ["BENCH_LOG"]).write_text(log)
            stack.kill()
        print(f"deliveries {log.count('real-time delivery: ')}, busy nudges {log.count('its holder sends')}, "
              f"stream batches {log.count('profile changes applied')}")
        got = {e: arrivals.at[e] - t for e, t in flushed.items() if e in arrivals.at}
        missing = len(flushed) - len(got)
        if not got:
            print("no enter event reached the webhook\n" + stack.tail())
            print("RESULT FAIL nothing delivered")
            return 1
        lat = list(got.values())
        if len(wall) > 1:  # a flush slower than the gap lowers the pace: say what it was
            print(f"sent {len(wall)} events at {(len(wall) - 1) / (wall[-1] - wall[0]):.2f} a second "
                  f"(asked {1 / args.gap:.2f})")
        # Arrival as epoch time: the flush's epoch time plus the measured latency.
        stages(wall, [wall[k] + got[e] if e in got else None for k, e in enumerate(flushed)],
               log_times(log, started))
        if os.environ.get("BENCH_LOG"):
            print("latencies in send order:", " ".join(f"{got[e]:.2f}" for e in flushed if e in got))
        p50, p95 = statistics.median(lat), percentile(lat, 95)
        print(f"{len(got)} of {len(flushed)} enter events delivered; latency p50 {p50:.3f} s, "
              f"p95 {p95:.3f} s, max {max(lat):.3f} s (goal p95 <= {GOAL_P95} s)")
        passed = missing == 0 and p95 <= GOAL_P95
        print(f"RESULT {'PASS' if passed else 'FAIL'} p50={p50:.3f}s p95={p95:.3f}s missing={missing}")
        return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
