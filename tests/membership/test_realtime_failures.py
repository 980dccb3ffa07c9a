"""A real-time export whose destination refuses: a transient refusal is retried later with the
job left as it is; an authorization refusal fails the job the way a batch export does (its
status, a log line in plain words, one Job Failed alert, the authorization marked unhealthy
with its own alert)
and keeps the backlog for a resume.

The webhook's answers are scripted; the stream poller and the real-time queue are driven by
the test, one step at a time, never timed.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.http_receiver import Answer
from tests.membership.conftest import upsert
from tests.membership.test_realtime_exports import World, world  # noqa: F401  (fixture)
from tests.providers.test_webhook import private_urls  # noqa: F401  (autouse: receivers on 127.0.0.1)


def published(monkeypatch: pytest.MonkeyPatch, d: Any) -> list[tuple[str, dict[str, Any]]]:
    """The alert events the job's changes put on the bus (the bus still publishes them)."""
    seen: list[tuple[str, dict[str, Any]]] = []
    real = d.event_bus.publish

    def record(account_id: str, detail_type: str, detail: dict[str, Any]) -> Any:
        seen.append((detail_type, detail))
        return real(account_id, detail_type, detail)

    monkeypatch.setattr(d.event_bus, "publish", record)
    return seen


def codes(w: World, job_id: str) -> list[str]:
    return [line["code"] for line in w.api.get(f"/jobs/{job_id}/logs").json["data"]]


def test_a_refused_authorization_fails_the_job_and_marks_it(world: World,  # noqa: F811
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    _, job, d = world.live()
    events = published(monkeypatch, d)
    # GIVEN the webhook answers 401 to the next delivery
    world.receiver.script.append(Answer(401, {"error": "bad signature"}))
    bob = upsert(d, world.account_id, "bob@example.com", plan="pro")
    world.stack.deliver()
    # WHEN its nudge is delivered
    world.pump()
    # THEN the job failed, in plain words, with one Job Failed alert
    after = world.api.get(f"/jobs/{job['id']}").json["data"]
    assert after["status"] == "failed"
    assert "realtime.failed" in codes(world, job["id"])
    # AND its authorization is unhealthy now, not at the next sweep (with its own alert)
    auth = world.api.get(f"/authorizations/{job['authorization_id']}").json["data"]
    assert auth["health"]["status"] == "unhealthy"
    assert [t for t, _ in events] == ["Job Failed", "Authorization Unhealthy"]
    assert events[0][1]["job_id"] == job["id"] and events[0][1]["fault_count"] == 1
    # AND nothing reached the webhook; once resumed (the webhook accepting again), bob's enter does
    assert world.sent() == []
    r = world.api.post(f"/jobs/{job['id']}/resume")
    assert r.status_code == 200, r.body
    world.pump()
    assert world.sent() == [("audience.entered", bob)]


def test_a_transient_refusal_is_retried_later_and_the_job_stays(world: World,  # noqa: F811
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _, job, d = world.live()
    events = published(monkeypatch, d)
    # GIVEN the webhook is unavailable for every attempt of the next delivery
    world.receiver.script.extend(Answer(503, {"error": "busy"}) for _ in range(10))
    upsert(d, world.account_id, "cy@example.com", plan="pro")
    world.stack.deliver()
    world.pump()
    # THEN the job is not failed, says it will retry, and sent no alert
    assert world.api.get(f"/jobs/{job['id']}").json["data"]["status"] != "failed"
    assert "realtime.transient_error" in codes(world, job["id"])
    assert "realtime.failed" not in codes(world, job["id"])
    assert events == [] and world.sent() == []
