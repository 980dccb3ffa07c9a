"""Real-time exports: audience changes recorded by the profiles stream handler reach a
webhook through the real-time queue and its worker, in order, once per change id; a paused
job keeps its backlog; lag_seconds says how far behind a job is; other accounts see 404.

States are held by not pumping (the stream poller and the real-time queue are driven by the
test, one step at a time), never by sleeping.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import Api
from tests.http_receiver import Receiver
from tests.membership.conftest import Stack, upsert
from tests.membership.test_stream_membership import audience
from tests.providers.test_webhook import private_urls  # noqa: F401  (autouse: receivers on 127.0.0.1)
from tests.webhook_inbox import Inbox

SIGNING = "whsec-CANARY-rt-6b1d0e7a9c"
REALTIME = {"type": "realtime"}


@dataclass
class World:
    stack: Stack
    api: Api
    account_id: str
    receiver: Receiver
    inbox: Inbox

    @property
    def d(self) -> Any:
        return self.stack.deps

    def pump(self) -> dict[str, int]:
        """Deliver the nudges waiting on the real-time queue to its handler, as Lambda's
        event source mapping does (one message per invocation); outcomes counted by job."""
        from app import app
        from chalicelib.store import aws
        from chalicelib.store.queues import queue_url
        from devserver.events import sqs_record

        sqs = aws.client("sqs")
        url = queue_url("switchyard-realtime")
        handled: dict[str, int] = {}
        while True:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30,
                                      AttributeNames=["All"]).get("Messages", [])
            if not got:
                return handled
            for m in got:
                body = json.loads(m["Body"])
                if body.get("account_id") == self.account_id:
                    event = {"Records": [sqs_record(m, "arn:aws:sqs:us-east-1:123456789012:switchyard-realtime",
                                                    "us-east-1")]}
                    app.handler_map["deliver_realtime"](event, None)
                    handled[body["job_id"]] = handled.get(body["job_id"], 0) + 1
                # Delivered, or a nudge of an earlier test's account: gone either way.
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])

    def job(self, audience_id: str, **extra: Any) -> dict[str, Any]:
        r = self.api.post("/authorizations", {"provider": "webhook", "method": "hmac", "label": "Hook",
                                              "credentials": {"url": self.receiver.url("/hooks"),
                                                              "signing_secret": SIGNING}})
        assert r.status_code == 201, r.body
        body = {"provider": "webhook", "job_type": "export", "workflow": "webhook_audience_export",
                "authorization_id": r.json["data"]["id"], "label": "Pro, live", "schedule": REALTIME,
                "config": {"audience_id": audience_id, "fields": ["email", "plan"], "batch_size": 5}, **extra}
        r = self.api.post("/jobs", body)
        assert r.status_code == 201, r.body
        return dict(r.json["data"])

    def live(self) -> tuple[Any, dict[str, Any], Any]:
        """A pro audience, a real-time webhook job of it (its first nudge pumped), the deps."""
        aud = audience(self.d, self.account_id)
        job = self.job(aud.id)
        self.pump()
        return aud, job, self.d

    def sent(self) -> list[tuple[str, str]]:
        return [(e["type"], e["profile_id"]) for e in self.inbox.events]

    def die_before_the_cursor_moves(self, nudge: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        """Deliver `nudge` in a Lambda that dies after the destination accepted the changes,
        before the job's cursor is written (its finally releases the lease)."""
        from chalicelib.services.realtime import deliver
        from chalicelib.store.realtime import RealtimeRepo

        def crash(*a: Any, **k: Any) -> bool:
            raise RuntimeError("Lambda timed out")

        with monkeypatch.context() as m:
            m.setattr(RealtimeRepo, "advance", crash)
            with pytest.raises(RuntimeError):
                deliver(self.d, nudge)

    def kinesis_job(self, name: str) -> tuple[Any, dict[str, Any], Any]:
        """A pro audience, a real-time Kinesis job of it writing to a new 2-shard stream
        `name` (its first nudge pumped), and a Kinesis client."""
        import boto3

        from tests.api.helpers import CANARY, access_key_id

        kinesis = boto3.client("kinesis", region_name="us-east-1")
        kinesis.create_stream(StreamName=name, ShardCount=2)
        aud = audience(self.d, self.account_id)
        auth = self.api.post("/authorizations", {"provider": "amazon_kinesis", "method": "access_keys",
                                                 "label": "keys", "credentials": {
                                                     "access_key_id": access_key_id(), "secret_access_key": CANARY,
                                                     "stream_name": name}})
        assert auth.status_code == 201, auth.body
        r = self.api.post("/jobs", {"provider": "amazon_kinesis", "job_type": "export",
                                    "workflow": "kinesis_audience_export", "authorization_id": auth.json["data"]["id"],
                                    "label": "pro, live", "schedule": REALTIME,
                                    "config": {"audience_id": aud.id, "stream_name": name, "fields": ["email"]}})
        assert r.status_code == 201, r.body
        self.pump()
        return aud, dict(r.json["data"]), kinesis


