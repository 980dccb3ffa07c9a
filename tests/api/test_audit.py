"""The audit log (GET /audit): who did what to which object, with before/after diffs that
never hold a secret, filtered by object, user and time, scoped to the account."""

from __future__ import annotations

import json
from typing import Any

from tests.api.helpers import CANARY, create_auth, create_job, make_bucket, s3_credentials
from tests.api.test_oauth import oauth_app  # noqa: F401  (a fixture, used by name)


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


# Mutating routes that leave no audit event, and why.
NOT_AUDITED = {
    ("POST", "/api/v1/alerts/test"): "publishes a test alert; changes nothing",
    ("POST", "/api/v1/audiences/preview"): "estimates a filter's size; read-only",
    ("POST", "/api/v1/audiences/sizes"): "estimates saved audiences' sizes; read-only",
    ("POST", "/api/v1/jobs/preview"): "checks a job as create would; stores nothing",
    ("POST", "/api/v1/authorizations/{auth_id}/check"):
        "a check's outcome is the authorization's health history, which records who asked (`by`)",
}


def test_every_mutating_route_leaves_an_audit_event_without_secrets(api, tenant) -> None:
    from chalicelib.api.http import ROUTES

    seen: dict[tuple[str, str], str] = {}

    def step(method: str, template: str, path: str, body: Any = None, *, status: int = 200) -> Any:
        # WHEN the route is called THEN the newest event is about the object it changed, by the caller
        before = len(_events(api, "?limit=100"))
        r = api.call(method, path, body)
        assert r.status_code == status, (method, path, r.body)
        events = _events(api, "?limit=100")
        assert len(events) == before + 1, (method, template, events[:2])
        assert events[0]["user_id"] == tenant.admin_user_id
        seen[(method, "/api/v1" + template)] = events[0]["object_id"]
        return r.json["data"] if r.body else None

    bucket = make_bucket()
    auth = step("POST", "/authorizations", "/authorizations", {
        "provider": "amazon_s3", "method": "access_keys", "label": "Keys",
        "credentials": s3_credentials(bucket=bucket)}, status=201)
    a = auth["id"]
    step("PATCH", "/authorizations/{auth_id}", f"/authorizations/{a}", {"label": "Keys v2"})
    step("PUT", "/authorizations/{auth_id}/credentials", f"/authorizations/{a}/credentials",
         {"credentials": s3_credentials(secret=CANARY + "-v2", bucket=bucket)})
    job = step("POST", "/jobs", "/jobs", {
        "provider": "amazon_s3", "job_type": "import", "workflow": "s3_file_import", "authorization_id": a,
        "label": "Import", "config": {"bucket": bucket}, "start": False}, status=201)
    j = job["id"]
    step("PATCH", "/jobs/{job_id}", f"/jobs/{j}", {"label": "Import 2", "version": job["version"]})
    step("POST", "/jobs/{job_id}/resume", f"/jobs/{j}/resume")
    step("POST", "/jobs/{job_id}/run", f"/jobs/{j}/run")
    step("POST", "/jobs/{job_id}/pause", f"/jobs/{j}/pause")
    rule = step("POST", "/jobs/{job_id}/alert-rules", f"/jobs/{j}/alert-rules",
                {"metric": "added", "granularity": "day", "max": 5}, status=201)
    step("DELETE", "/jobs/{job_id}/alert-rules/{rule_id}", f"/jobs/{j}/alert-rules/{rule['id']}", status=204)
    aud = step("POST", "/audiences", "/audiences", {"name": "Pro", "filter": {"all": [
        {"field": "plan", "op": "equals", "value": "pro"}]}}, status=201)
    step("PATCH", "/audiences/{audience_id}", f"/audiences/{aud['id']}", {"name": "Pro 2", "version": aud["version"]})
    step("DELETE", "/audiences/{audience_id}", f"/audiences/{aud['id']}", status=204)
    user = step("POST", "/users", "/users", {"email": "ann@acme.example", "name": "Ann", "role": "observer"},
                status=201)
    token = step("POST", "/tokens", "/tokens", {"label": "ci", "user_id": user["id"]}, status=201)
    step("DELETE", "/tokens/{token_id}", f"/tokens/{token['id']}", status=204)
    step("PATCH", "/users/{user_id}", f"/users/{user['id']}", {"role": "data_manager"})
    hook = f"https://93.184.216.34/alerts/{CANARY}?token={CANARY}"  # a literal address: vetted without DNS
    settings = step("PUT", "/alerts", "/alerts", {"emails": ["ops@acme.example"], "webhooks": [hook], "version": 0})
    step("POST", "/alerts/webhooks/{webhook_id}/rotate-secret",
         f"/alerts/webhooks/{settings['webhooks'][0]['id']}/rotate-secret")
    step("DELETE", "/jobs/{job_id}", f"/jobs/{j}", status=204)
    step("DELETE", "/authorizations/{auth_id}", f"/authorizations/{a}", status=204)

    # THEN every mutating route was covered, or is listed with its reason
    mutating = {(r.method, r.path) for r in ROUTES if r.method != "GET" and not r.public}
    assert mutating - set(seen) == set(NOT_AUDITED), sorted(mutating - set(seen) - set(NOT_AUDITED))
    assert seen[("POST", "/api/v1/tokens")] == token["id"] and seen[("DELETE", "/api/v1/jobs/{job_id}")] == j
    # AND no secret is in any event: credentials, the token, the alert signing secret, webhook tokens
    dump = json.dumps(_events(api, "?limit=100"))
    for secret in (CANARY, token["token"], token["token"][-4:], *settings["signing_secrets"].values()):
        assert secret not in dump, secret
    assert "93.184.216.34" in dump  # webhooks are recorded by host


