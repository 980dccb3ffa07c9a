"""SPEC rules 2, 3, 4 and 9 through the HTTP API, on moto."""

from __future__ import annotations

import json

import boto3

from tests.api.helpers import create_auth, create_job, create_role_auth, make_bucket, s3_credentials


def _run_messages() -> list[dict]:
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.get_queue_url(QueueName="switchyard-test-runs")["QueueUrl"]
    out = []
    while True:
        resp = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        msgs = resp.get("Messages", [])
        if not msgs:
            return out
        for m in msgs:
            out.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def test_create_with_existing_authorization_starts_it(api, tenant):
    # GIVEN an authorization and a bucket
    bucket = make_bucket()
    auth = create_auth(api)
    _run_messages()
    # WHEN creating an import job
    job = create_job(api, auth["id"], bucket, description="nightly",
                     schedule={"type": "daily", "at": "02:30", "timezone": "Europe/Paris"})
    # THEN it waits for its first run, which is queued
    assert job["status"] == "sleeping" and job["next_run_at"]
    assert job["config"]["bucket"] == bucket and job["config"]["format"] == "csv"
    assert job["schedule"] == {"type": "daily", "at": "02:30", "timezone": "Europe/Paris", "quiet_hours": None}
    assert job["authorization"]["id"] == auth["id"] and job["authorization"]["health"]["status"] == "healthy"
    assert job["owner"] == tenant.admin_user_id and job["version"] == 1
    msgs = [m for m in _run_messages() if m["job_id"] == job["id"]]
    assert msgs and msgs[0]["trigger"] == "create" and msgs[0]["account_id"] == tenant.account_id


def test_staged_job_is_paused_and_not_queued(api):
    bucket = make_bucket()
    auth = create_auth(api)
    _run_messages()
    job = create_job(api, auth["id"], bucket, start=False)
    assert job["status"] == "paused" and job["next_run_at"] is None
    assert not [m for m in _run_messages() if m["job_id"] == job["id"]]


def test_inline_authorization_is_created_in_the_same_request(api):
    bucket = make_bucket()
    r = api.post("/jobs", {"provider": "amazon_s3", "job_type": "import", "workflow": "s3_file_import",
                           "label": "inline", "config": {"bucket": bucket},
                           "authorization": {"method": "access_keys", "label": "new keys",
                                             "credentials": s3_credentials()}})
    assert r.status_code == 201, r.body
    job = r.json["data"]
    auth = api.get(f"/authorizations/{job['authorization_id']}").json["data"]
    assert auth["label"] == "new keys" and auth["usage"]["by_status"]["sleeping"] == 1
    assert [j["id"] for j in auth["jobs"]] == [job["id"]]


def test_inline_authorization_failing_check_stores_nothing(api):
    r = api.post("/jobs", {"provider": "amazon_s3", "job_type": "import", "workflow": "s3_file_import",
                           "label": "inline", "config": {"bucket": "bucket-that-is-missing"},
                           "authorization": {"method": "access_keys", "label": "k",
                                             "credentials": s3_credentials()}})
    assert r.status_code == 422
    assert r.json["error"]["code"] == "authorization.check_failed"
    # The keys were accepted: the bucket of the configuration is at fault, and marked.
    assert list(r.json["error"]["fields"]) == ["config.bucket"], r.json
    assert r.json["error"]["message"].startswith("Amazon S3 accepted these credentials, but ")
    assert api.get("/jobs").json["data"] == [] and api.get("/authorizations").json["data"] == []


