"""Metric threshold rules per job (services/alert_rules.py): the API, the hourly evaluator
on a controllable clock (fires on the right hour, once per breach, re-armed after
recovery), conditional state moves, audit events, and rules deleted with their job."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib.services import alert_rules
from chalicelib.store.alert_rules import AlertRuleRepo
from tests.api.helpers import create_auth, create_job, make_bucket
from tests.api.test_alerts import _take


@pytest.fixture()
def deps(aws_endpoint: str) -> Iterator[Any]:
    """Tables of this test's own: the evaluator walks every rule of its table."""
    from tests.tables import fresh_deps

    yield from fresh_deps()


def _job(api: Any) -> dict[str, Any]:
    auth = create_auth(api)
    return create_job(api, auth["id"], make_bucket(), start=False)


def _record(deps: Any, account_id: str, job_id: str, at: datetime, added: int) -> None:
    deps.table.transact(deps.runs.activity_ops(account_id, job_id, at, added, 0, 0))


def _alerts_of(account_id: str) -> list[dict[str, Any]]:
    return [e for e in _take("switchyard-alerts") if e["detail"]["account_id"] == account_id]


def test_threshold_alerts_fire_on_the_right_hour_once_per_breach_and_rearm(api, deps, tenant) -> None:
    # GIVEN a rule "at most 100 added per hour, one violating hour tolerated"
    job = _job(api)
    r = api.post(f"/jobs/{job['id']}/alert-rules",
                 {"metric": "added", "granularity": "hour", "max": 100, "allowable_violations": 1})
    assert r.status_code == 201, r.body
    rule = r.json["data"]
    assert rule["alert_state"] == "ok"
    _take("switchyard-alerts")
    # AND a clock starting at the first full hour after the rule was made
    h0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)

    def hour(n: int) -> datetime:
        return h0 + timedelta(hours=n)

    def evaluate_at(n: int) -> alert_rules.Evaluation:
        # Five past the hour, as the schedule runs: hour n-1 is the last complete one.
        return alert_rules.evaluate(deps, now=hour(n) + timedelta(minutes=5))

    # WHEN hour 0 is in range and hours 1 and 2 are over it
    for n, added in ((0, 50), (1, 200), (2, 300)):
        _record(deps, tenant.account_id, job["id"], hour(n) + timedelta(minutes=30), added)
    # THEN evaluating after hour 1 tolerates the first violation
    assert evaluate_at(2).fired == 0
    assert _alerts_of(tenant.account_id) == []
    # AND after hour 2 (two in a row > 1 allowed) it fires, on that hour
    assert evaluate_at(3).fired == 1
    [event] = _alerts_of(tenant.account_id)
    assert event["detail-type"] == "Metric Threshold Breached"
    assert event["detail"]["job_id"] == job["id"] and event["detail"]["rule_id"] == rule["id"]
    assert event["detail"]["last_bucket"] == hour(2).strftime("%Y-%m-%dT%H:00:00Z")
    assert event["detail"]["violations"] == 2
    # WHEN hour 3 is still over and the evaluator runs again (even twice)
    _record(deps, tenant.account_id, job["id"], hour(3) + timedelta(minutes=1), 150)
    assert evaluate_at(4).fired == 0 and evaluate_at(4).fired == 0
    # THEN no second alert for the same breach
    assert _alerts_of(tenant.account_id) == []
    assert api.get(f"/jobs/{job['id']}/alert-rules").json["data"][0]["alert_state"] == "breached"
    # WHEN hour 4 is back in range THEN the rule re-arms, without an alert
    _record(deps, tenant.account_id, job["id"], hour(4), 10)
    ev = evaluate_at(5)
    assert (ev.fired, ev.rearmed) == (0, 1)
    assert api.get(f"/jobs/{job['id']}/alert-rules").json["data"][0]["alert_state"] == "ok"
    # WHEN a new breach of two hours follows THEN it fires again, once, after its second hour
    for n in (5, 6):
        _record(deps, tenant.account_id, job["id"], hour(n), 500)
    assert evaluate_at(6).fired == 0
    assert evaluate_at(7).fired == 1 and evaluate_at(8).fired == 0
    assert [e["detail"]["last_bucket"] for e in _alerts_of(tenant.account_id)] == [
        hour(6).strftime("%Y-%m-%dT%H:00:00Z")]