CREATED_S3 = {"provider": {"before": None, "after": "amazon_s3"},
              "method": {"before": None, "after": "access_keys"},
              "label": {"before": None, "after": "inline keys"}}


def test_an_authorization_created_inline_in_a_job_is_audited_like_any_other(api, tenant) -> None:
    # WHEN a job is created with a new authorization in the same request
    bucket = make_bucket()
    r = api.post("/jobs", {"provider": "amazon_s3", "job_type": "import", "workflow": "s3_file_import",
                           "label": "inline", "config": {"bucket": bucket}, "start": False,
                           "authorization": {"method": "access_keys", "label": "inline keys",
                                             "credentials": s3_credentials(bucket=bucket)}})
    assert r.status_code == 201, r.body
    job = r.json["data"]
    # THEN both creations are in the log, by the caller, the authorization's without secrets
    events = _events(api)
    assert sorted((e["object_type"], e["action"], e["object_id"]) for e in events) == [
        ("authorization", "created", job["authorization_id"]), ("job", "created", job["id"])]
    [auth_event] = [e for e in events if e["object_type"] == "authorization"]
    assert auth_event["user_id"] == tenant.admin_user_id and auth_event["label"] == "inline keys"
    assert auth_event["diff"] == CREATED_S3
    assert CANARY not in json.dumps(events)


def test_an_authorization_connected_with_oauth_is_audited(api, api_for, tenant, oauth_app) -> None:  # noqa: F811
    from tests.api.test_oauth import _callback, _consent, _start

    # WHEN a user connects Mailchimp with OAuth
    _, nonce, data = _start(api, "Newsletter (OAuth)")
    r = _callback(api_for(None), _consent(data["authorize_url"]), nonce)
    assert r.status_code == 302, r.body
    auth_id = r.headers["Location"].removeprefix("/#/authorizations/")
    # THEN the creation is recorded for the user who started the flow, with no token in it
    [event] = _events(api)
    assert (event["object_type"], event["action"], event["object_id"]) == ("authorization", "created", auth_id)
    assert event["user_id"] == tenant.admin_user_id
    assert event["diff"] == {"provider": {"before": None, "after": "mailchimp"},
                             "method": {"before": None, "after": "oauth"},
                             "label": {"before": None, "after": "Newsletter (OAuth)"}}
    assert oauth_app.oauth_token not in json.dumps(event)


