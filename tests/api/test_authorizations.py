"""SPEC rules 6, 7, 8, 10 and 12 through the HTTP API, on moto."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from chalicelib import config
from chalicelib.domain.statuses import Action
from tests.api.helpers import (
    CANARY,
    create_auth,
    create_job,
    drive,
    make_bucket,
    s3_credentials,
)
from tests.http_receiver import Receiver


def _secrets(prefix: str) -> list[dict]:
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    out = []
    for page in sm.get_paginator("list_secrets").paginate(IncludePlannedDeletion=True):
        out += [s for s in page["SecretList"] if s["Name"].startswith(prefix)]
    return out


def test_create_checks_first_and_returns_no_credentials(api, tenant):
    # GIVEN a bucket the keys can reach
    bucket = make_bucket()
    # WHEN an authorization is created naming it
    r = api.post("/authorizations", {"provider": "amazon_s3", "method": "access_keys", "label": "Prod keys",
                                     "description": "warehouse", "credentials": s3_credentials(bucket=bucket)})
    # THEN it is healthy, reaches the account, and shows a masked hint only
    assert r.status_code == 201, r.body
    data = r.json["data"]
    assert data["health"]["status"] == "healthy"
    assert data["provider_account"] == "123456789012"
    assert data["owner"] == tenant.admin_user_id
    assert data["usage"] == {"total": 0, "by_status": {"running": 0, "sleeping": 0, "paused": 0,
                                                       "failed": 0, "completed": 0}}
    assert "credentials" not in data and CANARY not in r.body.decode()
    assert data["credential_hint"].startswith("AKIA") and "…" in data["credential_hint"]
    # AND the secret lives in Secrets Manager under the account's name
    names = [s["Name"] for s in _secrets(f"switchyard/test/{tenant.account_id}/")]
    assert names == [f"switchyard/test/{tenant.account_id}/{data['id']}"]


def test_failing_check_is_422_with_reason_and_stores_nothing(api, tenant):
    # WHEN the credentials cannot reach the named bucket
    r = api.post("/authorizations", {"provider": "amazon_s3", "method": "access_keys", "label": "x",
                                     "credentials": s3_credentials(bucket="no-such-bucket-here")})
    # THEN 422 with the provider's reason, naming the credentials
    assert r.status_code == 422
    err = r.json["error"]
    assert err["code"] == "authorization.check_failed"
    assert "does not exist" in err["message"] and list(err["fields"]) == ["credentials.bucket"]
    # The class of the problem in words: the keys work, the bucket is wrong.
    assert err["message"].startswith("Amazon S3 accepted these credentials, but bucket")
    assert err["details"]["problem"] == "config"
    # AND nothing was stored: no item, no secret
    assert api.get("/authorizations").json["data"] == []
    assert _secrets(f"switchyard/test/{tenant.account_id}/") == []


def test_unknown_provider_method_and_bad_credentials_name_the_field(api):
    r = api.post("/authorizations", {"provider": "nope", "method": "x", "label": "l", "credentials": {}})
    assert r.status_code == 422 and "provider" in r.json["error"]["fields"]
    r = api.post("/authorizations", {"provider": "amazon_s3", "method": "oauth", "label": "l",
                                     "credentials": {}})
    assert r.status_code == 422 and "method" in r.json["error"]["fields"]
    r = api.post("/authorizations", {"provider": "amazon_s3", "method": "access_keys", "label": "l",
                                     "credentials": {"access_key_id": "AKIA123", "secret_access_key": "short",
                                                     "extra": 1}})
    assert r.status_code == 422
    fields = r.json["error"]["fields"]
    assert {"credentials.access_key_id", "credentials.secret_access_key", "credentials.extra"} <= set(fields)
    assert "short" not in r.body.decode()  # inputs are never echoed back


def test_dashboard_lists_with_filters_and_cursor(api, crm):
    # GIVEN three S3 authorizations and one CRM authorization
    ids = [create_auth(api, label=f"k{i}")["id"] for i in range(3)]
    r = api.post("/authorizations", {"provider": "test_crm", "method": "api_key", "label": "crm",
                                     "credentials": {"api_key": "acct9-key"}})
    assert r.status_code == 201, r.body
    # WHEN paging two at a time
    first = api.get("/authorizations?limit=2")
    second = api.get(f"/authorizations?limit=2&cursor={first.json['next_cursor']}")
    # THEN every row appears once, newest first
    seen = [a["id"] for a in first.json["data"] + second.json["data"]]
    assert len(seen) == 4 and len(set(seen)) == 4
    assert second.json["next_cursor"] is None
    # AND the provider filter keeps only S3 rows
    s3_rows = api.get("/authorizations?provider=amazon_s3").json["data"]
    assert sorted(a["id"] for a in s3_rows) == sorted(ids)
    assert api.get("/authorizations?health=unhealthy").json["data"] == []


def test_summary_lists_jobs_and_usage(api):
    bucket = make_bucket()
    auth = create_auth(api)
    job = create_job(api, auth["id"], bucket)
    staged = create_job(api, auth["id"], bucket, label="staged", start=False)
    r = api.get(f"/authorizations/{auth['id']}")
    assert r.status_code == 200
    data = r.json["data"]
    assert {j["id"] for j in data["jobs"]} == {job["id"], staged["id"]}
    assert data["usage"]["by_status"]["sleeping"] == 1 and data["usage"]["by_status"]["paused"] == 1
    assert data["usage"]["total"] == 2 and data["last_used_at"]
    assert data["version"] == 1


def test_edit_label_and_description_only(api):
    auth = create_auth(api)
    r = api.patch(f"/authorizations/{auth['id']}", {"label": "Renamed", "description": "new"})
    assert r.status_code == 200, r.body
    assert r.json["data"]["label"] == "Renamed" and r.json["data"]["version"] == 2
    r = api.patch(f"/authorizations/{auth['id']}", {"method": "assume_role"})
    assert r.status_code == 422 and r.json["error"]["fields"] == {"method": "unknown field"}
    r = api.patch(f"/authorizations/{auth['id']}", {"label": "stale", "version": 1})
    assert r.status_code == 409 and r.json["error"]["code"] == "conflict.stale_version"
    assert api.get(f"/authorizations/{auth['id']}").json["data"]["label"] == "Renamed"


def test_rotation_verifies_then_writes_a_new_secret_version(api, tenant):
    # GIVEN an authorization used by a job on a bucket
    bucket = make_bucket()
    auth = create_auth(api)
    create_job(api, auth["id"], bucket)
    name = f"switchyard/test/{tenant.account_id}/{auth['id']}"
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    before = sm.get_secret_value(SecretId=name)["VersionId"]
    # WHEN rotating to new keys
    new = s3_credentials(secret="rotated-secret-value-123")
    r = api.put(f"/authorizations/{auth['id']}/credentials", {"credentials": new})
    # THEN a new current version holds them and the hint follows
    assert r.status_code == 200, r.body
    current = sm.get_secret_value(SecretId=name)
    assert current["VersionId"] != before and "rotated-secret-value-123" in current["SecretString"]
    assert r.json["data"]["credential_hint"].endswith(new["access_key_id"][-4:])
    assert "rotated-secret-value-123" not in r.body.decode()


def test_rotation_refused_when_new_credentials_fail(api, tenant, crm):
    r = api.post("/authorizations", {"provider": "test_crm", "method": "api_key", "label": "crm",
                                     "credentials": {"api_key": "acct1-good"}})
    auth_id = r.json["data"]["id"]
    name = f"switchyard/test/{tenant.account_id}/{auth_id}"
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    before = sm.get_secret_value(SecretId=name)["VersionId"]
    r = api.put(f"/authorizations/{auth_id}/credentials", {"credentials": {"api_key": "bad-key"}})
    assert r.status_code == 422 and "revoked" in r.json["error"]["message"]
    r = api.put(f"/authorizations/{auth_id}/credentials", {"credentials": {"api_key": "acct2-other"}})
    assert r.status_code == 422 and r.json["error"]["code"] == "authorization.other_account"
    assert sm.get_secret_value(SecretId=name)["VersionId"] == before


def test_check_now_updates_health(api):
    auth = create_auth(api)
    r = api.post(f"/authorizations/{auth['id']}/check")
    assert r.status_code == 200
    assert r.json["data"]["status"] == "healthy" and r.json["data"]["checked_at"]


def test_unverifiable_method_is_unknown(api, crm):
    r = api.post("/authorizations", {"provider": "test_crm", "method": "bearer", "label": "b",
                                     "credentials": {"token": "tkn-1234"}})
    assert r.status_code == 201, r.body
    assert r.json["data"]["health"]["status"] == "unknown"


def test_delete_refused_by_paused_job_allowed_once_failed_or_completed(api, deps, tenant):
    # GIVEN an authorization with one paused and one sleeping job
    bucket = make_bucket()
    auth = create_auth(api)
    paused = create_job(api, auth["id"], bucket, label="paused", start=False)
    other = create_job(api, auth["id"], bucket, label="other")
    # WHEN deleting it
    r = api.delete(f"/authorizations/{auth['id']}")
    # THEN 409 names both blocking jobs
    assert r.status_code == 409
    assert r.json["error"]["code"] == "authorization.in_use"
    blocking = {j["id"]: j["status"] for j in r.json["error"]["details"]["blocking_jobs"]}
    assert blocking == {paused["id"]: "paused", other["id"]: "sleeping"}
    # WHEN one job fails and the other completes (engine transitions)
    drive(deps, tenant.account_id, paused["id"], Action.RESUME, Action.RUN_FAILED)
    drive(deps, tenant.account_id, other["id"], Action.RUN_STARTED, Action.RUN_FINISHED_ONCE)
    # THEN the delete goes through and the secret is scheduled for deletion
    r = api.delete(f"/authorizations/{auth['id']}")
    assert r.status_code == 204, r.body
    assert api.get(f"/authorizations/{auth['id']}").status_code == 404
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    desc = sm.describe_secret(SecretId=f"switchyard/test/{tenant.account_id}/{auth['id']}")
    assert desc.get("DeletedDate") is not None
    # AND the failed job keeps a readable reference, and cannot be resumed on it
    job = api.get(f"/jobs/{paused['id']}").json["data"]
    assert job["status"] == "failed"
    assert job["authorization"] == {"id": auth["id"], "label": "S3 keys", "health": None, "deleted": True}
    r = api.post(f"/jobs/{paused['id']}/resume")
    assert r.status_code == 409 and r.json["error"]["code"] == "job.authorization_deleted"
    # AND the completed job can still be deleted
    assert api.delete(f"/jobs/{other['id']}").status_code == 204


def test_delete_unknown_is_404(api):
    r = api.delete("/authorizations/auth_nope")
    assert r.status_code == 404 and r.json["error"]["code"] == "authorization.not_found"


def test_provider_outage_during_check_is_503_and_stores_nothing(api, tenant, crm):
    # WHEN the provider cannot answer the check (transient)
    r = api.post("/authorizations", {"provider": "test_crm", "method": "api_key", "label": "crm",
                                     "credentials": {"api_key": "flaky-key"}})
    # THEN 503, nothing concluded, nothing stored
    assert r.status_code == 503 and r.json["error"]["code"] == "provider.unavailable"
    assert api.get("/authorizations").json["data"] == []
    assert _secrets(f"switchyard/test/{tenant.account_id}/") == []


def test_activity_counts_the_api_requests_made_with_it(api, api_for, new_tenant, tenant, deps):
    # GIVEN keys that reach a bucket: the create checks them (GetCallerIdentity, HeadBucket)
    bucket = make_bucket()
    auth = api.post("/authorizations", {"provider": "amazon_s3", "method": "access_keys", "label": "k",
                                        "credentials": s3_credentials(bucket=bucket)}).json["data"]
    # WHEN it is checked again (2), lists buckets (1), browses a missing bucket (1, failed),
    # and a job is created on it (its bucket is checked: 2)
    assert api.post(f"/authorizations/{auth['id']}/check").status_code == 200
    base = "/providers/amazon_s3/workflows/s3_file_import/options"
    assert api.get(f"{base}/bucket?authorization_id={auth['id']}").status_code == 200
    assert api.get(f"{base}/prefix?authorization_id={auth['id']}&bucket=sy-missing-x1").status_code == 422
    create_job(api, auth["id"], bucket)
    # THEN the last hour (or two, at a turn of the hour) shows 8 requests, 1 of which
    # failed, and the day and week series agree
    hours = api.get(f"/authorizations/{auth['id']}/activity?granularity=hour").json["data"]
    assert hours["granularity"] == "hour" and len(hours["series"]) == 48
    assert [(p["api_requests"], p["errors"]) for p in hours["series"][:-2]] == [(0, 0)] * 46
    assert sum(p["api_requests"] for p in hours["series"]) == 8
    assert sum(p["errors"] for p in hours["series"]) == 1
    assert hours["series"][-1]["start"].endswith(":00:00Z")
    for granularity, points in (("day", {30}), ("week", {12, 13})):
        series = api.get(f"/authorizations/{auth['id']}/activity?granularity={granularity}").json["data"]["series"]
        assert len(series) in points
        assert (sum(p["api_requests"] for p in series), sum(p["errors"] for p in series)) == (8, 1)
        assert series[-1]["start"].endswith("T00:00:00Z")
    # AND they are hourly items only (one write per API call, no daily copies), with a TTL
    items = deps.table.client.query(
        TableName=deps.table.name, KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": {"S": f"ACCT#{tenant.account_id}#AUTH#{auth['id']}#ACT"}})["Items"]
    assert items and all(i["SK"]["S"].startswith("H#") and "expires_at" in i for i in items)
    assert sum(int(i["requests"]["N"]) for i in items) == 8
    # AND another account gets 404, and a bad granularity is refused naming the field
    other = api_for(new_tenant("Globex").admin_token)
    assert other.get(f"/authorizations/{auth['id']}/activity").status_code == 404
    r = api.get(f"/authorizations/{auth['id']}/activity?granularity=month")
    assert r.status_code == 400 and "granularity" in r.json["error"]["fields"]


def test_delete_refused_while_a_job_using_it_is_running(api, deps, tenant):
    # GIVEN a job with a run in progress (the engine's transition: sleeping -> running)
    bucket = make_bucket()
    auth = create_auth(api)
    job = create_job(api, auth["id"], bucket, label="busy")
    drive(deps, tenant.account_id, job["id"], Action.RUN_STARTED)
    assert api.get(f"/jobs/{job['id']}").json["data"]["status"] == "running"
    assert api.get(f"/authorizations/{auth['id']}").json["data"]["usage"]["by_status"]["running"] == 1
    # WHEN deleting its authorization
    r = api.delete(f"/authorizations/{auth['id']}")
    # THEN 409 names the running job, and nothing was lost: item and secret are there
    assert r.status_code == 409, r.body
    assert r.json["error"]["code"] == "authorization.in_use"
    assert r.json["error"]["details"]["blocking_jobs"] == [{"id": job["id"], "label": "busy", "status": "running"}]
    assert api.get(f"/authorizations/{auth['id']}").status_code == 200
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    desc = sm.describe_secret(SecretId=f"switchyard/test/{tenant.account_id}/{auth['id']}")
    assert desc.get("DeletedDate") is None


def test_delete_schedules_the_secret_with_a_7_day_recovery_window(api, tenant):
    # GIVEN an unused authorization
    auth = create_auth(api)
    # WHEN it is deleted
    before = datetime.now(UTC)
    assert api.delete(f"/authorizations/{auth['id']}").status_code == 204
    # THEN its secret is scheduled for deletion 7 days from now, still recoverable meanwhile
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    desc = sm.describe_secret(SecretId=f"switchyard/test/{tenant.account_id}/{auth['id']}")
    assert abs(desc["DeletedDate"] - (before + timedelta(days=7))) < timedelta(minutes=5), desc["DeletedDate"]


def test_the_health_filter_returns_exactly_the_unhealthy_ones(api, deps, tenant):
    from chalicelib.providers.registry import Registry
    from tests.api.test_health import Probe

    # GIVEN four authorizations whose checks pass, two of whose keys then get revoked
    probe = Probe()
    deps.registry = Registry(extra={"test_probe": probe})
    ids = {}
    for key in ("k-ok-1", "k-ok-2", "k-bad-1", "k-bad-2"):
        r = api.post("/authorizations", {"provider": "test_probe", "method": "api_key", "label": key,
                                         "credentials": {"api_key": key + "-" + tenant.account_id[-6:]}})
        assert r.status_code == 201, r.body
        ids[key] = r.json["data"]["id"]
        probe.modes[key + "-" + tenant.account_id[-6:]] = "bad" if "bad" in key else "ok"
    # WHEN each is checked now
    for auth_id in ids.values():
        assert api.post(f"/authorizations/{auth_id}/check").status_code == 200
    # THEN ?health= returns exactly the matching rows, also with the provider filter
    def listed(query: str) -> set[str]:
        r = api.get(f"/authorizations?{query}")
        assert r.status_code == 200, r.body
        return {a["id"] for a in r.json["data"]}

    assert listed("health=unhealthy") == {ids["k-bad-1"], ids["k-bad-2"]}
    assert listed("health=healthy") == {ids["k-ok-1"], ids["k-ok-2"]}
    assert listed("health=unhealthy&provider=test_probe") == {ids["k-bad-1"], ids["k-bad-2"]}
    assert listed("health=unhealthy&provider=amazon_s3") == set()
    # AND paging one at a time walks the same two
    first = api.get("/authorizations?health=unhealthy&limit=1").json
    second = api.get(f"/authorizations?health=unhealthy&limit=1&cursor={first['next_cursor']}").json
    assert {a["id"] for a in first["data"] + second["data"]} == {ids["k-bad-1"], ids["k-bad-2"]}
    r = api.get("/authorizations?health=sick")
    assert r.status_code == 400 and "health" in r.json["error"]["fields"]


def _age_last_used(deps, tenant, auth_id: str) -> str:
    old = "2020-01-01T00:00:00Z"
    deps.table.client.update_item(
        TableName=deps.table.name,
        Key={"PK": {"S": f"ACCT#{tenant.account_id}"}, "SK": {"S": f"AUTH#{auth_id}"}},
        UpdateExpression="SET last_used_at = :o", ExpressionAttributeValues={":o": {"S": old}})
    return old


def test_last_used_moves_when_the_credentials_are_used_for_a_check_or_options(api, deps, tenant):
    # GIVEN an authorization last used long ago
    bucket = make_bucket()
    auth = api.post("/authorizations", {"provider": "amazon_s3", "method": "access_keys", "label": "k",
                                        "credentials": s3_credentials(bucket=bucket)}).json["data"]
    start = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def last_used() -> str:
        return str(api.get(f"/authorizations/{auth['id']}").json["data"]["last_used_at"])

    old = _age_last_used(deps, tenant, auth["id"])
    assert last_used() == old
    # WHEN it is checked now THEN it was used now
    assert api.post(f"/authorizations/{auth['id']}/check").status_code == 200
    assert last_used() >= start
    # WHEN the wizard lists buckets through it THEN too
    _age_last_used(deps, tenant, auth["id"])
    base = "/providers/amazon_s3/workflows/s3_file_import/options"
    assert api.get(f"{base}/bucket?authorization_id={auth['id']}").status_code == 200
    assert last_used() >= start
    # AND a metadata edit is not a use
    _age_last_used(deps, tenant, auth["id"])
    assert api.patch(f"/authorizations/{auth['id']}", {"label": "k2"}).status_code == 200
    assert last_used() == old



@pytest.fixture()
def reachable_receiver() -> Iterator[Receiver]:
    # A receiver on 127.0.0.1 over http, allowed only with this (test/local) setting, so the
    # save reaches the code that builds the request headers. Flipped on the cached settings:
    # Chalice's test client would re-read its own stage's variables.
    conf = config.settings()
    object.__setattr__(conf, "allow_private_urls", True)
    with Receiver() as r:
        yield r
    object.__setattr__(conf, "allow_private_urls", False)


@pytest.mark.parametrize("token", ["tok-1234\r\nX-Injected: 1", "tok-1234\nmore", "tok-1234\x00", "tok 1234"])
def test_a_webhook_bearer_token_with_a_line_break_or_control_character_is_422_naming_it(
        api, reachable_receiver, token):
    url = reachable_receiver.url("/in")
    # GIVEN a positive control: a plain token to the same receiver is saved (and pinged)
    good = api.post("/authorizations", {"provider": "webhook", "method": "bearer", "label": "good",
                                        "credentials": {"url": url, "token": "tok-1234-plain"}})
    assert good.status_code == 201, good.body
    pinged = len(reachable_receiver.requests)
    assert pinged == 1
    # WHEN a bearer token that cannot go into an HTTP header as it is gets saved
    r = api.post("/authorizations", {"provider": "webhook", "method": "bearer", "label": "hook",
                                     "credentials": {"url": url, "token": token}})
    # THEN 422 names the field (never a 500), nothing was sent and nothing created
    assert r.status_code == 422, r.body
    assert "credentials.token" in r.json["error"]["fields"], r.body
    assert token.encode() not in r.body
    assert "line breaks" in r.json["error"]["fields"]["credentials.token"]
    assert len(reachable_receiver.requests) == pinged
    assert [a["label"] for a in api.get("/authorizations").json["data"]] == ["good"]
