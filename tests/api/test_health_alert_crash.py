"""A health check that dies between recording a transition and putting its alert on the bus
(found by tests/proof/test_crash_redelivery.py): the redelivered check finds the status
unchanged, so before the fix the alert was never sent. The transition now leaves a pending
alert on the authorization, sent (and cleared) by the next check that sees it."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from chalicelib.services import health
from chalicelib.store.alerts import EventBus
from tests.api.test_alerts import _take
from tests.api.test_health import Probe, _auth


class Died(BaseException):
    """The process died (not an Exception: nothing in the app catches it)."""


@pytest.fixture()
def probe(deps: Any, monkeypatch: pytest.MonkeyPatch) -> Probe:
    from chalicelib.providers.registry import Registry

    p = Probe()
    monkeypatch.setattr(deps, "registry", Registry(extra={"test_probe": p}))
    return p


def _ours(account_id: str) -> list[dict[str, Any]]:
    return [e for e in _take("switchyard-test-alerts") if e["detail"]["account_id"] == account_id]


def test_a_check_killed_after_the_transition_alerts_on_redelivery_once(
        api, deps, tenant, probe, monkeypatch) -> None:
    # GIVEN a revoked key, and a health handler that dies right after the transition was
    # recorded, before the alert left
    key = f"key-{uuid.uuid4().hex}"
    auth_id = _auth(api, key)
    probe.modes[key] = "bad"
    _take("switchyard-test-alerts")
    real_publish = EventBus.publish

    def die(self: Any, *a: Any, **kw: Any) -> None:
        raise Died("killed before put_events")

    monkeypatch.setattr(EventBus, "publish", die)
    with pytest.raises(Died):
        health.check_many(deps, [(tenant.account_id, auth_id)], timeout=10)
    monkeypatch.setattr(EventBus, "publish", real_publish)
    assert api.get(f"/authorizations/{auth_id}").json["data"]["health"]["status"] == "unhealthy"
    assert _ours(tenant.account_id) == []
    # WHEN SQS redelivers the check (the status is unchanged now), and a later sweep checks again
    health.check_many(deps, [(tenant.account_id, auth_id)], timeout=10)
    health.check_many(deps, [(tenant.account_id, auth_id)], timeout=10)
    # THEN the alert went out once, naming the one recorded transition
    events = _ours(tenant.account_id)
    assert [e["detail-type"] for e in events] == ["Authorization Unhealthy"], events
    assert events[0]["detail"]["authorization_id"] == auth_id and events[0]["detail"]["transition_id"]
    assert len(api.get(f"/authorizations/{auth_id}/health").json["data"]) == 1


def test_an_alert_eventbridge_refused_is_sent_by_the_next_check(api, deps, tenant, probe, monkeypatch) -> None:
    # GIVEN EventBridge refusing the alert of a transition (emit logs it and goes on)
    key = f"key-{uuid.uuid4().hex}"
    auth_id = _auth(api, key)
    probe.modes[key] = "bad"
    _take("switchyard-test-alerts")
    real_publish = EventBus.publish

    def refuse(self: Any, *a: Any, **kw: Any) -> None:
        raise RuntimeError("EventBridge refused the event: ThrottlingException")

    monkeypatch.setattr(EventBus, "publish", refuse)
    health.check_many(deps, [(tenant.account_id, auth_id)], timeout=10)
    monkeypatch.setattr(EventBus, "publish", real_publish)
    assert _ours(tenant.account_id) == []
    # WHEN the next check runs (no change of status), twice
    health.check_many(deps, [(tenant.account_id, auth_id)], timeout=10)
    health.check_many(deps, [(tenant.account_id, auth_id)], timeout=10)
    # THEN the alert is out, once; and the recovery alerts once too
    assert [e["detail-type"] for e in _ours(tenant.account_id)] == ["Authorization Unhealthy"]
    probe.modes[key] = "ok"
    health.check_many(deps, [(tenant.account_id, auth_id)], timeout=10)
    health.check_many(deps, [(tenant.account_id, auth_id)], timeout=10)
    assert [e["detail-type"] for e in _ours(tenant.account_id)] == ["Authorization Healthy Again"]
