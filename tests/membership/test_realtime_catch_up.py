"""The catch-up sweep: a real-time job whose nudge was refused where nothing sends it again
(create, resume) gets its changes at the sweep's next tick; a job that is caught up, being
delivered, or paused is not nudged; a nudge the job did not need sends nothing twice.

The sweep is the `realtime_catch_up` schedule rule, fired by the local event loop
(devserver/events.py) whose clock the test moves forward one minute at a time; the stream
and the real-time queue are driven by the test. No sleeps.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from tests.membership.conftest import upsert
from tests.membership.test_export_changes import Reads
from tests.membership.test_realtime_exports import World, world  # noqa: F401  (fixture)
from tests.membership.test_realtime_nudge_retry import refuse_sends
from tests.membership.test_stream_membership import audience
from tests.providers.test_webhook import private_urls  # noqa: F401  (autouse: receivers on 127.0.0.1)
from tests.test_event_loop import Clock

RULE = "realtime_catch_up"


@dataclass
class Ticker:
    """The local event loop's clock, moved by the test; each tick's catch-up report and the
    nudges it sent."""

    loop: Any
    clock: Clock
    reports: list[Any] = field(default_factory=list)
    nudges: list[list[str]] = field(default_factory=list)  # job ids, per tick

    def tick(self) -> list[str]:
        """One minute on: the loop fires the rule (in a thread of its own, as Lambda runs
        it); returns the jobs it nudged once that handler has returned."""
        before = len(self.reports)
        self.nudges.append([])
        self.clock.advance(minutes=1)
        self.loop.tick()
        for t in threading.enumerate():
            if t.name == f"events-rule-{RULE}":
                t.join(timeout=120)
        assert len(self.reports) == before + 1, "the catch-up rule did not run"  # the positive control
        return self.nudges[-1]


@pytest.fixture()
def ticker(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ticker]:  # noqa: F811
    from app import app
    from chalicelib.workers import realtime as worker
    from devserver.events import EventLoop

    # An empty Scheduler group: this loop fires schedule rules only, never a job's schedule.
    group = f"rt-catch-up-{uuid.uuid4().hex[:8]}"
    boto3.client("scheduler", region_name="us-east-1").create_schedule_group(Name=group)
    # 10:00:30 UTC: a minute on crosses no other rule's time (daily crons, hourly at :05).
    clock = Clock(datetime(2026, 12, 5, 10, 0, 30, tzinfo=UTC))
    loop = EventLoop(app, threading.Event(), now=clock, schedule_group=group)
    loop.arm_rules()
    t = Ticker(loop, clock)
    real_catch_up, real_send = worker.catch_up, world.d.realtime_queue.send_batch

    def reporting(d: Any, **kw: Any) -> Any:
        report = real_catch_up(d, **kw)
        t.reports.append(report)
        return report

    def counting(messages: list[dict[str, Any]]) -> None:
        if t.nudges:
            t.nudges[-1].extend(m["job_id"] for m in messages)
        real_send(messages)

    monkeypatch.setattr(worker, "catch_up", reporting)
    monkeypatch.setattr(world.d.realtime_queue, "send_batch", counting)
    yield t
    boto3.client("scheduler", region_name="us-east-1").delete_schedule_group(Name=group)


def cursor(w: World, aud: Any, job: dict[str, Any]) -> int:
    sub = w.d.realtime.get(w.account_id, aud.id, job["id"])
    assert sub is not None
    return int(sub.cursor)


def test_a_job_whose_create_nudge_was_refused_gets_its_changes_at_the_next_tick(
        world: World, ticker: Ticker, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    w, d = world, world.d
    aud = audience(d, w.account_id)
    alice = upsert(d, w.account_id, "alice@example.com", plan="pro")
    w.stack.deliver()  # alice's enter is in the log; no job follows the audience yet
    # GIVEN a job that is caught up (its create nudge delivered alice)...
    caught_up = w.job(aud.id)
    w.pump()
    assert w.sent() == [("audience.entered", alice)] and cursor(w, aud, caught_up) == 1
    # ...and a job whose create nudge the queue refused (logged, not sent again)
    refuse_sends(monkeypatch, d, times=1)
    left = w.job(aud.id)
    assert w.pump() == {}
    assert cursor(w, aud, left) == 0 and w.sent() == [("audience.entered", alice)]
    assert w.api.get(f"/jobs/{left['id']}").json["data"]["lag_seconds"] >= 0
    # WHEN the catch-up rule fires once
    nudged = ticker.tick()
    # THEN it nudged the job left behind, and not the one that is caught up
    assert nudged == [left["id"]]
    report = ticker.reports[-1]
    assert (report.followed, report.behind, report.nudged) == (2, 1, 1)
    # AND the nudge delivers alice's enter to it, once
    assert w.pump() == {left["id"]: 1}
    assert w.sent() == [("audience.entered", alice)] * 2 and cursor(w, aud, left) == 1
    assert w.api.get(f"/jobs/{left['id']}").json["data"]["lag_seconds"] == 0
    # AND the next tick, with both caught up, sends nothing, having read the 16 shards of the
    # sweep index (a Query each, no Scan) and, per shard that holds a job, its subscriptions
    # and their heads by key
    from chalicelib.store import aws

    reads = Reads()
    events = aws.client("dynamodb").meta.events
    events.register("before-parameter-build.dynamodb", reads.hook)
    try:
        assert ticker.tick() == []
    finally:
        events.unregister("before-parameter-build.dynamodb", reads.hook)
    assert ticker.reports[-1].followed == 2 and ticker.reports[-1].behind == 0
    table = d.table.name
    assert reads.of("Query", table) == 16 and 2 <= reads.of("BatchGetItem", table) <= 4
    assert sum(reads.ops.values()) == reads.of("Query", table) + reads.of("BatchGetItem", table)


def test_a_nudge_for_a_job_already_nudged_or_being_delivered_does_no_harm(
        world: World, ticker: Ticker, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    import time

    w, d = world, world.d
    aud = audience(d, w.account_id)
    alice = upsert(d, w.account_id, "alice@example.com", plan="pro")
    w.stack.deliver()
    refuse_sends(monkeypatch, d, times=1)
    job = w.job(aud.id)  # its create nudge refused: left behind
    sub = d.realtime.get(w.account_id, aud.id, job["id"])
    # GIVEN another delivery holds the job (a lease far from running out)
    assert d.realtime.claim(sub, "another-delivery", time.time(), 3600)
    # WHEN the rule fires THEN the job is left to its holder: not nudged
    assert ticker.tick() == []
    assert (ticker.reports[-1].behind, ticker.reports[-1].held) == (1, 1)
    # WHEN the holder lets go and the rule fires twice before any nudge is delivered
    assert d.realtime.release(sub, "another-delivery")
    assert ticker.tick() == [job["id"]]
    assert ticker.tick() == [job["id"]]
    # THEN both nudges are delivered and alice's enter is sent once: the second finds nothing
    assert w.pump() == {job["id"]: 2}
    assert w.sent() == [("audience.entered", alice)] and cursor(w, aud, job) == 1
    assert ticker.tick() == []


def test_a_paused_job_behind_its_log_is_not_nudged_until_resumed(
        world: World, ticker: Ticker) -> None:  # noqa: F811
    w, d = world, world.d
    aud = audience(d, w.account_id)
    job = w.job(aud.id)
    w.pump()
    assert w.api.post(f"/jobs/{job['id']}/pause").status_code == 200
    carol = upsert(d, w.account_id, "carol@example.com", plan="pro")
    w.stack.deliver()
    w.pump()  # the stream's nudge found the job paused
    # WHEN the rule fires THEN the paused job keeps its backlog, un-nudged
    assert ticker.tick() == []
    assert (ticker.reports[-1].behind, ticker.reports[-1].inactive) == (1, 1)
    assert w.sent() == []
    # WHEN it is resumed THEN its backlog goes out (the resume's own nudge)
    assert w.api.post(f"/jobs/{job['id']}/resume").status_code == 200
    w.pump()
    assert w.sent() == [("audience.entered", carol)]
    assert ticker.tick() == []
