"""Google Tag Manager end to end (docs/providers/gtm.md): an authorization made by the OAuth
callback against a fake Google over real HTTP (tests/fakes/google.py), an `other` job
created through the API, runs delivered from SQS; the tag and versions in the fake's
container; token refresh before a step and by the health check; a revoked grant."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import boto3
import pytest

from tests.api.test_oauth_google import connect, store_google_app
from tests.fakes.google import FakeGoogle

HOURLY = {"type": "interval", "every_minutes": 60}
CONFIG = {"account_id": "6001", "container_id": "9001", "workspace_id": "3"}


class RecordingQueue:
    """The runs queue, keeping a copy of every message sent (for the secret canary)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sent: list[str] = []

    def send(self, message: dict[str, Any], *, delay_seconds: int = 0) -> None:
        self.sent.append(json.dumps(message))
        self.inner.send(message, delay_seconds=delay_seconds)


@pytest.fixture()
def google(fake_google: FakeGoogle) -> FakeGoogle:
    store_google_app(fake_google)
    fake_google.add_account("6001", "Acme")
    fake_google.add_container("6001", "9001", "acme.example", workspace_id="3")
    return fake_google


def _job(api: Any, auth_id: str, **config: Any) -> dict[str, Any]:
    r = api.post("/jobs", {"provider": "google_tag_manager", "job_type": "other", "workflow": "gtm_install_tag",
                           "authorization_id": auth_id, "label": "Install the web tag", "schedule": HOURLY,
                           "config": {**CONFIG, **config}})
    assert r.status_code == 201, r.body
    return dict(r.json["data"])


def _fire(deps: Any, tenant: Any, job_id: str) -> None:
    deps.runs_queue.send({"account_id": tenant.account_id, "job_id": job_id, "trigger": "schedule"})


def _runs(api: Any, job_id: str) -> list[dict[str, Any]]:
    return list(api.get(f"/jobs/{job_id}/runs").json["data"])


def _messages(api: Any, job_id: str) -> list[str]:
    return [ln["message"] for ln in api.get(f"/jobs/{job_id}/logs").json["data"]]


def _secret(tenant: Any, auth_id: str) -> dict[str, Any]:
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    value: dict[str, Any] = json.loads(
        sm.get_secret_value(SecretId=f"switchyard/test/{tenant.account_id}/{auth_id}")["SecretString"])
    return value


def _versions(tenant: Any, auth_id: str) -> int:
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    return len(sm.list_secret_version_ids(SecretId=f"switchyard/test/{tenant.account_id}/{auth_id}",
                                          IncludeDeprecated=True)["Versions"])


def _expire_soon(tenant: Any, auth_id: str, fake: FakeGoogle) -> None:
    """The stored access token has 60 s left, and Google no longer takes it."""
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    value = _secret(tenant, auth_id)
    value["expires_at"] = int(time.time()) + 60
    sm.put_secret_value(SecretId=f"switchyard/test/{tenant.account_id}/{auth_id}", SecretString=json.dumps(value))
    fake.expire_access_tokens()


def test_install_runs_create_one_tag_and_a_version_each_and_refresh_the_token(
        api, api_for, deps, tenant, drain, google, caplog):
    caplog.set_level(logging.DEBUG, logger="switchyard")
    fake = google
    queue = RecordingQueue(deps.runs_queue)
    deps.runs_queue = queue
    bodies: list[str] = []
    # GIVEN an authorization made through the OAuth flow, and a job on it
    auth_id = connect(api, api_for)
    job = _job(api, auth_id)
    # WHEN its first run is delivered
    drain.run()
    # THEN it succeeded, the workspace holds exactly one Switchyard tag, and version 1 exists
    [run] = _runs(api, job["id"])
    assert run["status"] == "succeeded", run
    ws = fake.workspace("6001", "9001")
    assert [t["name"] for t in ws.tags.values()] == ["Switchyard web tag"]
    container = fake.container("6001", "9001")
    assert list(container.versions) == ["1"] and container.live is None
    # AND the run's log names the version; the job sleeps until its next run
    assert "created container version 1" in _messages(api, job["id"])
    assert api.get(f"/jobs/{job['id']}").json["data"]["status"] == "sleeping"
    # AND the authorization's activity counts Google requests
    series = api.get(f"/authorizations/{auth_id}/activity?granularity=hour").json["data"]["series"]
    # the job's create-time check (accounts, container, workspace) and the run (tags.list,
    # tags.create, create_version)
    assert sum(b["api_requests"] for b in series) == 6

    # GIVEN the access token is about to expire (and Google no longer accepts it)
    before = _secret(tenant, auth_id)
    versions = _versions(tenant, auth_id)
    _expire_soon(tenant, auth_id, fake)
    # WHEN the schedule fires again
    _fire(deps, tenant, job["id"])
    drain.run()
    # THEN the token was refreshed before the step, as a new secret version, and used
    second = _runs(api, job["id"])[0]
    assert second["status"] == "succeeded", second
    after = _secret(tenant, auth_id)
    assert after["access_token"] != before["access_token"] and after["refresh_token"] == before["refresh_token"]
    assert after["expires_at"] > time.time() + 3000
    assert _versions(tenant, auth_id) == versions + 2  # ours (the test's) and the refresh's
    assert [i["grant"] for i in fake.issued] == ["authorization_code", "refresh_token"]
    # AND the tag was updated, not duplicated, in the workspace create_version made
    ws2 = fake.workspace("6001", "9001")
    assert ws2.id != ws.id and [t["tagId"] for t in ws2.tags.values()] == [t["tagId"] for t in ws.tags.values()]
    assert list(container.versions) == ["1", "2"]
    assert any(m.startswith("updated tag 'Switchyard web tag'") for m in _messages(api, job["id"]))
    assert drain.errors == []

    # AND no token is in any response, log line, DynamoDB item or SQS message
    for path in (f"/jobs/{job['id']}", f"/jobs/{job['id']}/runs", f"/jobs/{job['id']}/logs", "/jobs",
                 f"/authorizations/{auth_id}", "/authorizations", f"/authorizations/{auth_id}/health"):
        bodies.append(api.get(path).body.decode())
    bodies.append(api.post(f"/authorizations/{auth_id}/check").body.decode())
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    items = [json.dumps(i, default=repr) for p in ddb.get_paginator("scan").paginate(
        TableName=deps.table.name) for i in p["Items"]]
    tokens = [t for i in fake.issued for t in (i["access_token"], i.get("refresh_token")) if t]
    assert len(tokens) == 3
    for token in tokens:
        for text in (*bodies, caplog.text, *items, *queue.sent):
            assert token not in text


