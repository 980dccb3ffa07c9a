"""An evaluator killed between moving a rule to `breached` and the PutEvents of its alert
(docs/alerts.md): before the fix the next evaluation found the rule breached already and the
alert was lost. The move now leaves the alert pending on the rule; the next hourly
evaluation (which reads every rule anyway) sends it, with the same `transition_id`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib.services import alert_rules
from chalicelib.store.alert_rules import AlertRuleRepo
from tests.api.test_alert_rules import _alerts_of, _job, _record
from tests.proof.crash import Killed, killed_at_put_events


@pytest.fixture()
def deps(aws_endpoint: str) -> Iterator[Any]:
    """Tables of this test's own: the evaluator walks every rule of its table."""
    from tests.tables import fresh_deps

    yield from fresh_deps()


@pytest.mark.parametrize("phase", ["before", "after"])
def test_an_evaluator_killed_at_a_breach_alert_leaves_it_to_the_next_hour(api, deps, tenant, phase) -> None:
    # GIVEN a rule "at most 100 added per hour", and an hour over it
    job = _job(api)
    r = api.post(f"/jobs/{job['id']}/alert-rules", {"metric": "added", "granularity": "hour", "max": 100})
    assert r.status_code == 201, r.body
    h0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    _record(deps, tenant.account_id, job["id"], h0 + timedelta(minutes=30), 500)
    _alerts_of(tenant.account_id)
    # WHEN the evaluator dies right before (after) the PutEvents of the breach
    with killed_at_put_events(phase) as fired, pytest.raises(Killed):
        alert_rules.evaluate(deps, now=h0 + timedelta(hours=1, minutes=5))
    assert fired
    assert api.get(f"/jobs/{job['id']}/alert-rules").json["data"][0]["alert_state"] == "breached"
    # AND the next hours' evaluations run (the hour stays over: nothing new to fire)
    assert alert_rules.evaluate(deps, now=h0 + timedelta(hours=2, minutes=5)).fired == 0
    assert alert_rules.evaluate(deps, now=h0 + timedelta(hours=3, minutes=5)).fired == 0
    # THEN the breach was alerted (once, or twice with one transition id if the dead
    # evaluator's event had gone through), and nothing is left pending on the rule
    events = _alerts_of(tenant.account_id)
    assert [e["detail-type"] for e in events] == ["Metric Threshold Breached"] * (1 if phase == "before" else 2)
    ids = {e["detail"]["transition_id"] for e in events}
    assert len(ids) == 1 and all(ids)
    assert events[0]["detail"]["rule_id"] == r.json["data"]["id"]
    [rule] = AlertRuleRepo(deps.table).list_for_job(tenant.account_id, job["id"])
    assert rule.pending_alert is None
