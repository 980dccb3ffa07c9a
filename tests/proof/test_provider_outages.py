"""Proof suite: provider outages (SPEC rule 4, docs/engine.md "Errors",
docs/providers/webhook.md "Answers", docs/alerts.md).

A webhook receiver (tests/webhook_inbox.py: verifies signatures, keeps each batch once)
answers 500, 502, 503 with Retry-After, 504, hangs up, or answers too late — a different
failure on each attempt — for 30 minutes of simulated time, then recovers. Time is a
simulated clock: the engine's `now` (EngineOptions) and SQS's DelaySeconds (`SimQueue`
holds delayed messages until the simulated clock reaches them), so the half hour takes
seconds. Every SQS message, DynamoDB write and HTTP request is real.

1. Default failure window (10 h), the outage starting mid-run: the job sleeps with
   exponential backoff (each wait within the equal-jitter bounds, never shorter than
   Retry-After), shows its fault count, never fails, resumes the same run from its
   checkpoint when the receiver is back, and the receiver holds every member exactly once.
   Alerts: one `Job Recovered`, no `Job Failed`.
2. A 15-minute failure window under the same outage: the first attempt past the window
   fails the job (`run.failure_window_passed`), one `Job Failed` alert, no more retries
   (the receiver hears nothing more while the clock runs on); a resume after the outage
   delivers every member exactly once and alerts `Job Recovered` once.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from chalicelib.domain.failures import BASE_SECONDS, CAP_SECONDS
from chalicelib.domain.profiles import ProfileRecord
from chalicelib.providers import http as H
from chalicelib.store.queues import RunQueue
from tests.http_receiver import Answer, Received, Receiver
from tests.proof.leaks import BusCapture
from tests.proof.record import record, size
from tests.timing import read_timeout
from tests.webhook_inbox import Inbox

SIGNING = "whsec-outage-7c1e9a3b5d2f4068"
OUTAGE = timedelta(minutes=30)
FAST = H.RetryPolicy(max_attempts=4, backoff_factor=0.01, backoff_jitter=0.01)
_tags = itertools.count()


class SimClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


class SimQueue(RunQueue):
    """The runs queue, with SQS's DelaySeconds on the simulated clock: a delayed message is
    held until `release` finds it due, then sent (at once) to the real queue."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.held: list[tuple[datetime, int, dict[str, Any]]] = []
        self._seq = itertools.count()

    def send(self, message: dict[str, Any], *, delay_seconds: int = 0) -> None:
        if delay_seconds <= 0:
            super().send(message)
            return
        self.held.append((self.clock.now + timedelta(seconds=delay_seconds), next(self._seq), message))
        self.held.sort(key=lambda h: (h[0], h[1]))

    def next_due(self) -> datetime | None:
        return self.held[0][0] if self.held else None

    def release(self) -> int:
        due = [h for h in self.held if h[0] <= self.clock.now]
        self.held = [h for h in self.held if h[0] > self.clock.now]
        for _, _, msg in due:
            super().send(msg)
        return len(due)


@dataclass
class Outage:
    """The receiver's answers: the inbox's, except inside [start, start + OUTAGE) of the
    simulated clock, where each attempt of the engine gets the next kind of failure. The
    outage starts when the inbox holds `after_batches` batches (or when armed at 0)."""

    inbox: Inbox
    clock: SimClock
    after_batches: int
    start: datetime | None = None
    armed: bool = False
    kinds: tuple[str, ...] = ("500", "502", "503 Retry-After 240", "504", "hang-up", "too late")
    failed: list[tuple[datetime, str]] = field(default_factory=list)
    # "too late" answers come only after the client gave up: when the receiver stops
    late: threading.Event = field(default_factory=threading.Event)

    def end(self) -> datetime:
        assert self.start is not None, "the outage has not started"
        return self.start + OUTAGE

    def kind(self) -> str:
        attempts = sorted({at for at, _ in self.failed} | {self.clock.now})
        return self.kinds[attempts.index(self.clock.now) % len(self.kinds)]

    def __call__(self, req: Received) -> Answer:
        if self.armed and self.start is None and len(self.inbox.batches) >= self.after_batches:
            self.start = self.clock.now
        if self.start is not None and self.start <= self.clock.now < self.start + OUTAGE:
            kind = self.kind()
            self.failed.append((self.clock.now, kind))
            return {
                "500": Answer(500, {"message": "internal error"}),
                "502": Answer(502, "<html>bad gateway</html>", {"Content-Type": "text/html"}),
                "503 Retry-After 240": Answer(503, {"message": "maintenance"}, {"Retry-After": "240"}),
                "504": Answer(504, {"message": "upstream timed out"}),
                "hang-up": Answer(hang_up=True),
                "too late": Answer(200, {"ok": True}, hold=self.late),
            }[kind]
        return self.inbox(req)