def test_a_change_of_authorization_is_recorded_as_reauthorized_with_its_diff(api, tenant) -> None:
    # GIVEN a job on one authorization, and another of the same account
    bucket = make_bucket()
    first, second = create_auth(api, label="one"), create_auth(api, label="two")
    job = create_job(api, first["id"], bucket, start=False)
    # WHEN the job is moved to the other authorization
    r = api.patch(f"/jobs/{job['id']}", {"authorization_id": second["id"], "version": job["version"]})
    assert r.status_code == 200, r.body
    # THEN the newest job event is "reauthorized", by the caller, naming both authorizations
    [newest, created] = _events(api, f"?object_id={job['id']}")
    assert (newest["action"], created["action"]) == ("reauthorized", "created")
    assert newest["user_id"] == tenant.admin_user_id and newest["object_type"] == "job"
    assert newest["diff"] == {"authorization_id": {"before": first["id"], "after": second["id"]}}


def test_data_managers_see_user_and_token_events_without_emails_or_token_owners(api, api_for) -> None:
    # GIVEN an admin who added a user and issued that user a token, and a data manager
    dm = api.post("/users", {"email": "dm@audited.example", "name": "Dana", "role": "data_manager"}).json["data"]
    dm_token = api.post("/tokens", {"label": "dana", "user_id": dm["id"]}).json["data"]
    create_auth(api, label="Shared")
    # WHEN each reads the log
    as_admin = {(e["object_type"], e["object_id"]): e for e in _events(api)}
    as_dm = {(e["object_type"], e["object_id"]): e for e in _events(api_for(dm_token["token"]))}
    # THEN both see the same events (who did what, when)
    assert as_dm.keys() == as_admin.keys()
    user_key, token_key = ("user", dm["id"]), ("token", dm_token["id"])
    # AND the admin sees the email and whose token it is (the positive control)
    assert as_admin[user_key]["diff"]["email"]["after"] == "dm@audited.example"
    assert as_admin[token_key]["diff"]["user_id"]["after"] == dm["id"]
    # AND the data manager sees neither: no diff on user and token events, nowhere an email
    assert as_dm[user_key]["diff"] == {} and as_dm[token_key]["diff"] == {}
    assert "@audited.example" not in json.dumps(list(as_dm.values()))
    # AND other events keep their diffs
    auth_key = next(k for k in as_dm if k[0] == "authorization")
    assert as_dm[auth_key]["diff"] == as_admin[auth_key]["diff"] != {}


def test_every_audit_event_fits_the_documented_shape(api, tenant) -> None:
    # GIVEN a user whose role changed, who was then disabled, and a webhook secret rotated
    from chalicelib.api.response_schemas import AuditEventOut

    user = api.post("/users", {"email": "kim@acme.example", "name": "Kim", "role": "observer"}).json["data"]
    assert api.patch(f"/users/{user['id']}", {"role": "data_manager"}).status_code == 200
    assert api.patch(f"/users/{user['id']}", {"disabled": True}).status_code == 200
    hooks = api.put("/alerts", {"webhooks": ["https://93.184.216.34/hook"], "version": 0}).json["data"]["webhooks"]
    assert api.post(f"/alerts/webhooks/{hooks[0]['id']}/rotate-secret", {}).status_code == 200
    # WHEN the audit log is read
    events = api.get("/audit").json["data"]
    # THEN the user's changes are there, and every event fits the schema the OpenAPI document
    # promises (the API fuzzer found "updated", an action it does not list)
    assert [e["action"] for e in events if e["object_type"] == "user"] == ["changed", "changed", "created"]
    for e in events:
        AuditEventOut.model_validate(e)