def test_a_revoked_grant_fails_the_job_at_once_and_marks_the_authorization_unhealthy(
        api, api_for, deps, tenant, drain, google):
    fake = google
    auth_id = connect(api, api_for)
    job = _job(api, auth_id)
    drain.run()
    assert _runs(api, job["id"])[0]["status"] == "succeeded"
    # GIVEN the user removed Switchyard's access in their Google account, and the token expires
    fake.revoke()
    _expire_soon(tenant, auth_id, fake)
    gtm_calls = len([p for _, p in fake.requests if p.startswith("/tagmanager/")])
    # WHEN the next run is delivered
    _fire(deps, tenant, job["id"])
    drain.run()
    # THEN the refresh was refused: the run and the job failed at once, no Tag Manager call made
    run = _runs(api, job["id"])[0]
    assert run["status"] == "failed" and "access was revoked" in run["error"]
    assert "Token has been expired or revoked." in run["error"]
    state = api.get(f"/jobs/{job['id']}").json["data"]
    assert state["status"] == "failed" and state["fault_count"] == 1
    assert len([p for _, p in fake.requests if p.startswith("/tagmanager/")]) == gtm_calls
    # AND the authorization is unhealthy, saying why
    auth = api.get(f"/authorizations/{auth_id}").json["data"]
    assert auth["health"]["status"] == "unhealthy" and "access was revoked" in auth["health"]["reason"]
    # AND "check now" says the same, rather than failing
    r = api.post(f"/authorizations/{auth_id}/check")
    assert r.status_code == 200, r.body
    assert r.json["data"]["status"] == "unhealthy" and "access was revoked" in r.json["data"]["reason"]


def test_the_health_check_refreshes_a_token_near_expiry_and_finds_a_revoked_one(api, api_for, deps, tenant,
                                                                                google):
    from chalicelib.services import health

    fake = google
    auth_id = connect(api, api_for)
    # GIVEN a token about to expire WHEN the daily health check runs
    _expire_soon(tenant, auth_id, fake)
    old = _secret(tenant, auth_id)["access_token"]
    [verdict] = health.check_many(deps, [(tenant.account_id, auth_id)])
    # THEN it refreshed it (new secret version) and the authorization is healthy
    assert verdict.status is not None and verdict.status.value == "healthy", verdict
    assert _secret(tenant, auth_id)["access_token"] != old
    # WHEN the grant is revoked and the token expires again
    fake.revoke()
    _expire_soon(tenant, auth_id, fake)
    [verdict] = health.check_many(deps, [(tenant.account_id, auth_id)])
    # THEN unhealthy, "access revoked", in Google's words
    assert verdict.status is not None and verdict.status.value == "unhealthy"
    assert "access was revoked" in (verdict.reason or "") and "expired or revoked" in (verdict.reason or "")
    assert api.get(f"/authorizations/{auth_id}").json["data"]["health"]["status"] == "unhealthy"


def test_a_401_during_the_run_fails_the_job_and_marks_the_authorization(api, api_for, deps, tenant, drain,
                                                                         google):
    # GIVEN Google answers the run's calls with 401 (the token was revoked mid-life)
    fake = google
    auth_id = connect(api, api_for)
    fake.fail(401, 1, path="/tags")
    job = _job(api, auth_id)
    # WHEN the run is delivered
    drain.run()
    # THEN the job failed at once in Google's words and the authorization is unhealthy
    state = api.get(f"/jobs/{job['id']}").json["data"]
    assert state["status"] == "failed" and "invalid authentication credentials" in state["last_run"]["error"]
    assert fake.container("6001", "9001").versions == {}
    auth = api.get(f"/authorizations/{auth_id}").json["data"]
    assert auth["health"]["status"] == "unhealthy" and "401" in auth["health"]["reason"]