def test_wizard_rules_name_the_field(api, crm):
    bucket = make_bucket()
    auth = create_auth(api)
    base = {"provider": "amazon_s3", "job_type": "import", "workflow": "s3_file_import",
            "authorization_id": auth["id"], "label": "j", "config": {"bucket": bucket}}
    cases = [
        ({"job_type": "custom"}, "job.unknown_job_type", "job_type"),
        ({"job_type": "enrichment"}, "job.unsupported_job_type", "job_type"),
        ({"workflow": "nope"}, "job.unknown_workflow", "workflow"),
        ({"job_type": "export"}, "job.workflow_job_type_mismatch", "workflow"),
        ({"provider": "nope"}, "provider.unknown", "provider"),
        ({"config": {"bucket": "Bad_Bucket!"}}, "validation.invalid", "config.bucket"),
        ({"config": {"bucket": bucket, "colour": "red"}}, "validation.invalid", "config.colour"),
        ({"config": {}}, "validation.invalid", "config.bucket"),
        ({"config": {"bucket": "not-a-real-bucket"}}, "job.config_unreachable", "config.bucket"),
        ({"authorization_id": "auth_missing"}, "authorization.not_found", "authorization_id"),
        ({"schedule": {"type": "daily", "at": "25:00"}}, "validation.invalid", "schedule.daily.at"),
        ({"schedule": {"type": "interval", "every_minutes": 10, "timezone": "Mars/Olympus"}},
         "validation.invalid", "schedule.interval.timezone"),
    ]
    for change, code, field in cases:
        r = api.post("/jobs", {**base, **change})
        assert r.status_code == 422, (change, r.body)
        assert r.json["error"]["code"] == code, (change, r.json)
        assert field in r.json["error"]["fields"], (change, r.json)
    # AND none of them stored anything
    assert api.get("/jobs").json["data"] == []


def test_method_must_enable_the_workflow(api, crm):
    # GIVEN a bearer-token authorization, which enables real-time export only
    r = api.post("/authorizations", {"provider": "test_crm", "method": "bearer", "label": "b",
                                     "credentials": {"token": "tkn-1234"}})
    bearer = r.json["data"]
    base = {"provider": "test_crm", "job_type": "export", "label": "x", "config": {"list_id": "l1"}}
    # WHEN used for bulk export (existing or inline) THEN refused, naming the field
    r = api.post("/jobs", {**base, "workflow": "bulk_export", "authorization_id": bearer["id"]})
    assert r.status_code == 422 and r.json["error"]["code"] == "authorization.method_not_enabled"
    assert "authorization_id" in r.json["error"]["fields"]
    r = api.post("/jobs", {**base, "workflow": "bulk_export",
                           "authorization": {"method": "bearer", "label": "b2", "credentials": {"token": "abcd"}}})
    assert r.status_code == 422 and "authorization.method" in r.json["error"]["fields"]
    # AND an authorization of another provider is refused too
    s3 = create_auth(api)
    r = api.post("/jobs", {**base, "workflow": "realtime_export", "authorization_id": s3["id"]})
    assert r.status_code == 422 and r.json["error"]["code"] == "authorization.wrong_provider"


def test_exactly_one_authorization_source(api):
    bucket = make_bucket()
    auth = create_auth(api)
    body = {"provider": "amazon_s3", "job_type": "import", "workflow": "s3_file_import", "label": "j",
            "config": {"bucket": bucket}}
    assert api.post("/jobs", body).status_code == 422
    both = {**body, "authorization_id": auth["id"],
            "authorization": {"method": "access_keys", "label": "k", "credentials": s3_credentials()}}
    assert api.post("/jobs", both).status_code == 422


def test_edit_mutable_fields_with_version(api):
    bucket, other_bucket = make_bucket(), make_bucket()
    auth = create_auth(api)
    job = create_job(api, auth["id"], bucket)
    r = api.patch(f"/jobs/{job['id']}", {"label": "Renamed", "description": "d",
                                         "config": {"prefix": "imports/", "bucket": other_bucket},
                                         "schedule": {"type": "interval", "every_minutes": 60}},
                  headers={"If-Match": "1"})
    assert r.status_code == 200, r.body
    data = r.json["data"]
    assert data["label"] == "Renamed" and data["config"]["bucket"] == other_bucket
    assert data["config"]["prefix"] == "imports/" and data["version"] == 2
    assert data["schedule"]["every_minutes"] == 60
    # a stale version is refused and changes nothing
    r = api.patch(f"/jobs/{job['id']}", {"label": "Stale", "version": 1})
    assert r.status_code == 409 and r.json["error"]["code"] == "conflict.stale_version"
    # a missing version is refused
    r = api.patch(f"/jobs/{job['id']}", {"label": "No version"})
    assert r.status_code == 422 and "version" in r.json["error"]["fields"]
    # a config the authorization cannot reach is refused
    r = api.patch(f"/jobs/{job['id']}", {"config": {"bucket": "gone-bucket-x"}, "version": 2})
    assert r.status_code == 422 and r.json["error"]["code"] == "job.config_unreachable"
    assert api.get(f"/jobs/{job['id']}").json["data"]["label"] == "Renamed"


