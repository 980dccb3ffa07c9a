"""The hourly alert-rule evaluator and the rule use cases (services/alert_rules.py) on the
in-memory store, on a clock the test moves: fires on the right bucket, once per breach,
re-arms after recovery; day and week rules judge complete days and Monday-to-Sunday weeks.
No moto: the store's side (conditional state moves, the sweep index, the activity buckets,
the rule limit) is proven against DynamoDB by tests/store/test_repo_contract.py, and the
HTTP side, EventBridge delivery and rules going with their job by tests/api/test_alert_rules.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib.domain.access import Principal, Role
from chalicelib.domain.catalog import JobType
from chalicelib.domain.errors import AppError
from chalicelib.domain.models import Job
from chalicelib.domain.statuses import JobStatus
from chalicelib.services import alert_rules
from tests.fakes.memory_store import memory_deps

ACCOUNT = "acct_rules"
ADMIN = Principal(ACCOUNT, "user_admin", Role.ADMIN, "tok_test")


@pytest.fixture()
def d() -> Any:
    return memory_deps()


def _job(d: Any, label: str = "Nightly export") -> Job:
    job = Job(id=f"job_{len(d.memory.items)}", account_id=ACCOUNT, provider="amazon_s3", job_type=JobType.EXPORT,
              workflow="s3_audience_export", authorization_id="auth_1", label=label, description="", config={},
              schedule=None, status=JobStatus.PAUSED, owner="user_admin", created_at="2026-01-01T00:00:00Z",
              updated_at="2026-01-01T00:00:00Z")
    d.jobs.put(job)
    return job


def _rule(d: Any, job: Job, made: datetime, *, metric: str = "added", granularity: str = "hour",
          min_: int | None = None, max_: int | None = None, allowable: int = 0) -> alert_rules.AlertRule:
    return alert_rules.create(d, ADMIN, job.id, metric=metric, granularity=granularity, min_=min_, max_=max_,
                              allowable_violations=allowable, now=made)


def test_threshold_alerts_fire_on_the_right_hour_once_per_breach_and_rearm(d: Any) -> None:
    # GIVEN a rule "at most 100 added per hour, one violating hour tolerated", made just before hour 0
    h0 = datetime(2026, 3, 12, 10, tzinfo=UTC)
    job = _job(d)
    rule = _rule(d, job, h0 - timedelta(minutes=10), max_=100, allowable=1)
    assert rule.alert_state == "ok"

    def hour(n: int) -> datetime:
        return h0 + timedelta(hours=n)

    def evaluate_at(n: int) -> alert_rules.Evaluation:
        # Five past the hour, as the schedule runs: hour n-1 is the last complete one.
        return alert_rules.evaluate(d, now=hour(n) + timedelta(minutes=5))

    # WHEN hour 0 is in range and hours 1 and 2 are over it
    for n, added in ((0, 50), (1, 200), (2, 300)):
        d.runs.record(ACCOUNT, job.id, hour(n) + timedelta(minutes=30), added, 0, 0)
    # THEN evaluating after hour 1 tolerates the first violation
    assert evaluate_at(2).fired == 0
    assert d.event_bus.take(ACCOUNT) == []
    # AND after hour 2 (two in a row > 1 allowed) it fires, on that hour
    assert evaluate_at(3).fired == 1
    [event] = d.event_bus.take(ACCOUNT)
    assert event["detail-type"] == "Metric Threshold Breached"
    assert event["detail"]["job_id"] == job.id and event["detail"]["rule_id"] == rule.id
    assert event["detail"]["label"] == "Nightly export"
    assert event["detail"]["last_bucket"] == hour(2).strftime("%Y-%m-%dT%H:00:00Z")
    assert event["detail"]["violations"] == 2
    # AND the alert left: nothing stays pending on the rule
    assert alert_rules.list_(d, ADMIN, job.id)[0].pending_alert is None
    # WHEN hour 3 is still over and the evaluator runs again (even twice)
    d.runs.record(ACCOUNT, job.id, hour(3) + timedelta(minutes=1), 150, 0, 0)
    assert evaluate_at(4).fired == 0 and evaluate_at(4).fired == 0
    # THEN no second alert for the same breach
    assert d.event_bus.take(ACCOUNT) == []
    assert alert_rules.list_(d, ADMIN, job.id)[0].alert_state == "breached"
    # WHEN hour 4 is back in range THEN the rule re-arms, without an alert
    d.runs.record(ACCOUNT, job.id, hour(4), 10, 0, 0)
    ev = evaluate_at(5)
    assert (ev.fired, ev.rearmed) == (0, 1)
    assert alert_rules.list_(d, ADMIN, job.id)[0].alert_state == "ok"
    # WHEN a new breach of two hours follows THEN it fires again, once, after its second hour
    for n in (5, 6):
        d.runs.record(ACCOUNT, job.id, hour(n), 500, 0, 0)
    assert evaluate_at(6).fired == 0
    assert evaluate_at(7).fired == 1 and evaluate_at(8).fired == 0
    assert [e["detail"]["last_bucket"] for e in d.event_bus.take(ACCOUNT)] == [
        hour(6).strftime("%Y-%m-%dT%H:00:00Z")]


def test_a_min_rule_counts_empty_hours_but_not_hours_before_it_existed(d: Any) -> None:
    # GIVEN a rule "at least 1 removed per hour" made at 10:20, and a job with no activity
    made = datetime(2026, 3, 12, 10, 20, tzinfo=UTC)
    _rule(d, _job(d), made, metric="removed", min_=1)
    # WHEN the evaluator runs in the same hour THEN nothing is judged (no complete watched hour)
    assert alert_rules.evaluate(d, now=made + timedelta(minutes=30)).fired == 0
    # AND at 11:05 neither: the 10:00 hour began before the rule existed
    assert alert_rules.evaluate(d, now=datetime(2026, 3, 12, 11, 5, tzinfo=UTC)).fired == 0
    # WHEN the first full hour after it passes empty THEN it fires
    assert alert_rules.evaluate(d, now=datetime(2026, 3, 12, 12, 5, tzinfo=UTC)).fired == 1
    [event] = d.event_bus.take(ACCOUNT)
    assert event["detail"]["metric"] == "removed" and event["detail"]["violations"] == 1


def test_a_pending_alert_left_by_a_failed_send_goes_out_on_the_next_evaluation(d: Any) -> None:
    # GIVEN a breach whose alert EventBridge refused
    made = datetime(2026, 3, 12, 10, 20, tzinfo=UTC)
    job = _job(d)
    _rule(d, job, made, min_=1)
    bus = d.event_bus

    class Refusing:
        def publish(self, *args: Any) -> None:
            raise RuntimeError("EventBridge is unavailable")

    d.event_bus = Refusing()
    assert alert_rules.evaluate(d, now=datetime(2026, 3, 12, 12, 5, tzinfo=UTC)).fired == 1
    [rule] = alert_rules.list_(d, ADMIN, job.id)
    assert rule.alert_state == "breached" and rule.pending_alert is not None
    # WHEN the next evaluation runs with the bus back THEN the same alert goes out, once
    d.event_bus = bus
    assert alert_rules.evaluate(d, now=datetime(2026, 3, 12, 13, 5, tzinfo=UTC)).fired == 0
    [event] = bus.take(ACCOUNT)
    assert event["detail"]["transition_id"] == rule.pending_alert["transition_id"]
    assert alert_rules.list_(d, ADMIN, job.id)[0].pending_alert is None
    assert alert_rules.evaluate(d, now=datetime(2026, 3, 12, 14, 5, tzinfo=UTC)).fired == 0
    assert bus.take(ACCOUNT) == []


def test_a_day_rule_sums_the_days_hours_and_judges_only_complete_days(d: Any) -> None:
    # GIVEN "at most 100 added per day", no violation tolerated, made the day before
    d1 = datetime(2026, 3, 12, tzinfo=UTC)
    job = _job(d)
    _rule(d, job, d1 - timedelta(hours=5), granularity="day", max_=100)
    # WHEN the first full day after it adds 60 in its 3rd hour and 60 in its 21st (no hour over 100)
    d.runs.record(ACCOUNT, job.id, d1 + timedelta(hours=3), 60, 0, 0)
    d.runs.record(ACCOUNT, job.id, d1 + timedelta(hours=20, minutes=30), 60, 0, 0)
    # THEN nothing is judged while that day is still running
    assert alert_rules.evaluate(d, now=d1 + timedelta(hours=23, minutes=5)).fired == 0
    # AND once it is over, its 120 breach the rule: one alert naming that day
    assert alert_rules.evaluate(d, now=d1 + timedelta(days=1, minutes=5)).fired == 1
    [event] = d.event_bus.take(ACCOUNT)
    assert event["detail"]["granularity"] == "day" and event["detail"]["violations"] == 1
    assert event["detail"]["last_bucket"] == d1.strftime("%Y-%m-%dT00:00:00Z")
    # WHEN the next day stays in range THEN the rule re-arms, silently
    d.runs.record(ACCOUNT, job.id, d1 + timedelta(days=1, hours=8), 100, 0, 0)
    ev = alert_rules.evaluate(d, now=d1 + timedelta(days=2, minutes=5))
    assert (ev.fired, ev.rearmed) == (0, 1)
    assert d.event_bus.take(ACCOUNT) == []


def test_a_week_rule_judges_monday_to_sunday_weeks(d: Any) -> None:
    # GIVEN "at least 10 removed per week", made on a Thursday
    made = datetime(2026, 3, 12, 9, tzinfo=UTC)
    w1 = datetime(2026, 3, 16, tzinfo=UTC)  # the first full week after it: next Monday
    job = _job(d)
    _rule(d, job, made, metric="removed", granularity="week", min_=10)
    # WHEN that week removes 3 on Monday and 4 on Sunday (7 < 10)
    d.runs.record(ACCOUNT, job.id, w1 + timedelta(hours=1), 0, 3, 0)
    d.runs.record(ACCOUNT, job.id, w1 + timedelta(days=6, hours=22), 0, 4, 0)
    # THEN nothing is judged on its Sunday evening, and on the next Monday it fires, once
    assert alert_rules.evaluate(d, now=w1 + timedelta(days=6, hours=23, minutes=5)).fired == 0
    assert alert_rules.evaluate(d, now=w1 + timedelta(days=7, minutes=5)).fired == 1
    assert alert_rules.evaluate(d, now=w1 + timedelta(days=7, hours=1, minutes=5)).fired == 0
    [event] = d.event_bus.take(ACCOUNT)
    assert event["detail"]["granularity"] == "week" and event["detail"]["metric"] == "removed"
    assert event["detail"]["last_bucket"] == w1.strftime("%Y-%m-%dT00:00:00Z")
    # WHEN the second week removes 12 THEN it re-arms after that week
    d.runs.record(ACCOUNT, job.id, w1 + timedelta(days=9), 0, 12, 0)
    ev = alert_rules.evaluate(d, now=w1 + timedelta(days=14, minutes=5))
    assert (ev.fired, ev.rearmed) == (0, 1)


def test_rules_are_validated_limited_audited_and_only_for_existing_jobs(d: Any) -> None:
    job = _job(d)
    now = datetime(2026, 3, 12, tzinfo=UTC)
    for kw, field in (({}, "min"), ({"min_": 5, "max_": 1}, "min"),
                      ({"max_": 1, "granularity": "week", "allowable": 11}, "allowable_violations")):
        with pytest.raises(AppError) as bad:
            _rule(d, job, now, **kw)
        assert field in (bad.value.fields or {}), kw
    with pytest.raises(AppError) as missing:
        alert_rules.create(d, ADMIN, "job_nope", metric="added", granularity="hour", min_=None, max_=1,
                           allowable_violations=0)
    assert missing.value.code == "job.not_found"
    observer = Principal(ACCOUNT, "user_obs", Role.OBSERVER, "tok_obs")
    with pytest.raises(AppError) as forbidden:
        alert_rules.create(d, observer, job.id, metric="added", granularity="hour", min_=None, max_=1,
                           allowable_violations=0)
    assert forbidden.value.code == "auth.forbidden"
    assert d.audit.events(ACCOUNT) == []  # nothing refused left a trace
    # create two, delete one: audited, and the list follows
    a = _rule(d, job, now, granularity="day", max_=10)
    b = _rule(d, job, now, metric="omitted", granularity="week", max_=5)
    assert {r.id for r in alert_rules.list_(d, observer, job.id)} == {a.id, b.id}
    alert_rules.delete(d, ADMIN, job.id, a.id)
    with pytest.raises(AppError) as gone:
        alert_rules.delete(d, ADMIN, job.id, a.id)
    assert gone.value.code == "alert_rule.not_found"
    assert [(e["action"], e["object_id"]) for e in d.audit.events(ACCOUNT)] == [
        ("deleted", a.id), ("created", b.id), ("created", a.id)]
    # a job holds at most 10 rules
    for _ in range(9):
        _rule(d, job, now, max_=1)
    with pytest.raises(AppError) as limit:
        _rule(d, job, now, max_=1)
    assert limit.value.code == "alert_rule.limit"
    assert len(alert_rules.list_(d, ADMIN, job.id)) == 10
