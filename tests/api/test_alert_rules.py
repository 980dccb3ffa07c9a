"""Metric threshold rules per job (services/alert_rules.py) through the API on moto: a
breach found by the hourly evaluator reaches the alerts queue through EventBridge, rules
are validated, audited and deleted with their job.

The evaluator's logic on a moved clock (the right bucket, once per breach, re-arming, day
and week rules) runs without moto in tests/services/test_alert_rule_evaluation.py; the
store's conditions, sweep and activity buckets in tests/store/test_repo_contract.py."""

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
    """A step's activity, as its commit records it (tests/api/test_alert_rule_crash.py too)."""
    deps.table.transact(deps.runs.activity_ops(account_id, job_id, at, added, 0, 0))


def _alerts_of(account_id: str) -> list[dict[str, Any]]:
    return [e for e in _take("switchyard-test-alerts") if e["detail"]["account_id"] == account_id]


def test_a_min_rule_counts_empty_hours_but_not_hours_before_it_existed(api, deps, tenant) -> None:
    # GIVEN a rule "at least 1 removed per hour" made now, and a job with no activity
    job = _job(api)
    api.post(f"/jobs/{job['id']}/alert-rules", {"metric": "removed", "granularity": "hour", "min": 1})
    _take("switchyard-test-alerts")
    made = datetime.now(UTC)
    # WHEN the evaluator runs in the same hour THEN nothing is judged (no complete watched hour)
    assert alert_rules.evaluate(deps, now=made).fired == 0
    # WHEN the first full hour after it passes empty THEN it fires
    nxt = made.replace(minute=0, second=0, microsecond=0) + timedelta(hours=2, minutes=5)
    assert alert_rules.evaluate(deps, now=nxt).fired == 1
    [event] = _alerts_of(tenant.account_id)
    assert event["detail"]["metric"] == "removed" and event["detail"]["violations"] == 1


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