def test_provider_job_type_workflow_are_immutable(api):
    bucket = make_bucket()
    job = create_job(api, create_auth(api)["id"], bucket)
    for change in ({"provider": "test_crm"}, {"job_type": "export"}, {"workflow": "s3_audience_export"},
                   {"provider": "amazon_s3", "job_type": "import", "label": "x"}):
        r = api.patch(f"/jobs/{job['id']}", {**change, "version": 1})
        assert r.status_code == 422
        err = r.json["error"]
        assert err["code"] == "job.immutable_field"
        assert "create a new job" in err["message"]
        for k in change:
            if k in ("provider", "job_type", "workflow"):
                assert err["fields"][k] == "cannot be changed; create a new job"
    assert api.get(f"/jobs/{job['id']}").json["data"]["version"] == 1


def test_change_authorization_same_account_moves_usage(api):
    bucket = make_bucket()
    a1, a2 = create_auth(api, label="one"), create_auth(api, label="two")
    job = create_job(api, a1["id"], bucket)
    r = api.patch(f"/jobs/{job['id']}", {"authorization_id": a2["id"], "version": 1})
    assert r.status_code == 200, r.body
    assert r.json["data"]["authorization"]["id"] == a2["id"]
    u1 = api.get(f"/authorizations/{a1['id']}").json["data"]
    u2 = api.get(f"/authorizations/{a2['id']}").json["data"]
    assert u1["usage"]["total"] == 0 and u2["usage"]["by_status"]["sleeping"] == 1
    assert [j["id"] for j in u2["jobs"]] == [job["id"]] and u1["jobs"] == []
    # the old one can now be deleted
    assert api.delete(f"/authorizations/{a1['id']}").status_code == 204


def test_change_authorization_to_another_provider_account_is_refused(api):
    # GIVEN a job on account 123456789012 and a role authorization into 210987654321
    bucket = make_bucket()
    job = create_job(api, create_auth(api)["id"], bucket)
    other = create_role_auth(api, "210987654321")
    assert other["provider_account"] == "210987654321"
    # WHEN a dry run is asked THEN it says what would break and changes nothing
    r = api.patch(f"/jobs/{job['id']}?dry_run=true", {"authorization_id": other["id"], "version": 1})
    assert r.status_code == 200, r.body
    preview = r.json["data"]
    assert preview["dry_run"] is True and preview["allowed"] is False
    assert any("210987654321" in p for p in preview["problems"])
    assert api.get(f"/jobs/{job['id']}").json["data"]["authorization_id"] != other["id"]
    # WHEN applied THEN refused with the reason
    r = api.patch(f"/jobs/{job['id']}", {"authorization_id": other["id"], "version": 1})
    assert r.status_code == 422
    assert r.json["error"]["code"] == "job.authorization_incompatible"
    assert "210987654321" in r.json["error"]["message"]
    assert api.get(f"/authorizations/{other['id']}").json["data"]["usage"]["total"] == 0


def test_change_authorization_to_another_provider_is_refused(api, crm):
    bucket = make_bucket()
    job = create_job(api, create_auth(api)["id"], bucket)
    r = api.post("/authorizations", {"provider": "test_crm", "method": "api_key", "label": "crm",
                                     "credentials": {"api_key": "acct1-good"}})
    r = api.patch(f"/jobs/{job['id']}", {"authorization_id": r.json["data"]["id"], "version": 1})
    assert r.status_code == 422 and "provider" in r.json["error"]["message"]


