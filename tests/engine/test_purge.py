"""The daily purge (services/purge.py): paused, failed and completed jobs untouched for 90
days are deleted like a user's delete, so the authorization's usage and the audience's job
count follow; touched and active jobs stay."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib.services.purge import purge_due
from chalicelib.store import jobs as dynamo
from tests.api.helpers import create_auth, make_bucket

# Jobs written "on" this day are due for purge 90 days later (2001-04-01): far before any
# other test's jobs, which are due 90 days after the real now.
WRITTEN = calendar.timegm((2001, 1, 1, 0, 0, 0))
AFTER_90_DAYS = datetime(2001, 4, 2, tzinfo=UTC)
BEFORE_90_DAYS = datetime(2001, 3, 31, tzinfo=UTC)


def _job(api: Any, auth_id: str, audience: str, label: str) -> dict[str, Any]:
    r = api.post("/jobs", {
        "provider": "amazon_s3", "job_type": "export", "workflow": "s3_audience_export",
        "authorization_id": auth_id, "label": label, "start": False,
        "schedule": {"type": "interval", "every_minutes": 60},
        "config": {"audience_id": audience, "bucket": make_bucket()}})
    assert r.status_code == 201, r.body
    return r.json["data"]


def _act(api: Any, job_id: str, action: str) -> None:
    r = api.post(f"/jobs/{job_id}/{action}")
    assert r.status_code == 200, r.body


def test_untouched_paused_jobs_are_purged_with_their_counters(api, deps, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN, written 90+ days ago: a paused export job and one that was paused then resumed
    # today; and a job paused today
    auth = create_auth(api)
    audience = api.post("/audiences", {"name": "Purge me", "filter": {"all": []}}).json["data"]["id"]
    monkeypatch.setattr(dynamo, "_clock", lambda: WRITTEN)
    old = _job(api, auth["id"], audience, "Old and paused")  # start: false -> paused
    touched = _job(api, auth["id"], audience, "Old, touched today")
    assert old["status"] == touched["status"] == "paused"
    monkeypatch.undo()
    _act(api, touched["id"], "resume")
    recent = _job(api, auth["id"], audience, "Paused today")
    assert api.get(f"/authorizations/{auth['id']}").json["data"]["usage"]["by_status"]["paused"] == 2
    assert api.get(f"/audiences/{audience}").json["data"]["export_jobs"] == 3

    # WHEN the purge runs one day before the 90 days are up THEN nothing goes
    assert purge_due(deps, now=BEFORE_90_DAYS).purged == 0
    assert api.get(f"/jobs/{old['id']}").status_code == 200

    # WHEN it runs after them
    report = purge_due(deps, now=AFTER_90_DAYS)

    # THEN only the untouched paused job is gone, and the counters moved with it
    assert report.purged == 1
    assert api.get(f"/jobs/{old['id']}").status_code == 404
    assert api.get(f"/jobs/{touched['id']}").status_code == 200
    assert api.get(f"/jobs/{recent['id']}").status_code == 200
    usage = api.get(f"/authorizations/{auth['id']}").json["data"]["usage"]["by_status"]
    assert usage["paused"] == 1
    assert api.get(f"/audiences/{audience}").json["data"]["export_jobs"] == 2
    # AND running it again finds nothing more
    assert purge_due(deps, now=AFTER_90_DAYS).purged == 0


# A year of its own, so no other test's jobs are due at these moments.
WRITTEN_96 = calendar.timegm((1996, 1, 1, 0, 0, 0))
EDITED_96 = calendar.timegm((1996, 2, 15, 0, 0, 0))


def test_an_edit_that_keeps_a_job_paused_touches_it_and_failed_and_completed_jobs_go_after_90_days(
        api, deps, tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.domain.statuses import Action
    from tests.api.helpers import drive

    # GIVEN, written on 1996-01-01: a paused job, a paused job edited (still paused) on
    # 1996-02-15, a job that failed and one that completed
    auth = create_auth(api)
    audience = api.post("/audiences", {"name": "Purge 96", "filter": {"all": []}}).json["data"]["id"]
    bucket = make_bucket()

    def job(label: str) -> dict[str, Any]:
        r = api.post("/jobs", {"provider": "amazon_s3", "job_type": "export", "workflow": "s3_audience_export",
                               "authorization_id": auth["id"], "label": label, "start": False,
                               "config": {"audience_id": audience, "bucket": bucket}})
        assert r.status_code == 201, r.body
        return dict(r.json["data"])

    monkeypatch.setattr(dynamo, "_clock", lambda: WRITTEN_96)
    paused, edited, failed, completed = (job(x) for x in ("Paused", "Edited while paused", "Failed", "Completed"))
    drive(deps, tenant.account_id, failed["id"], Action.RESUME, Action.RUN_FAILED)
    drive(deps, tenant.account_id, completed["id"], Action.RESUME, Action.RUN_STARTED, Action.RUN_FINISHED_ONCE)
    monkeypatch.setattr(dynamo, "_clock", lambda: EDITED_96)
    r = api.patch(f"/jobs/{edited['id']}", {"label": "Edited, still paused", "version": edited["version"]})
    assert r.status_code == 200 and r.json["data"]["status"] == "paused", r.body
    monkeypatch.undo()
    statuses = {j: api.get(f"/jobs/{j}").json["data"]["status"]
                for j in (paused["id"], edited["id"], failed["id"], completed["id"])}
    assert list(statuses.values()) == ["paused", "paused", "failed", "completed"]

    # WHEN the purge runs just after 90 days from the writes
    report = purge_due(deps, now=datetime(1996, 4, 2, tzinfo=UTC))

    # THEN the untouched paused, the failed and the completed jobs are gone; the edited one stays
    assert report.purged == 3
    gone = {j: api.get(f"/jobs/{j}").status_code for j in statuses}
    assert gone == {paused["id"]: 404, edited["id"]: 200, failed["id"]: 404, completed["id"]: 404}
    assert api.get(f"/authorizations/{auth['id']}").json["data"]["usage"]["total"] == 1
    # AND the edited job goes 90 days after its edit
    assert purge_due(deps, now=datetime(1996, 5, 14, tzinfo=UTC)).purged == 0
    assert purge_due(deps, now=datetime(1996, 5, 16, tzinfo=UTC)).purged == 1
    assert api.get(f"/jobs/{edited['id']}").status_code == 404