@pytest.fixture()
def world(stack: Stack) -> Iterator[World]:
    from chalice.test import Client

    from app import app
    from chalicelib.services.accounts import create_account, token_cache

    token_cache.clear()
    account, _, issued = create_account(stack.deps, "Live", "admin@live.example")
    box = Inbox(secret=SIGNING)
    with Receiver(handler=box) as r, Client(app, stage_name="local") as c:
        w = World(stack, Api(c, issued.plaintext), account.id, r, box)
        w.pump()  # nudges left by earlier tests' accounts
        yield w


def test_enter_then_exit_reach_the_webhook_in_order_within_one_nudge_each(world: World) -> None:
    d = world.d
    aud = audience(d, world.account_id)
    job = world.job(aud.id)
    assert job["schedule"] == REALTIME and job["status"] == "sleeping"
    assert d.scheduler.get(job["id"]) is None  # a real-time job has no EventBridge schedule
    assert world.pump() == {job["id"]: 1}  # the create's nudge: nothing in the log yet
    assert world.sent() == []
    # WHEN alice joins the pro plan, then leaves it
    alice = upsert(d, world.account_id, "alice@example.com", plan="pro")
    world.stack.deliver()
    world.pump()
    upsert(d, world.account_id, "alice@example.com", plan="free")
    world.stack.deliver()
    world.pump()
    # THEN the webhook got the enter, then the exit, with the values read when sending
    assert world.sent() == [("audience.entered", alice), ("audience.exited", alice)]
    assert world.inbox.events[0]["fields"] == {"email": "alice@example.com", "plan": "pro"}
    assert [e["audience_id"] for e in world.inbox.events] == [aud.id, aud.id]
    assert world.api.get(f"/jobs/{job['id']}").json["data"]["lag_seconds"] == 0


def test_several_changes_of_several_profiles_keep_each_profiles_order(world: World) -> None:
    aud, job, d = world.live()
    # GIVEN 4 profiles that join, 2 of which leave and 1 rejoins, all before one nudge is pumped
    ids = [upsert(d, world.account_id, f"p{i}@example.com", plan="pro") for i in range(4)]
    world.stack.deliver()
    for i in (1, 3):
        upsert(d, world.account_id, f"p{i}@example.com", plan="free")
    world.stack.deliver()
    upsert(d, world.account_id, "p1@example.com", plan="pro")
    world.stack.deliver()
    world.pump()
    log = d.audience_members.changes(world.account_id, aud.id, after=0, upto=100)
    expected = [({"enter": "audience.entered", "exit": "audience.exited"}[c.change], c.profile_id) for c in log]
    # THEN every change arrived once, in the log's order (so each profile's too)
    assert world.sent() == expected and len(expected) == 7
    assert [t for t, p in world.sent() if p == ids[1]] == ["audience.entered", "audience.exited", "audience.entered"]
    assert world.inbox.repeats == []
    assert world.api.get(f"/jobs/{job['id']}").json["data"]["lag_seconds"] == 0