def test_actions_follow_the_transition_table(api):
    bucket = make_bucket()
    job = create_job(api, create_auth(api)["id"], bucket)
    jid = job["id"]
    assert api.post(f"/jobs/{jid}/run").json["data"]["status"] == "sleeping"
    r = api.post(f"/jobs/{jid}/pause")
    assert r.status_code == 200 and r.json["data"]["status"] == "paused"
    r = api.post(f"/jobs/{jid}/pause")
    assert r.status_code == 409 and r.json["error"]["details"]["status"] == "paused"
    r = api.post(f"/jobs/{jid}/run")
    assert r.status_code == 409 and r.json["error"]["code"] == "job.illegal_transition"
    r = api.post(f"/jobs/{jid}/resume")
    assert r.status_code == 200 and r.json["data"]["status"] == "sleeping"
    r = api.post(f"/jobs/{jid}/resume")
    assert r.status_code == 409 and r.json["error"]["details"]["status"] == "sleeping"


def test_a_one_time_job_with_a_start_time_ahead_waits_for_it(api):
    # GIVEN a one-time job whose start time is ahead, and one without a start time (the control)
    bucket = make_bucket()
    auth = create_auth(api)
    _run_messages()
    later = create_job(api, auth["id"], bucket, schedule={"type": "once", "at": "2099-01-01T09:00:00Z"})
    now = create_job(api, auth["id"], bucket, schedule={"type": "once", "at": None})
    # THEN only the job without a start time has a run queued; the other sleeps until its time
    assert later["status"] == "sleeping" and later["next_run_at"] == "2099-01-01T09:00:00Z"
    assert [m["trigger"] for m in _run_messages() if m["job_id"] in (later["id"], now["id"])] == ["create"]
    # WHEN it is paused and resumed, THEN it goes back to waiting for its time, no run queued
    jid = later["id"]
    assert api.post(f"/jobs/{jid}/pause").json["data"]["next_run_at"] is None
    resumed = api.post(f"/jobs/{jid}/resume").json["data"]
    assert resumed["status"] == "sleeping" and resumed["next_run_at"] == "2099-01-01T09:00:00Z"
    assert not [m for m in _run_messages() if m["job_id"] == jid]
    # WHEN asked to run now, THEN a run is queued at once
    assert api.post(f"/jobs/{jid}/run").json["data"]["status"] == "sleeping"
    assert [m["trigger"] for m in _run_messages() if m["job_id"] == jid] == ["run"]


def test_delete_job_releases_the_authorization(api):
    bucket = make_bucket()
    auth = create_auth(api)
    job = create_job(api, auth["id"], bucket)
    assert api.delete(f"/jobs/{job['id']}").status_code == 204
    assert api.get(f"/jobs/{job['id']}").status_code == 404
    assert api.get(f"/authorizations/{auth['id']}").json["data"]["usage"]["total"] == 0
    assert api.delete(f"/authorizations/{auth['id']}").status_code == 204


def test_dashboard_filters_and_paging(api):
    bucket = make_bucket()
    a1, a2 = create_auth(api), create_auth(api)
    made = [create_job(api, a1["id"], bucket, label=f"j{i}") for i in range(3)]
    staged = create_job(api, a2["id"], bucket, label="staged", start=False)
    ids = []
    cursor = None
    while True:
        q = "/jobs?limit=2" + (f"&cursor={cursor}" if cursor else "")
        r = api.get(q)
        assert r.status_code == 200
        ids += [j["id"] for j in r.json["data"]]
        cursor = r.json["next_cursor"]
        if not cursor:
            break
    assert ids == [staged["id"]] + [j["id"] for j in reversed(made)]  # newest first
    assert [j["id"] for j in api.get("/jobs?status=paused").json["data"]] == [staged["id"]]
    assert len(api.get("/jobs?status=sleeping&limit=1").json["data"]) == 1
    assert [j["id"] for j in api.get(f"/jobs?authorization_id={a2['id']}").json["data"]] == [staged["id"]]
    assert len(api.get("/jobs?provider=amazon_s3&job_type=import").json["data"]) == 4
    assert api.get("/jobs?job_type=export").json["data"] == []
    r = api.get("/jobs?status=exploded")
    assert r.status_code == 400 and "status" in r.json["error"]["fields"]