def test_a_min_rule_counts_empty_hours_but_not_hours_before_it_existed(api, deps, tenant) -> None:
    # GIVEN a rule "at least 1 removed per hour" made now, and a job with no activity
    job = _job(api)
    api.post(f"/jobs/{job['id']}/alert-rules", {"metric": "removed", "granularity": "hour", "min": 1})
    _take("switchyard-alerts")
    made = datetime.now(UTC)
    # WHEN the evaluator runs in the same hour THEN nothing is judged (no complete watched hour)
    assert alert_rules.evaluate(deps, now=made).fired == 0
    # WHEN the first full hour after it passes empty THEN it fires
    nxt = made.replace(minute=0, second=0, microsecond=0) + timedelta(hours=2, minutes=5)
    assert alert_rules.evaluate(deps, now=nxt).fired == 1
    [event] = _alerts_of(tenant.account_id)
    assert event["detail"]["metric"] == "removed" and event["detail"]["violations"] == 1


def test_two_evaluators_holding_the_same_state_fire_once(api, deps, tenant) -> None:
    # GIVEN a rule both evaluators read as "ok"
    job = _job(api)
    rule_id = api.post(f"/jobs/{job['id']}/alert-rules",
                       {"metric": "added", "granularity": "day", "min": 1}).json["data"]["id"]
    repo = AlertRuleRepo(deps.table)
    first, second = (repo.get(tenant.account_id, job["id"], rule_id) for _ in range(2))
    assert first and second and first.alert_state == second.alert_state == "ok"
    # WHEN both try to move it to "breached" THEN only the first write wins
    assert repo.move_state(first, "breached", "2026-01-01T00:00:00Z") is True
    assert repo.move_state(second, "breached", "2026-01-01T00:00:01Z") is False


def test_rules_are_validated_listed_deleted_audited_and_go_with_their_job(api, api_for, deps, tenant) -> None:
    job = _job(api)
    url = f"/jobs/{job['id']}/alert-rules"
    # bad input names the field
    for body, field in (({"metric": "added", "granularity": "hour"}, "min"),
                        ({"metric": "rows", "granularity": "hour", "max": 1}, "metric"),
                        ({"metric": "added", "granularity": "month", "max": 1}, "granularity"),
                        ({"metric": "added", "granularity": "hour", "min": 5, "max": 1}, "min"),
                        ({"metric": "added", "granularity": "hour", "max": 1, "allowable_violations": -1},
                         "allowable_violations"),
                        ({"metric": "added", "granularity": "week", "max": 1, "allowable_violations": 11},
                         "allowable_violations")):
        r = api.post(url, body)
        assert r.status_code == 422 and field in r.json["error"]["fields"], (body, r.body)
    assert api.post("/jobs/nope/alert-rules", {"metric": "added", "granularity": "hour", "max": 1}).status_code == 404
    # observers read but cannot add
    user = api.post("/users", {"email": "obs@acme.example", "name": "o", "role": "observer"})
    observer = api_for(api.post("/tokens", {"label": "o", "user_id": user.json["data"]["id"]}).json["data"]["token"])
    assert observer.post(url, {"metric": "added", "granularity": "hour", "max": 1}).status_code == 403
    # create two, delete one
    a = api.post(url, {"metric": "added", "granularity": "day", "max": 10}).json["data"]
    b = api.post(url, {"metric": "omitted", "granularity": "week", "max": 5}).json["data"]
    assert observer.get(url).status_code == 200
    assert {r["id"] for r in api.get(url).json["data"]} == {a["id"], b["id"]}
    assert api.delete(f"{url}/{a['id']}").status_code == 204
    assert api.delete(f"{url}/{a['id']}").status_code == 404
    assert [r["id"] for r in api.get(url).json["data"]] == [b["id"]]
    # the audit log has both creations and the delete
    events = [(e["action"], e["object_id"]) for e in api.get("/audit").json["data"]
              if e["object_type"] == "alert_rule"]
    assert events == [("deleted", a["id"]), ("created", b["id"]), ("created", a["id"])]
    # a job holds at most 10 rules
    for _ in range(9):
        api.post(url, {"metric": "added", "granularity": "hour", "max": 1})
    assert api.post(url, {"metric": "added", "granularity": "hour", "max": 1}).status_code == 409

    # WHEN the job is deleted THEN its rules go with it: the evaluator finds none
    assert api.delete(f"/jobs/{job['id']}").status_code == 204
    assert AlertRuleRepo(deps.table).list_for_job(tenant.account_id, job["id"]) == []
    assert alert_rules.evaluate(deps).rules == 0
    # AND a new job with the same rule count starts from zero
    job2 = _job(api)
    assert api.post(f"/jobs/{job2['id']}/alert-rules",
                    {"metric": "added", "granularity": "hour", "max": 1}).status_code == 201