class SimDrain:
    """Delivers this account's runs-queue messages to the engine (as Lambda would), on the
    simulated clock; other tests' leftovers are dropped."""

    def __init__(self, deps: Any, clock: SimClock, account_id: str, max_records: int) -> None:
        from chalicelib.runs.engine import Engine, EngineOptions

        self.engine = Engine(deps, EngineOptions(max_records=max_records, now=clock))
        self.account_id = account_id
        self.sqs = boto3.client("sqs", region_name="us-east-1")
        self.url = self.sqs.get_queue_url(QueueName="switchyard-test-runs")["QueueUrl"]
        self.errors: list[BaseException] = []

    def run(self, limit: int = 500) -> int:
        from chalicelib.runs.engine import Delivery

        handled = 0
        while handled < limit:
            msgs = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=1,
                                            VisibilityTimeout=30).get("Messages", [])
            if not msgs:
                return handled
            m = msgs[0]
            body = json.loads(m["Body"])
            if body.get("account_id") == self.account_id:
                handled += 1
                try:
                    self.engine.handle(Delivery(body=body, message_id=m["MessageId"]))
                except Exception as exc:  # a crash: SQS would redeliver
                    self.errors.append(exc)
                    self.sqs.change_message_visibility(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"],
                                                       VisibilityTimeout=0)
                    continue
            self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])
        return handled