def test_a_new_job_has_history_of_its_creation_only(api, tenant):
    bucket = make_bucket()
    job = create_job(api, create_auth(api)["id"], bucket)
    assert api.get(f"/jobs/{job['id']}/runs").json == {"data": [], "next_cursor": None}
    [line] = api.get(f"/jobs/{job['id']}/logs").json["data"]
    assert line["code"] == "job.created" and line["user"] == tenant.admin_user_id
    assert api.get(f"/jobs/{job['id']}/logs?level=error").json["data"] == []
    api.post(f"/jobs/{job['id']}/pause")
    codes = [ln["code"] for ln in api.get(f"/jobs/{job['id']}/logs").json["data"]]
    assert codes == ["job.pause", "job.created"]
    r = api.get(f"/jobs/{job['id']}/activity?granularity=week")
    series = r.json["data"]["series"]
    assert r.json["data"]["granularity"] == "week" and len(series) in (12, 13)
    assert all(p["added"] == p["removed"] == p["omitted"] == 0 for p in series)
    assert len(api.get(f"/jobs/{job['id']}/activity?granularity=hour").json["data"]["series"]) == 48
    assert api.get("/jobs/job_missing/runs").status_code == 404


def _crm_job(api, *, key: str = "crm1-key", label: str = "CRM export", workflow: str = "bulk_export") -> dict:
    auth = api.post("/authorizations", {"provider": "test_crm", "method": "api_key", "label": "crm",
                                        "credentials": {"api_key": key}})
    assert auth.status_code == 201, auth.body
    r = api.post("/jobs", {"provider": "test_crm", "job_type": "export", "workflow": workflow, "label": label,
                           "authorization_id": auth.json["data"]["id"], "config": {"list_id": "l1"},
                           "start": False})
    assert r.status_code == 201, r.body
    return dict(r.json["data"])


def test_the_provider_filter_keeps_only_that_providers_jobs(api, crm):
    # GIVEN jobs of two providers
    bucket = make_bucket()
    s3_jobs = {create_job(api, create_auth(api)["id"], bucket, label=f"s3-{i}")["id"] for i in range(2)}
    crm_job = _crm_job(api)
    # WHEN filtered by provider THEN each filter returns its provider's jobs only
    assert {j["id"] for j in api.get("/jobs?provider=amazon_s3").json["data"]} == s3_jobs
    assert [j["id"] for j in api.get("/jobs?provider=test_crm").json["data"]] == [crm_job["id"]]
    assert [j["id"] for j in api.get("/jobs?provider=test_crm&job_type=export").json["data"]] == [crm_job["id"]]
    assert api.get("/jobs?provider=test_crm&job_type=import").json["data"] == []
    assert api.get("/jobs?provider=mailchimp").json["data"] == []
    # AND paging within a provider walks only its jobs
    first = api.get("/jobs?provider=amazon_s3&limit=1").json
    second = api.get(f"/jobs?provider=amazon_s3&limit=1&cursor={first['next_cursor']}").json
    assert {j["id"] for j in first["data"] + second["data"]} == s3_jobs


def _unchanged(api, job: dict, *auth_ids: str) -> None:
    now = api.get(f"/jobs/{job['id']}").json["data"]
    assert (now["authorization_id"], now["version"]) == (job["authorization_id"], job["version"])
    for auth_id in auth_ids:
        assert api.get(f"/authorizations/{auth_id}").json["data"]["usage"]["total"] == 0
    assert [e["action"] for e in api.get(f"/audit?object_id={job['id']}").json["data"]] == ["created"]