def test_a_day_rule_sums_the_days_hours_and_judges_only_complete_days(api, deps, tenant) -> None:
    # GIVEN "at most 100 added per day", no violation tolerated, made now
    job = _job(api)
    r = api.post(f"/jobs/{job['id']}/alert-rules", {"metric": "added", "granularity": "day", "max": 100})
    assert r.status_code == 201, r.body
    _take("switchyard-alerts")
    d1 = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    # WHEN the first full day after it adds 60 in its 3rd hour and 60 in its 21st (no hour over 100)
    _record(deps, tenant.account_id, job["id"], d1 + timedelta(hours=3), 60)
    _record(deps, tenant.account_id, job["id"], d1 + timedelta(hours=20, minutes=30), 60)
    # THEN nothing is judged while that day is still running
    assert alert_rules.evaluate(deps, now=d1 + timedelta(hours=23, minutes=5)).fired == 0
    # AND once it is over, its 120 breach the rule: one alert naming that day
    assert alert_rules.evaluate(deps, now=d1 + timedelta(days=1, minutes=5)).fired == 1
    [event] = _alerts_of(tenant.account_id)
    assert event["detail"]["granularity"] == "day" and event["detail"]["violations"] == 1
    assert event["detail"]["last_bucket"] == d1.strftime("%Y-%m-%dT00:00:00Z")
    # WHEN the next day stays in range THEN the rule re-arms, silently
    _record(deps, tenant.account_id, job["id"], d1 + timedelta(days=1, hours=8), 100)
    ev = alert_rules.evaluate(deps, now=d1 + timedelta(days=2, minutes=5))
    assert (ev.fired, ev.rearmed) == (0, 1)
    assert _alerts_of(tenant.account_id) == []


def test_a_week_rule_judges_monday_to_sunday_weeks(api, deps, tenant) -> None:
    # GIVEN "at least 10 removed per week", made now
    job = _job(api)
    r = api.post(f"/jobs/{job['id']}/alert-rules", {"metric": "removed", "granularity": "week", "min": 10})
    assert r.status_code == 201, r.body
    _take("switchyard-alerts")
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    w1 = today + timedelta(days=7 - today.weekday())  # the first full week after it: next Monday

    def removed(at: datetime, n: int) -> None:
        deps.table.transact(deps.runs.activity_ops(tenant.account_id, job["id"], at, 0, n, 0))

    # WHEN that week removes 3 on Monday and 4 on Sunday (7 < 10)
    removed(w1 + timedelta(hours=1), 3)
    removed(w1 + timedelta(days=6, hours=22), 4)
    # THEN nothing is judged on its Sunday evening, and on the next Monday it fires, once
    assert alert_rules.evaluate(deps, now=w1 + timedelta(days=6, hours=23, minutes=5)).fired == 0
    assert alert_rules.evaluate(deps, now=w1 + timedelta(days=7, minutes=5)).fired == 1
    assert alert_rules.evaluate(deps, now=w1 + timedelta(days=7, hours=1, minutes=5)).fired == 0
    [event] = _alerts_of(tenant.account_id)
    assert event["detail"]["granularity"] == "week" and event["detail"]["metric"] == "removed"
    assert event["detail"]["last_bucket"] == w1.strftime("%Y-%m-%dT00:00:00Z")
    # WHEN the second week removes 12 THEN it re-arms after that week
    removed(w1 + timedelta(days=9), 12)
    ev = alert_rules.evaluate(deps, now=w1 + timedelta(days=14, minutes=5))
    assert (ev.fired, ev.rearmed) == (0, 1)