@dataclass
class Timeline:
    """What the job showed after each attempt."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def table(self) -> str:
        lines = ["| attempt at (simulated) | receiver answered | status | fault count | next run in | "
                 "backoff bounds (s) |", "|---|---|---|---|---|---|"]
        for r in self.rows:
            lines.append(f"| +{r['at']} | {r['kind']} | {r['status']} | {r['fault_count']} | "
                         f"{r['wait']} | {r['bounds']} |")
        return "\n".join(lines)


def _parse(ts: str) -> datetime:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _mmss(delta: timedelta) -> str:
    s = int(delta.total_seconds())
    return f"{s // 60}:{s % 60:02d}"


@pytest.fixture()
def tenant(new_tenant: Any) -> Any:
    return new_tenant("Outages")


@pytest.fixture()
def api(api_for: Any, tenant: Any) -> Any:
    return api_for(tenant.admin_token)


@pytest.fixture()
def stage(deps: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SimClock, SimQueue]]:
    """Receivers on 127.0.0.1 (http), the real webhook provider with quick HTTP retries (the
    engine's backoff is what this suite is about), a read timeout as short as this machine
    allows now (healthy answers must not reach it), the simulated clock."""
    from chalicelib import config
    from chalicelib.providers.registry import Registry
    from chalicelib.providers.webhook import WebhookProvider

    monkeypatch.setenv("SWITCHYARD_ALLOW_PRIVATE_URLS", "1")
    timeout = read_timeout()
    monkeypatch.setenv("SWITCHYARD_PROVIDER_TIMEOUT", str(timeout))
    config.reset()
    assert config.settings().provider_timeout_seconds == timeout and config.settings().stage == "test"
    H.reset()
    deps.registry = Registry(extra={"webhook": WebhookProvider(
        policy=FAST, check_policy=H.RetryPolicy(max_attempts=2, backoff_factor=0.01))})
    clock = SimClock()
    queue = SimQueue(clock)
    deps.runs_queue = queue
    yield clock, queue
    monkeypatch.undo()
    config.reset()
    config.settings()
    H.reset()


def _seed(deps: Any, account_id: str, n: int) -> set[str]:
    from chalicelib.domain.profiles import profile_id_for

    records = [ProfileRecord(identifiers={"email": f"o{i}@example.com"}, fields={"first_name": f"O{i}"},
                             ref="seed") for i in range(n)]
    for start in range(0, n, 1000):
        deps.profiles.upsert_batch(account_id, records[start:start + 1000], step_tag=f"outage-seed#{next(_tags)}")
    return {profile_id_for(account_id, "email", f"o{i}@example.com") for i in range(n)}


def _job(api: Any, receiver: Receiver, *, batch_size: int, window_hours: float | None,
         schedule: dict[str, Any] | None = None) -> dict[str, Any]:
    auth = api.post("/authorizations", {"provider": "webhook", "method": "hmac", "label": "Hook",
                                        "credentials": {"url": receiver.url("/hooks"), "signing_secret": SIGNING}})
    assert auth.status_code == 201, auth.body
    audience = api.post("/audiences", {"name": "Everyone", "filter": {
        "all": [{"field": "first_name", "op": "exists"}]}})
    assert audience.status_code == 201, audience.body
    body: dict[str, Any] = {
        "provider": "webhook", "job_type": "export", "workflow": "webhook_audience_export",
        "authorization_id": auth.json["data"]["id"], "label": "Everyone to the webhook",
        "config": {"audience_id": audience.json["data"]["id"], "fields": ["email", "first_name"],
                   "batch_size": batch_size}}
    if window_hours is not None:
        body["failure_window_hours"] = window_hours
    if schedule is not None:
        body["schedule"] = schedule
    r = api.post("/jobs", body)
    assert r.status_code == 201, r.body
    return dict(r.json["data"])


def _simulate(deps: Any, clock: SimClock, queue: SimQueue, drain: SimDrain, outage: Outage, job_id: str,
              account_id: str, horizon: timedelta) -> Timeline:
    """Drain; after each failed attempt note what the job shows; move the clock to the next
    held message; until the job is done (or failed) and nothing is held, or the horizon."""
    started = clock.now
    timeline = Timeline()
    seen_failures = len(outage.failed)  # only the failures of this stretch
    while clock.now - started < horizon:
        drain.run()
        job = deps.jobs.get(account_id, job_id, consistent=True)
        if len(outage.failed) > seen_failures:
            seen_failures = len(outage.failed)
            at = outage.failed[-1][0]
            wait = (_parse(job.next_run_at) - clock.now) if job.next_run_at else None
            ceiling = min(CAP_SECONDS, BASE_SECONDS * 2 ** max(0, job.fault_count - 1))
            timeline.rows.append({
                "at": _mmss(at - started), "kind": outage.failed[-1][1], "status": job.status.value,
                "fault_count": job.fault_count, "wait": _mmss(wait) if wait is not None else "—",
                "wait_s": wait.total_seconds() if wait is not None else None,
                "bounds": f"{ceiling / 2:.0f}–{ceiling:.0f}" if wait is not None else "—",
                "ceiling": ceiling, "at_dt": at,
            })
        due = queue.next_due()
        if due is None:
            return timeline
        clock.now = max(clock.now, due)
        queue.release()
    return timeline


def _alerts(bus: BusCapture, job_id: str) -> list[str]:
    return [e["detail-type"] for e in map(json.loads, bus.take()) if e["detail"].get("job_id") == job_id]


def test_a_30_minute_outage_backs_off_then_recovers_with_every_member_once(api, deps, tenant, stage) -> None:
    clock, queue = stage
    members, batch, step = size(20, 1000), size(4, 50), size(10, 200)
    ids = _seed(deps, tenant.account_id, members)
    box = Inbox(secret=SIGNING)
    outage = Outage(box, clock, after_batches=2)
    with BusCapture() as bus, Receiver(handler=outage) as receiver:
        # GIVEN a one-time export whose receiver fails for 30 minutes after its 2nd batch
        job = _job(api, receiver, batch_size=batch, window_hours=None)
        outage.armed = True
        drain = SimDrain(deps, clock, tenant.account_id, max_records=step)
        # WHEN the runs are delivered and the simulated clock follows the held retries
        timeline = _simulate(deps, clock, queue, drain, outage, job["id"], tenant.account_id, timedelta(hours=12))
        final = api.get(f"/jobs/{job['id']}").json["data"]
        alerts = _alerts(bus, job["id"])
    assert outage.start is not None and drain.errors == []
    # THEN every attempt inside the outage failed and left the job sleeping, fault shown,
    # the next run a backoff away: within the equal-jitter bounds, never before Retry-After
    rows = timeline.rows
    assert len(rows) >= 4 and {r["kind"] for r in rows} >= {"500", "503 Retry-After 240", "hang-up"}
    for n, r in enumerate(rows, start=1):
        assert r["status"] == "sleeping" and r["fault_count"] == n, r
        low = 240 if r["kind"].startswith("503") else r["ceiling"] / 2
        assert low - 1 <= r["wait_s"] <= max(r["ceiling"], 240) + 1, r
    # AND each attempt came no earlier than the job said (waits grow: 1, 2, 4... minutes)
    attempts = [r["at_dt"] for r in rows]
    for prev, nxt, r in zip(attempts, attempts[1:], rows, strict=False):
        assert (nxt - prev).total_seconds() >= r["wait_s"] - 1
    assert attempts[-1] < outage.end() <= attempts[-1] + timedelta(seconds=rows[-1]["wait_s"] + 1)
    # AND the first attempt after the outage resumed the same run and finished it
    assert final["status"] == "completed" and final["fault_count"] == 0, final
    runs = api.get(f"/jobs/{job['id']}/runs").json["data"]
    assert len(runs) == 1 and runs[0]["status"] == "succeeded" and runs[0]["added"] == members, runs
    # AND the receiver holds every member exactly once
    got = Counter(e["profile_id"] for e in box.events)
    assert set(got) == ids and set(got.values()) == {1}, got.most_common(3)
    warnings = [ln for ln in api.get(f"/jobs/{job['id']}/logs?level=warning&limit=200").json["data"]
                if ln["code"] == "run.transient_error"]
    assert len(warnings) == len(rows)
    # AND the alerts: recovered once, never failed (the 10 h window was not passed)
    assert alerts == ["Job Recovered"], alerts

    recovered_after = attempts[-1] + timedelta(seconds=rows[-1]["wait_s"]) - outage.start
    record("provider_outages", "Provider outages: backoff and recovery", {
        "outage (simulated)": "30 min",
        "members": members,
        "failed attempts (backoff)": len(rows),
        "HTTP requests refused": len(outage.failed),
        "recovered after (simulated)": _mmss(recovered_after),
        "members received exactly once": f"{sum(1 for v in got.values() if v == 1)}/{members}",
        "batches received twice": len(box.repeats),
        "alerts (10 h window)": ", ".join(alerts),
    }, table=timeline.table(), order=70,
        summary=("A webhook receiver fails every attempt for 30 simulated minutes (500, 502, 503 with "
                 "Retry-After: 240, 504, hang-up, an answer later than the read timeout), starting after "
                 "the run's 2nd batch. The simulated clock drives the engine and SQS's DelaySeconds; "
                 "requests, messages and DynamoDB writes are real."))


def test_an_outage_longer_than_the_failure_window_fails_once_then_a_resume_recovers(
        api, deps, tenant, stage) -> None:
    clock, queue = stage
    members, batch, step = size(15, 500), size(5, 50), size(15, 200)
    ids = _seed(deps, tenant.account_id, members)
    box = Inbox(secret=SIGNING)
    outage = Outage(box, clock, after_batches=0)
    with BusCapture() as bus, Receiver(handler=outage) as receiver:
        # GIVEN a job that tolerates 15 minutes of errors, and a receiver down for 30
        job = _job(api, receiver, batch_size=batch, window_hours=0.25)
        outage.armed = True
        drain = SimDrain(deps, clock, tenant.account_id, max_records=step)
        # WHEN its run is delivered and the clock follows the retries
        timeline = _simulate(deps, clock, queue, drain, outage, job["id"], tenant.account_id, timedelta(hours=12))
        failed = api.get(f"/jobs/{job['id']}").json["data"]
        alerts_failed = _alerts(bus, job["id"])
        # THEN the first attempt past 15 minutes failed the job: no retry is held, and while
        # the clock runs past the outage the receiver hears nothing more
        assert failed["status"] == "failed" and failed["next_run_at"] is None, failed
        assert queue.held == []
        heard = len(receiver.requests)
        clock.now = outage.end() + timedelta(hours=1)
        drain.run()
        assert len(receiver.requests) == heard and box.events == []
        # WHEN a user resumes it after the outage
        r = api.post(f"/jobs/{job['id']}/resume")
        assert r.status_code == 200, r.body
        timeline_after = _simulate(deps, clock, queue, drain, outage, job["id"], tenant.account_id,
                                   timedelta(hours=1))
        final = api.get(f"/jobs/{job['id']}").json["data"]
        alerts_all = alerts_failed + _alerts(bus, job["id"])
    assert drain.errors == [] and timeline_after.rows == []
    rows = timeline.rows
    assert [r["status"] for r in rows] == ["sleeping"] * (len(rows) - 1) + ["failed"], rows
    gave_up = rows[-1]["at_dt"]
    assert gave_up - outage.start >= timedelta(minutes=15) > rows[-2]["at_dt"] - outage.start
    errors = api.get(f"/jobs/{job['id']}/logs?level=error").json["data"]
    assert errors[0]["code"] == "run.failure_window_passed" and "0.25 h" in errors[0]["message"], errors[0]
    # THEN the resumed job delivered every member exactly once, and the alerts were: failed
    # once (when it gave up), recovered once (when the resumed run succeeded)
    assert final["status"] == "completed" and final["last_run"]["status"] == "succeeded", final
    got = Counter(e["profile_id"] for e in box.events)
    assert set(got) == ids and set(got.values()) == {1}, got.most_common(3)
    assert alerts_all == ["Job Failed", "Job Recovered"], alerts_all

    record("provider_outages_window", "Provider outages: past the failure window", {
        "outage (simulated)": "30 min",
        "failure window": "15 min",
        "members": members,
        "failed attempts before giving up": len(rows),
        "gave up after (simulated)": _mmss(gave_up - outage.start),
        "requests after giving up": 0,
        "members received exactly once (after the resume)": f"{sum(1 for v in got.values() if v == 1)}/{members}",
        "alerts": ", ".join(alerts_all),
    }, table=timeline.table(), order=71,
        summary=("The same outage (from the run's first batch) against a job that tolerates 15 minutes of "
                 "errors: the first attempt past the window fails the job, nothing is retried while the "
                 "clock runs past the outage, and a user's resume afterwards delivers every member."))


def test_a_scheduled_job_keeps_one_retry_chain_through_an_outage(api, deps, tenant, stage) -> None:
    """Its schedule (every 10 minutes) keeps firing during the outage. A fire while the job
    backs off must not start an attempt of its own (that would be a second retry chain:
    attempts no longer back off, and stale retries start extra runs after the recovery)."""
    clock, queue = stage
    members = size(10, 200)
    ids = _seed(deps, tenant.account_id, members)
    box = Inbox(secret=SIGNING)
    outage = Outage(box, clock, after_batches=0)
    every = timedelta(minutes=10)
    with Receiver(handler=outage) as receiver:
        job = _job(api, receiver, batch_size=5, window_hours=None, schedule={"type": "interval", "every_minutes": 10})
        outage.armed = True
        drain = SimDrain(deps, clock, tenant.account_id, max_records=20)
        started = clock.now
        fires = started + every
        # WHEN the clock runs an hour, EventBridge Scheduler firing every 10 minutes
        while clock.now - started < timedelta(hours=1):
            drain.run()
            due = queue.next_due()
            if due is not None and due <= fires:
                clock.now = max(clock.now, due)
                queue.release()
            else:
                clock.now = fires
                fires += every
                deps.runs_queue.send({"account_id": tenant.account_id, "job_id": job["id"], "trigger": "schedule"})
        drain.run()
    assert drain.errors == []
    # THEN the attempts inside the outage are the backoff's alone: 0, ~1, ~3, ~7, ~15 minutes...
    attempts = sorted({at for at, _ in outage.failed})
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(attempts)]
    assert all(g2 >= g1 * 0.75 for g1, g2 in itertools.pairwise(gaps)), [_mmss(b - started) for b in attempts]
    assert len(attempts) <= 6, [_mmss(b - started) for b in attempts]
    # AND after the recovery one run per schedule fire, nothing else: no stale retry starts a run
    runs = api.get(f"/jobs/{job['id']}/runs?limit=100").json["data"]
    triggers = Counter(r["trigger"] for r in runs)
    assert triggers.get("retry", 0) == 0, triggers
    assert all(r["status"] == "succeeded" for r in runs), [(r["trigger"], r["status"]) for r in runs]
    got = Counter(e["profile_id"] for e in box.events)
    assert set(got) == ids and set(got.values()) == {1}, got.most_common(3)
    skipped = [ln for ln in api.get(f"/jobs/{job['id']}/logs?limit=200").json["data"]
               if ln["code"] == "run.skipped_backing_off"]
    assert skipped, "the schedule fired during the backoff"
    record("provider_outages_schedule", "Provider outages: a job on a 10-minute schedule", {
        "outage (simulated)": "30 min",
        "schedule": "every 10 min",
        "failed attempts": len(attempts),
        "attempts at (simulated)": ", ".join(_mmss(a - started) for a in attempts),
        "schedule fires skipped while backing off": len(skipped),
        "runs": len(runs),
        "runs started by a stale retry": triggers.get("retry", 0),
        "members received exactly once": f"{sum(1 for v in got.values() if v == 1)}/{members}",
    }, order=72, summary=(
        "EventBridge Scheduler keeps firing during the outage; a fire while the job backs off is skipped "
        "(logged as run.skipped_backing_off), so the attempts stay the backoff's, and a retry made stale by "
        "another attempt is dropped. Before this suite found it, each fire started an attempt and a second "
        "retry chain."))