def test_patch_refuses_an_authorization_whose_method_does_not_enable_the_workflow(api, crm):
    # GIVEN a bulk export job, and a bearer-token authorization (real-time export only)
    job = _crm_job(api)
    r = api.post("/authorizations", {"provider": "test_crm", "method": "bearer", "label": "b",
                                     "credentials": {"token": "tkn-1234"}})
    bearer = r.json["data"]["id"]
    # WHEN a dry run asks THEN it says why, and changes nothing
    r = api.patch(f"/jobs/{job['id']}?dry_run=true", {"authorization_id": bearer, "version": job["version"]})
    assert r.status_code == 200, r.body
    assert r.json["data"]["allowed"] is False
    assert any("'bearer' does not enable workflow 'bulk_export'" in p for p in r.json["data"]["problems"])
    _unchanged(api, job, bearer)
    # WHEN applied THEN refused with that reason, and nothing changed
    r = api.patch(f"/jobs/{job['id']}", {"authorization_id": bearer, "version": job["version"]})
    assert r.status_code == 422 and r.json["error"]["code"] == "job.authorization_incompatible"
    assert "does not enable workflow 'bulk_export'" in r.json["error"]["message"]
    assert "authorization_id" in r.json["error"]["fields"]
    _unchanged(api, job, bearer)


def test_patch_refuses_an_authorization_of_the_same_account_that_cannot_reach_the_list(api, fake_mailchimp):
    # GIVEN a Mailchimp import on list L1 through key A, and two keys of the same account:
    # B sees only list L2, C sees every list
    fake = fake_mailchimp
    fake.add_list("L1", "Newsletter")
    fake.add_list("L2", "Other")
    key_b, key_c = fake.new_api_key(), fake.new_api_key()
    fake.scope(key_b, {"L2"})

    def auth(key: str, label: str) -> str:
        r = api.post("/authorizations", {"provider": "mailchimp", "method": "api_key", "label": label,
                                         "credentials": {"api_key": key}})
        assert r.status_code == 201, r.body
        assert r.json["data"]["provider_account"] == fake.account_id
        return str(r.json["data"]["id"])

    a, b, c = auth(fake.new_api_key(), "A"), auth(key_b, "B"), auth(key_c, "C")
    r = api.post("/jobs", {"provider": "mailchimp", "job_type": "import", "workflow": "mailchimp_import",
                           "authorization_id": a, "label": "Newsletter in", "config": {"list_id": "L1"},
                           "start": False})
    assert r.status_code == 201, r.body
    job = r.json["data"]
    # WHEN a dry run asks for B THEN it says B cannot reach L1, and nothing changes
    r = api.patch(f"/jobs/{job['id']}?dry_run=true", {"authorization_id": b, "version": job["version"]})
    assert r.status_code == 200, r.body
    assert r.json["data"]["allowed"] is False
    [problem] = r.json["data"]["problems"]
    assert "cannot reach" in problem and "'L1'" in problem
    _unchanged(api, job, b)
    # WHEN applied THEN refused with the same reason
    r = api.patch(f"/jobs/{job['id']}", {"authorization_id": b, "version": job["version"]})
    assert r.status_code == 422 and r.json["error"]["code"] == "job.authorization_incompatible"
    assert "'L1'" in r.json["error"]["message"]
    _unchanged(api, job, b)
    # WHEN a dry run asks for C (allowed) THEN it says so, and still changes nothing
    r = api.patch(f"/jobs/{job['id']}?dry_run=true", {"authorization_id": c, "version": job["version"]})
    assert r.status_code == 200, r.body
    assert r.json["data"]["allowed"] is True and r.json["data"]["problems"] == []
    _unchanged(api, job, b, c)
    # AND applying it moves the job
    r = api.patch(f"/jobs/{job['id']}", {"authorization_id": c, "version": job["version"]})
    assert r.status_code == 200 and r.json["data"]["authorization_id"] == c
