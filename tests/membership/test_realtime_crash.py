"""A seeded crash test of the real-time delivery worker: random profile changes against a
real-time webhook job, the delivery dying at random points (before it sends, after the
webhook accepted but before the cursor's write, after the cursor's write) and the webhook
answering 503 at random; nudges delivered in a random order, with duplicates. Whatever
happened, once the queue is drained every change reached the webhook, in log order, each
event id kept once, and the cursor is the head. Replay a failure with
SWITCHYARD_SEED=<the printed seed>."""

from __future__ import annotations

import contextlib
import random
from typing import Any

import pytest

from tests.http_receiver import Answer
from tests.membership import test_realtime_exports as rtx
from tests.membership.conftest import Crash, dying, upsert
from tests.membership.test_realtime_exports import World
from tests.membership.test_stream_membership import audience
from tests.providers.test_webhook import private_urls  # noqa: F401  (autouse: receivers on 127.0.0.1)
from tests.seeds import seeded

world = rtx.world


@seeded(1, 2)
def test_deliveries_dying_anywhere_send_every_change_once_in_order(world: World, seed: int,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.providers.webhook import WebhookAudienceExport
    from chalicelib.services.realtime import Nudge, deliver
    from chalicelib.store.realtime import RealtimeRepo

    rng = random.Random(seed)
    d = world.d
    aud = audience(d, world.account_id)
    job = world.job(aud.id, config={"audience_id": aud.id, "fields": ["email"], "batch_size": 3})
    world.pump()
    crashes = {"before_send": 0, "after_accept": 0, "after_cursor": 0, "refused": 0, "lease_kept": 0}
    real_advance, real_write, real_release = RealtimeRepo.advance, WebhookAudienceExport.write_part, \
        RealtimeRepo.release
    now = [0.0]

    def later() -> float:
        # Simulated time: each delivery comes after any dead delivery's lease ran out.
        now[0] += 1000
        return now[0]

    def release(self: Any, *a: Any, **k: Any) -> bool:
        if rng.random() < 0.2:
            crashes["lease_kept"] += 1  # the process died: nothing released the job
            return False
        return real_release(self, *a, **k)

    # A delivery dies after the webhook accepted (before the cursor's write), after the
    # cursor's write, or before it sends anything.
    advance = dying(real_advance, rng, crashes, before=("after_accept", 0.2), after=("after_cursor", 0.1))
    write_part = dying(real_write, rng, crashes, before=("before_send", 0.1))

    inbox = world.inbox

    def flaky(req: Any) -> Answer:
        if rng.random() < 0.1:
            crashes["refused"] += 1
            return Answer(503, {"message": "deploying"})
        return inbox(req)

    monkeypatch.setattr(RealtimeRepo, "advance", advance)
    monkeypatch.setattr(RealtimeRepo, "release", release)
    monkeypatch.setattr(WebhookAudienceExport, "write_part", write_part)
    world.receiver.handler = flaky
    nudge = Nudge(world.account_id, aud.id, job["id"])
    people = [f"p{i}@example.com" for i in range(6)]
    for _ in range(20):
        # a few profiles change plan; the stream handler records what that means
        for email in rng.sample(people, rng.randint(1, 3)):
            upsert(d, world.account_id, email, plan=rng.choice(["pro", "free"]))
        world.stack.deliver()
        # nudges: none, one, or several (SQS redelivery), each delivery may die
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            with contextlib.suppress(Crash):
                deliver(d, nudge, clock=later)
    # The queue's copies of the nudges, then deliveries until one comes back caught up
    # without an error (what SQS's redelivery of the last nudge does).
    monkeypatch.setattr(RealtimeRepo, "advance", real_advance)
    monkeypatch.setattr(RealtimeRepo, "release", real_release)
    monkeypatch.setattr(WebhookAudienceExport, "write_part", real_write)
    world.receiver.handler = inbox
    final = deliver(d, nudge, clock=later)
    head = d.audience_members.head(world.account_id, aud.id)
    log = d.audience_members.changes(world.account_id, aud.id, after=0, upto=head, limit=1000)
    print(f"seed {seed}: {head} changes, crashes {crashes}")
    assert head > 0 and sum(crashes.values()) > 0, "the seed exercised nothing"
    # THEN the cursor is the head, and the events kept by id are the log, in its order
    assert (final.status, final.cursor) == ("caught_up", head)
    kept: dict[str, tuple[str, str]] = {}
    for e in inbox.events:
        kept.setdefault(e["event_id"], (e["type"], e["profile_id"]))
    types = {"enter": "audience.entered", "exit": "audience.exited"}
    assert list(kept.values()) == [(types[c.change], c.profile_id) for c in log]