def test_a_nudge_delivered_again_sends_nothing_twice(world: World) -> None:
    from chalicelib.services.realtime import Nudge, deliver

    aud, job, d = world.live()
    bob = upsert(d, world.account_id, "bob@example.com", plan="pro")
    world.stack.deliver()
    nudge = Nudge(world.account_id, aud.id, job["id"])
    # Positive control: the first delivery of the nudge sends bob's enter
    first = deliver(d, nudge)
    assert (first.status, first.delivered, first.cursor) == ("caught_up", 1, 1)
    assert world.sent() == [("audience.entered", bob)]
    # WHEN the same nudge comes again (SQS redelivery), twice, and the queued copy too
    for _ in range(2):
        again = deliver(d, nudge)
        assert (again.status, again.delivered, again.cursor) == ("caught_up", 0, 1)
    world.pump()
    # THEN nothing more was sent
    assert world.sent() == [("audience.entered", bob)] and world.inbox.repeats == []


def test_a_crash_after_the_webhook_accepted_resends_the_same_event_ids(world: World,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.services.realtime import Nudge, deliver

    aud, job, d = world.live()
    carol = upsert(d, world.account_id, "carol@example.com", plan="pro")
    world.stack.deliver()
    nudge = Nudge(world.account_id, aud.id, job["id"])
    # GIVEN a delivery that dies after the webhook accepted, before the cursor's write
    world.die_before_the_cursor_moves(nudge, monkeypatch)
    assert world.sent() == [("audience.entered", carol)]
    # WHEN the nudge comes back (the lease was released by the dying delivery's finally)
    deliver(d, nudge)
    # THEN the change went out again with the very same event id and batch id (at least once,
    # stable ids: the receiver keeps it once), and then never again
    assert world.inbox.repeats and len(world.inbox.events) == 1
    deliver(d, nudge)
    assert len(world.inbox.repeats) == 1


def test_a_paused_job_keeps_its_backlog_with_growing_lag_and_drains_it_on_resume(world: World) -> None:
    aud, job, d = world.live()
    r = world.api.post(f"/jobs/{job['id']}/pause")
    assert r.status_code == 200, r.body
    # WHEN two profiles join while the job is paused
    dan = upsert(d, world.account_id, "dan@example.com", plan="pro")
    eve = upsert(d, world.account_id, "eve@example.com", plan="pro")
    world.stack.deliver()
    assert world.pump() == {job["id"]: 1}  # nudged, and it found the job paused
    # THEN nothing was sent, and the job shows how old its oldest undelivered change is
    assert world.sent() == []
    first = d.audience_members.changes(world.account_id, aud.id, after=0, upto=1)[0]
    from datetime import datetime, timedelta

    from chalicelib.services.realtime import lag_seconds
    from chalicelib.store.jobs import JobRepo

    held = JobRepo(d.table).get(world.account_id, job["id"])
    assert held is not None
    at = datetime.fromisoformat(first.at.replace("Z", "+00:00"))
    assert lag_seconds(d, held, now=at + timedelta(seconds=42)) == 42.0
    shown = world.api.get(f"/jobs/{job['id']}").json["data"]["lag_seconds"]
    assert shown is not None and shown > 0  # measured against the wall clock: some time has passed
    # WHEN resumed
    r = world.api.post(f"/jobs/{job['id']}/resume")
    assert r.status_code == 200, r.body
    world.pump()
    # THEN the backlog drained, in order, and the lag is 0
    assert world.sent() == [("audience.entered", dan), ("audience.entered", eve)]
    assert world.api.get(f"/jobs/{job['id']}").json["data"]["lag_seconds"] == 0


def test_schedule_realtime_is_refused_for_other_providers_and_batch_jobs_show_no_lag(world: World) -> None:
    aud = audience(world.d, world.account_id)
    # S3 exports send files, not events: refused, naming the field, nothing stored
    r = world.api.post("/jobs", {"provider": "amazon_s3", "job_type": "export", "workflow": "s3_audience_export",
                                 "authorization_id": "auth_missing", "label": "S3 live", "schedule": REALTIME,
                                 "config": {"audience_id": aud.id, "bucket": "b", "prefix": "p/"}})
    assert r.status_code == 422, r.body
    assert "schedule.type" in r.json["error"]["fields"]
    assert world.api.get("/jobs").json["data"] == []
    # a webhook export on an hourly schedule is not real-time: no lag figure
    job = world.job(aud.id, schedule={"type": "interval", "every_minutes": 60})
    assert world.api.get(f"/jobs/{job['id']}").json["data"]["lag_seconds"] is None
    # and moving it to real time is accepted
    r = world.api.patch(f"/jobs/{job['id']}", {"schedule": REALTIME, "version": job["version"]})
    assert r.status_code == 200, r.body
    assert world.api.get(f"/jobs/{job['id']}").json["data"]["lag_seconds"] == 0


def test_another_accounts_real_time_job_is_404_and_its_changes_never_cross(world: World) -> None:
    from chalicelib.services.accounts import create_account

    _, job, d = world.live()
    other_account, _, other_token = create_account(d, "Other", "admin@other.example")
    other = Api(world.api.client, other_token.plaintext)
    assert other.get(f"/jobs/{job['id']}").status_code == 404
    assert other.post(f"/jobs/{job['id']}/pause").status_code == 404
    assert other.patch(f"/jobs/{job['id']}", {"schedule": {"type": "daily", "at": "09:00"},
                                             "version": job["version"]}).status_code == 404
    # a pro profile of the other account enters the other account's own pro audience (the
    # positive control) and never reaches this job's webhook
    theirs = audience(d, other_account.id)
    zed = upsert(d, other_account.id, "zed@example.com", plan="pro")
    mine = upsert(d, world.account_id, "me@example.com", plan="pro")
    world.stack.deliver()
    world.pump()
    assert [c.profile_id for c in d.audience_members.changes(other_account.id, theirs.id, after=0, upto=9)] == [zed]
    assert world.sent() == [("audience.entered", mine)]


def test_an_sqs_fifo_queue_gets_each_change_once_in_order_even_after_a_crash(world: World,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    from chalicelib.services.realtime import Nudge, deliver
    from tests.api.helpers import CANARY, access_key_id

    d = world.d
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = str(sqs.create_queue(QueueName=f"rt-{world.account_id[-10:]}.fifo",
                               Attributes={"FifoQueue": "true"})["QueueUrl"])
    aud = audience(d, world.account_id)
    auth = world.api.post("/authorizations", {"provider": "amazon_sqs", "method": "access_keys", "label": "keys",
                                              "credentials": {"access_key_id": access_key_id(),
                                                              "secret_access_key": CANARY, "queue_url": url}})
    assert auth.status_code == 201, auth.body
    r = world.api.post("/jobs", {"provider": "amazon_sqs", "job_type": "export", "workflow": "sqs_audience_export",
                                 "authorization_id": auth.json["data"]["id"], "label": "pro, live",
                                 "schedule": REALTIME, "config": {"audience_id": aud.id, "queue_url": url}})
    assert r.status_code == 201, r.body
    job = r.json["data"]
    world.pump()
    # GIVEN ann and ben join, then ann leaves
    ann = upsert(d, world.account_id, "ann@example.com", plan="pro")
    ben = upsert(d, world.account_id, "ben@example.com", plan="pro")
    world.stack.deliver()
    upsert(d, world.account_id, "ann@example.com", plan="free")
    world.stack.deliver()
    # WHEN the first delivery dies after SQS accepted every message, before the cursor moved,
    # and the nudge comes back
    world.die_before_the_cursor_moves(Nudge(world.account_id, aud.id, job["id"]), monkeypatch)
    waiting = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert waiting["Attributes"]["ApproximateNumberOfMessages"] == "3"  # the dying delivery sent them
    again = deliver(d, Nudge(world.account_id, aud.id, job["id"]))
    assert (again.status, again.delivered, again.cursor) == ("caught_up", 3, 3)
    # THEN the queue holds each change once (the resend had the same deduplication ids),
    # grouped by profile, in order
    got = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                       AttributeNames=["All"]).get("Messages", []):
        for m in batch:
            got.append((json.loads(m["Body"]), m["Attributes"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    sent = [(b["type"], b["profile_id"]) for b, _ in got]
    assert sorted(sent) == sorted([("audience.entered", ann), ("audience.entered", ben), ("audience.exited", ann)])
    assert [t for t, p in sent if p == ann] == ["audience.entered", "audience.exited"]
    assert all(a["MessageGroupId"] == b["profile_id"] and a["MessageDeduplicationId"] == b["event_id"]
               for b, a in got)
    sqs.delete_queue(QueueUrl=url)


def test_a_nudge_that_finds_the_job_busy_is_dropped_and_the_holder_sends_its_change(world: World) -> None:
    import threading

    from chalicelib.services.realtime import DeliveryBusy, Nudge, deliver

    aud, job, d = world.live()
    # GIVEN a delivery of fay's enter held inside the webhook's answer
    entered, release = threading.Event(), threading.Event()
    inbox = world.inbox

    def held(req: Any) -> Any:
        entered.set()
        assert release.wait(30), "the test never released the receiver"
        return inbox(req)

    world.receiver.handler = held
    fay = upsert(d, world.account_id, "fay@example.com", plan="pro")
    world.stack.deliver()
    nudge = Nudge(world.account_id, aud.id, job["id"])
    outcome: list[Any] = []
    holder = threading.Thread(target=lambda: outcome.append(deliver(d, nudge)))
    holder.start()
    assert entered.wait(30)
    # WHEN gus enters meanwhile, and his nudge finds the job held
    gus = upsert(d, world.account_id, "gus@example.com", plan="pro")
    world.stack.deliver()
    with pytest.raises(DeliveryBusy):
        deliver(d, nudge)
    world.receiver.handler = inbox
    release.set()
    holder.join(30)
    # THEN the holder, seeing the head moved once it let the job go, sent gus too, in order
    assert outcome and (outcome[0].status, outcome[0].delivered, outcome[0].cursor) == ("caught_up", 2, 2)
    assert world.sent() == [("audience.entered", fay), ("audience.entered", gus)]


def test_a_kinesis_stream_gets_enter_then_exit_keyed_by_profile(world: World) -> None:
    from tests.engine.test_kinesis import _records

    d = world.d
    name = f"rt-{world.account_id[-10:]}"
    _, job, kinesis = world.kinesis_job(name)
    # WHEN hal joins then leaves, and ivy joins
    hal = upsert(d, world.account_id, "hal@example.com", plan="pro")
    world.stack.deliver()
    world.pump()
    upsert(d, world.account_id, "hal@example.com", plan="free")
    ivy = upsert(d, world.account_id, "ivy@example.com", plan="pro")
    world.stack.deliver()
    world.pump()
    # THEN each change is one record keyed by its profile (one shard per profile: its order kept)
    stored = _records(kinesis, name)
    assert sorted((e["type"], e["profile_id"]) for _, e in stored) == sorted(
        [("audience.entered", hal), ("audience.exited", hal), ("audience.entered", ivy)])
    assert all(key == e["profile_id"] for key, e in stored)
    assert [e["type"] for _, e in stored if e["profile_id"] == hal] == ["audience.entered", "audience.exited"]
    assert world.api.get(f"/jobs/{job['id']}").json["data"]["lag_seconds"] == 0
    kinesis.delete_stream(StreamName=name)
