"""Re-send everything on a real-time export: every member of the audience as of the job's
cursor goes out as an add, then the backlog after the cursor, in order (docs/export.md,
"Re-send everything").

States are held by not pumping the stream and the real-time queue, never by sleeping.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.membership import test_realtime_exports as rt
from tests.membership.conftest import upsert
from tests.membership.test_realtime_exports import World
from tests.providers.test_webhook import private_urls  # noqa: F401  (autouse: receivers on 127.0.0.1)

world = rt.world  # the fixture, shared
RESYNC = {"resync": True}


def _members(w: World, n: int) -> list[str]:
    return [upsert(w.d, w.account_id, f"p{i}@example.com", plan="pro") for i in range(n)]


def _two_sent(w: World) -> tuple[Any, dict[str, Any], Any, list[str]]:
    """A live job whose two members' enters went out (the inbox emptied after)."""
    aud, job, d = w.live()
    ids = _members(w, 2)
    w.stack.deliver()
    w.pump()
    w.inbox.events.clear()
    return aud, job, d, ids


def test_a_realtime_resync_sends_every_member_once_then_the_backlog(world: World) -> None:
    w = world
    _, job, d = w.live()
    # GIVEN 3 members sent as they joined, one of whom left
    ids = _members(w, 3)
    w.stack.deliver()
    w.pump()
    upsert(d, w.account_id, "p0@example.com", plan="free")
    w.stack.deliver()
    w.pump()
    assert len(w.sent()) == 4
    w.inbox.events.clear()
    # AND a newcomer whose enter waits in the backlog (its nudge not pumped)
    late = upsert(d, w.account_id, "late@example.com", plan="pro")
    w.stack.deliver()
    # WHEN the job is asked to re-send everything
    r = w.api.post(f"/jobs/{job['id']}/run", RESYNC)
    assert r.status_code == 200, r.body
    assert r.json["data"]["resync_requested"]["id"].startswith("rsy_")
    w.pump()
    # THEN the members as of the cursor went out once each, then the backlog's enter
    assert w.sent() == [("audience.entered", p) for p in sorted(ids[1:])] + [("audience.entered", late)]
    assert w.inbox.repeats == []
    assert w.inbox.events[0]["fields"]["email"] in ("p1@example.com", "p2@example.com")
    # AND the request is served: the job forgets it, the log says so
    summary = w.api.get(f"/jobs/{job['id']}").json["data"]
    assert summary["resync_requested"] is None and summary["lag_seconds"] == 0
    codes = [ln["code"] for ln in w.api.get(f"/jobs/{job['id']}/logs").json["data"]]
    assert "realtime.resync" in codes and "realtime.resynced" in codes and "job.resync" in codes
    # AND later changes go out alone (the re-send is not repeated)
    w.inbox.events.clear()
    upsert(d, w.account_id, "p1@example.com", plan="free")
    w.stack.deliver()
    w.pump()
    assert w.sent() == [("audience.exited", ids[1])]
    # AND a plain run now is still refused on a real-time job (the control of the body's effect)
    r = w.api.post(f"/jobs/{job['id']}/run", {})
    assert r.status_code == 409 and r.json["error"]["code"] == "job.continuous"


def test_a_crash_in_a_realtime_resync_resends_with_the_same_event_ids(world: World,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.services.realtime import Nudge, deliver
    from chalicelib.store.realtime import RealtimeRepo

    w = world
    aud, job, d, ids = _two_sent(w)
    assert w.api.post(f"/jobs/{job['id']}/run", RESYNC).status_code == 200
    # GIVEN a delivery that dies after the webhook accepted the re-send, before its progress is written
    real = RealtimeRepo.resync_progress

    def crash(*a: Any, **k: Any) -> bool:
        raise RuntimeError("Lambda timed out")

    monkeypatch.setattr(RealtimeRepo, "resync_progress", crash)
    nudge = Nudge(w.account_id, aud.id, job["id"])
    with pytest.raises(RuntimeError):
        deliver(d, nudge)
    monkeypatch.setattr(RealtimeRepo, "resync_progress", real)
    assert w.sent() == [("audience.entered", p) for p in sorted(ids)]
    assert w.api.get(f"/jobs/{job['id']}").json["data"]["resync_requested"] is not None  # kept
    # WHEN the nudge comes back
    deliver(d, nudge)
    # THEN the same batch went out again with the same ids (kept once), then never again
    assert len(w.inbox.events) == 2 and len(w.inbox.repeats) == 1
    assert w.api.get(f"/jobs/{job['id']}").json["data"]["resync_requested"] is None
    deliver(d, nudge)
    w.pump()
    assert len(w.inbox.events) == 2 and len(w.inbox.repeats) == 1


def test_a_paused_realtime_job_refuses_a_resync_and_changes_nothing(world: World) -> None:
    w = world
    _, job, _ = w.live()
    assert w.api.post(f"/jobs/{job['id']}/pause").status_code == 200
    version = w.api.get(f"/jobs/{job['id']}").json["data"]["version"]
    r = w.api.post(f"/jobs/{job['id']}/run", RESYNC)
    assert r.status_code == 409 and r.json["error"]["details"]["status"] == "paused", r.body
    after = w.api.get(f"/jobs/{job['id']}").json["data"]
    assert after["version"] == version and after["resync_requested"] is None
    # Control: resumed, it is accepted
    assert w.api.post(f"/jobs/{job['id']}/resume").status_code == 200
    assert w.api.post(f"/jobs/{job['id']}/run", RESYNC).status_code == 200


def test_a_resync_asked_while_a_delivery_holds_the_job_is_served_by_that_delivery(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.services.realtime import Nudge, deliver
    from chalicelib.store.realtime import RealtimeRepo

    w = world
    aud, job, d, ids = _two_sent(w)
    # GIVEN a newcomer's enter being delivered ...
    late = upsert(d, w.account_id, "late@example.com", plan="pro")
    w.stack.deliver()
    real = RealtimeRepo.advance
    asked: list[int] = []

    def advance_and_ask(self: Any, *a: Any, **k: Any) -> bool:
        # ... WHEN the user asks for a re-send while that delivery holds the job: the
        # request's nudge is handled at once and dropped, the job being busy
        if not asked:
            asked.append(w.api.post(f"/jobs/{job['id']}/run", RESYNC).status_code)
            assert w.pump() is not None
        return real(self, *a, **k)

    monkeypatch.setattr(RealtimeRepo, "advance", advance_and_ask)
    deliver(d, Nudge(w.account_id, aud.id, job["id"]))
    monkeypatch.setattr(RealtimeRepo, "advance", real)
    assert asked == [200]
    # THEN that delivery served it before letting go: the newcomer, then every member once
    assert w.sent()[0] == ("audience.entered", late)
    assert sorted(w.sent()[1:]) == sorted(("audience.entered", p) for p in [*ids, late])
    assert w.api.get(f"/jobs/{job['id']}").json["data"]["resync_requested"] is None
