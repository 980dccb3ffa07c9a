"""The audit log (GET /audit): who did what to which object, with before/after diffs that
never hold a secret, filtered by object, user and time, scoped to the account."""

from __future__ import annotations

import json
from typing import Any

from tests.api.helpers import CANARY, create_auth, create_job, make_bucket, s3_credentials


def _events(api: Any, query: str = "") -> list[dict[str, Any]]:
    r = api.get(f"/audit{query}")
    assert r.status_code == 200, r.body
    return r.json["data"]


def test_every_change_is_recorded_with_who_and_what_and_no_secret(api, tenant) -> None:
    # GIVEN an authorization and a job, edited, paused, resumed, rotated, then deleted
    auth = create_auth(api, label="Keys")
    bucket = make_bucket()
    job = create_job(api, auth["id"], bucket, label="Nightly", start=False)
    assert api.patch(f"/authorizations/{auth['id']}", {"label": "Keys v2"}).status_code == 200
    current = api.get(f"/jobs/{job['id']}").json["data"]
    assert api.patch(f"/jobs/{job['id']}", {"label": "Nightly import",
                                            "version": current["version"]}).status_code == 200
    assert api.post(f"/jobs/{job['id']}/resume").status_code == 200
    assert api.post(f"/jobs/{job['id']}/pause").status_code == 200
    rotated = api.put(f"/authorizations/{auth['id']}/credentials",
                      {"credentials": s3_credentials(secret=CANARY + "-v2", bucket=bucket)})
    assert rotated.status_code == 200, rotated.body
    assert api.delete(f"/jobs/{job['id']}").status_code == 204

    # WHEN the audit log is read
    events = _events(api)

    # THEN each change is there, newest first, by the admin
    got = [(e["object_type"], e["action"]) for e in events]
    assert got == [("job", "deleted"), ("authorization", "rotated"), ("job", "paused"),
                   ("job", "resumed"), ("job", "changed"), ("authorization", "changed"),
                   ("job", "created"), ("authorization", "created")]
    assert {e["user_id"] for e in events} == {tenant.admin_user_id}
    # AND diffs say what changed, before and after
    by = {(e["object_type"], e["action"]): e for e in events}
    assert by[("job", "changed")]["diff"]["label"] == {"before": "Nightly", "after": "Nightly import"}
    assert by[("authorization", "changed")]["diff"] == {"label": {"before": "Keys", "after": "Keys v2"}}
    assert by[("job", "paused")]["diff"]["status"] == {"before": "sleeping", "after": "paused"}
    assert by[("job", "created")]["diff"]["config"]["after"]["bucket"] == bucket
    # AND no secret, old or new, is anywhere in them
    assert CANARY not in json.dumps(events)


def test_filters_by_object_user_and_time_and_pages(api, tenant) -> None:
    # GIVEN two authorizations with a few changes each
    first, second = create_auth(api, label="A"), create_auth(api, label="B")
    for n in range(3):
        assert api.patch(f"/authorizations/{first['id']}", {"label": f"A{n}"}).status_code == 200
    # WHEN filtered by object THEN only its events come, and paging walks them all once
    page1 = api.get(f"/audit?object_id={first['id']}&limit=2").json
    assert len(page1["data"]) == 2 and page1["next_cursor"]
    page2 = api.get(f"/audit?object_id={first['id']}&limit=2&cursor={page1['next_cursor']}").json
    ids = [e["object_id"] for e in page1["data"] + page2["data"]]
    assert set(ids) == {first["id"]} and len(ids) == 4  # created + 3 changes
    assert [e["object_id"] for e in _events(api, f"?object_id={second['id']}")] == [second["id"]]
    # AND by user, and by time
    assert len(_events(api, f"?user_id={tenant.admin_user_id}")) == 5
    assert _events(api, "?user_id=usr_nobody") == []
    assert _events(api, "?until=2001-01-01T00:00:00Z") == []
    assert len(_events(api, "?since=2001-01-01")) == 5
    # AND a malformed time is a 400 naming the field
    bad = api.get("/audit?since=yesterday")
    assert bad.status_code == 400 and "since" in bad.json["error"]["fields"]


def test_observers_cannot_read_it_and_other_accounts_see_nothing(api, api_for, new_tenant) -> None:
    create_auth(api, label="Mine")
    other = api_for(new_tenant("Elsewhere").admin_token)
    assert other.get("/audit").json["data"] == []
    user = api.post("/users", {"email": "obs@audited.example", "name": "o", "role": "observer"})
    token = api.post("/tokens", {"label": "o", "user_id": user.json["data"]["id"]}).json["data"]["token"]
    assert api_for(token).get("/audit").status_code == 403
