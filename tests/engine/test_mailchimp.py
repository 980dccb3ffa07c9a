"""Mailchimp end to end: an authorization and jobs created through the API against a fake
Mailchimp over real HTTP (tests/fakes/mailchimp.py), runs delivered from SQS, profiles in
the store, members and tags in the fake's list (docs/providers/mailchimp.md)."""

from __future__ import annotations

import itertools
import json
import logging
import time
from typing import Any

import boto3

from chalicelib.domain.profiles import ProfileRecord
from tests.fakes.mailchimp import FakeMailchimp

OLD = "2026-01-01T00:00:00+00:00"
HOURLY = {"type": "interval", "every_minutes": 60}
PRO = {"all": [{"field": "plan", "op": "equals", "value": "pro"}]}
_tags = itertools.count()


def _auth(api: Any, key: str, label: str = "Mailchimp key") -> dict[str, Any]:
    r = api.post("/authorizations", {"provider": "mailchimp", "method": "api_key", "label": label,
                                     "credentials": {"api_key": key}})
    assert r.status_code == 201, r.body
    return dict(r.json["data"])


def _import_job(api: Any, auth_id: str, **config: Any) -> dict[str, Any]:
    r = api.post("/jobs", {"provider": "mailchimp", "job_type": "import", "workflow": "mailchimp_import",
                           "authorization_id": auth_id, "label": "Newsletter in", "schedule": HOURLY,
                           "config": {"list_id": "L1", **config}})
    assert r.status_code == 201, r.body
    return dict(r.json["data"])


def _export_job(api: Any, auth_id: str, audience_id: str, **config: Any) -> dict[str, Any]:
    r = api.post("/jobs", {"provider": "mailchimp", "job_type": "export", "workflow": "mailchimp_audience_export",
                           "authorization_id": auth_id, "label": "Pro to Mailchimp", "schedule": HOURLY,
                           "config": {"audience_id": audience_id, "list_id": "L1",
                                      "fields": {"first_name": "FNAME", "plan": "PLAN"}, **config}})
    assert r.status_code == 201, r.body
    return dict(r.json["data"])


def _audience(api: Any) -> str:
    r = api.post("/audiences", {"name": "Pro customers", "filter": PRO})
    assert r.status_code == 201, r.body
    return str(r.json["data"]["id"])


def _seed(deps: Any, account_id: str, people: list[dict[str, Any]]) -> None:
    """Profiles the way an import writes them (email, or user_id alone, identifies)."""
    records = []
    for p in people:
        idents = {k: p[k] for k in ("email", "user_id") if p.get(k)}
        fields = {k: v for k, v in p.items() if k not in ("email", "user_id")}
        records.append(ProfileRecord(identifiers=idents, fields=fields, ref="seed"))
    deps.profiles.upsert_batch(account_id, records, step_tag=f"seed#{next(_tags)}")


def _fires(deps: Any, tenant: Any, job_id: str) -> None:
    deps.runs_queue.send({"account_id": tenant.account_id, "job_id": job_id, "trigger": "schedule"})


def _runs(api: Any, job_id: str) -> list[dict[str, Any]]:
    return list(api.get(f"/jobs/{job_id}/runs").json["data"])


def _tagged(fake: FakeMailchimp, tag: str = "switchyard") -> set[str]:
    return {m.email_address for m in fake.lists["L1"].members.values() if tag in m.tags}


def test_import_creates_profiles_then_reads_only_what_changed(api, deps, tenant, drain, fake_mailchimp):
    # GIVEN a list of 250 members (merge fields, tags; one with an address merge field)
    fake = fake_mailchimp
    fake.add_list("L1", "Newsletter", [("FNAME", "First", "text"), ("LNAME", "Last", "text"),
                                       ("ADDRESS", "Address", "address")])
    for i in range(249):
        fake.add_member("L1", f"m{i}@x.io", merge_fields={"FNAME": f"M{i}", "LNAME": "Doe"}, last_changed=OLD)
    fake.add_member("L1", "Ada@X.io", merge_fields={"FNAME": "Ada", "ADDRESS": {"city": "London"}},
                    tags=["vip"], last_changed=OLD)
    auth = _auth(api, fake.new_api_key())
    assert auth["health"]["status"] == "healthy" and auth["provider_account"] == fake.account_id
    job = _import_job(api, auth["id"], field_mapping={"ADDRESS_city": "city"})
    # WHEN the run is delivered, 100 rows a step
    drain.engine.o.max_records = 100
    drain.run()
    # THEN a profile per member with its merge fields, tags and status
    [run] = _runs(api, job["id"])
    assert run["status"] == "succeeded", run
    assert run["added"] == 250 and run["progress"]["processed"] == 250
    ada = deps.profiles.find(tenant.account_id, "email", "ada@x.io")
    assert ada.fields == {"first_name": "Ada", "city": "London", "mailchimp_status": "subscribed",
                          "mailchimp_tags": ["vip"]}
    first_pages = len([r for r in fake.requests if r.path.endswith("/members")])
    assert first_pages == 3  # 100 + 100 + 50
    # WHEN a member changes (a new tag: tags append), one joins, and the schedule fires
    fake.tag("L1", "ada@x.io", "beta")
    fake.add_member("L1", "new@x.io", merge_fields={"FNAME": "New"})
    time.sleep(1.1)  # the run's window ends at its start, to the second
    _fires(deps, tenant, job["id"])
    drain.run()
    # THEN the second run read only those two, from the watermark
    second = _runs(api, job["id"])[0]
    assert second["status"] == "succeeded" and second["progress"]["processed"] == 2 and second["added"] == 2
    pages = [r for r in fake.requests if r.path.endswith("/members")][first_pages:]
    assert len(pages) == 1 and pages[0].query["since_last_changed"]
    assert deps.profiles.find(tenant.account_id, "email", "ada@x.io").fields["mailchimp_tags"] == ["beta", "vip"]
    assert deps.profiles.find(tenant.account_id, "email", "new@x.io").fields["first_name"] == "New"
    assert drain.errors == []


def test_export_tags_members_and_leavers_lose_the_tag(api, deps, tenant, drain, fake_mailchimp):
    # GIVEN 12 pro profiles (one without email, one with a fake-looking address) and 3 free ones
    fake = fake_mailchimp
    fake.add_list("L1", "Customers", [("FNAME", "First", "text"), ("PLAN", "Plan", "text")])
    people = [{"email": f"p{i}@x.io", "first_name": f"P{i}", "plan": "pro"} for i in range(10)]
    people += [{"user_id": "no-mail", "plan": "pro"}, {"email": "bot@spam.invalid", "plan": "pro"}]
    people += [{"email": f"f{i}@x.io", "plan": "free"} for i in range(3)]
    _seed(deps, tenant.account_id, people)
    auth = _auth(api, fake.new_api_key())
    job = _export_job(api, auth["id"], _audience(api))
    # WHEN the first run is delivered
    drain.run()
    # THEN the list holds the 10 members with the tag and their merge fields
    [run] = _runs(api, job["id"])
    assert run["status"] == "succeeded", run
    assert _tagged(fake) == {f"p{i}@x.io" for i in range(10)}
    assert fake.member("L1", "p3@x.io").merge_fields == {"FNAME": "P3", "PLAN": "pro"}
    # AND the profile without email was omitted, the fake address rejected by Mailchimp: counted, not fatal
    assert run["added"] == 10 and run["omitted_reasons"] == {"missing_identifier": 1, "rejected": 1}
    logs = api.get(f"/jobs/{job['id']}/logs").json["data"]
    rejected = [ln for ln in logs if ln["code"] == "export.rejected"]
    assert rejected and "looks fake or invalid" in rejected[0]["message"]
    assert "bot@spam.invalid" not in json.dumps(logs)
    # WHEN 3 members leave the audience and 2 join, and the schedule fires
    _seed(deps, tenant.account_id, [{"email": f"p{i}@x.io", "plan": "free"} for i in (0, 1, 2)]
          + [{"email": f"f{i}@x.io", "plan": "pro"} for i in (0, 1)])
    _fires(deps, tenant, job["id"])
    drain.run()
    # THEN leavers lose the tag (still in the list, still subscribed), joiners have it
    second = _runs(api, job["id"])[0]
    assert second["status"] == "succeeded" and second["added"] == 2 and second["removed"] == 3, second
    assert _tagged(fake) == {f"p{i}@x.io" for i in range(3, 10)} | {"f0@x.io", "f1@x.io"}
    # AND the job's activity shows the leavers as "profiles removed" (SPEC rule 5), at every granularity
    for granularity in ("hour", "day", "week"):
        series = api.get(f"/jobs/{job['id']}/activity?granularity={granularity}").json["data"]["series"]
        assert sum(p["removed"] for p in series) == second["removed"] == 3, granularity
        assert sum(p["added"] for p in series) == run["added"] + second["added"], granularity
    assert fake.member("L1", "p0@x.io").status == "subscribed"
    assert drain.errors == []


def test_export_with_unsubscribe_on_remove(api, deps, tenant, drain, fake_mailchimp):
    fake = fake_mailchimp
    fake.add_list("L1", "Customers", [("FNAME", "First", "text"), ("PLAN", "Plan", "text")])
    _seed(deps, tenant.account_id, [{"email": f"u{i}@x.io", "plan": "pro"} for i in range(3)])
    job = _export_job(api, _auth(api, fake.new_api_key())["id"], _audience(api), on_remove="unsubscribe")
    drain.run()
    _seed(deps, tenant.account_id, [{"email": "u0@x.io", "plan": "free"}])
    _fires(deps, tenant, job["id"])
    drain.run()
    assert fake.member("L1", "u0@x.io").status == "unsubscribed"
    assert fake.member("L1", "u1@x.io").status == "subscribed" and _tagged(fake) == {"u1@x.io", "u2@x.io"}


def test_a_429_then_200_loses_no_member(api, deps, tenant, drain, fake_mailchimp):
    # GIVEN Mailchimp throttles the first batch subscribe (Retry-After: 1 s)
    fake = fake_mailchimp
    fake.add_list("L1", "Customers", [("FNAME", "First", "text"), ("PLAN", "Plan", "text")])
    _seed(deps, tenant.account_id, [{"email": f"t{i}@x.io", "plan": "pro"} for i in range(40)])
    job = _export_job(api, _auth(api, fake.new_api_key())["id"], _audience(api))
    fake.fail(429, times=1, retry_after="1", path="/lists/L1", method="POST")
    # WHEN the run is delivered
    drain.run()
    # THEN every member is in the list with the tag, and the throttled attempt was counted
    [run] = _runs(api, job["id"])
    assert run["status"] == "succeeded" and run["added"] == 40
    assert _tagged(fake) == {f"t{i}@x.io" for i in range(40)}
    posts = [r for r in fake.requests if r.method == "POST" and r.path.endswith("/lists/L1")]
    assert len(posts) == 2
    assert run["cost"]["provider_calls"] >= 4  # 2 batch subscribe attempts + /batches + its poll


def test_failed_batch_tag_operations_are_counted_as_rejected_not_sent(api, deps, tenant, drain, fake_mailchimp):
    # GIVEN 30 pro profiles (a part large enough for /batches) and Mailchimp failing 3 of the
    # tag operations inside the batch, which the batch itself reports only as a count
    fake = fake_mailchimp
    fake.add_list("L1", "Customers", [("FNAME", "First", "text"), ("PLAN", "Plan", "text")])
    _seed(deps, tenant.account_id, [{"email": f"b{i}@x.io", "plan": "pro"} for i in range(30)])
    job = _export_job(api, _auth(api, fake.new_api_key())["id"], _audience(api))
    fake.fail_operations(400, times=3, path="/tags")
    # WHEN the run is delivered
    drain.run()
    # THEN the run read the batch's results: 27 added, 3 rejected with Mailchimp's reason
    [run] = _runs(api, job["id"])
    assert run["status"] == "succeeded", run
    assert run["added"] == 27 and run["omitted_reasons"] == {"rejected": 3}, run
    assert len(_tagged(fake)) == 27
    logs = api.get(f"/jobs/{job['id']}/logs").json["data"]
    rejected = [ln for ln in logs if ln["code"] == "export.rejected"]
    assert rejected and "could not be validated" in rejected[0]["message"]
    assert [r for r in fake.requests if r.path.endswith(".tar.gz")] and drain.errors == []


def test_a_revoked_key_fails_the_job_at_once_in_mailchimps_words(api, deps, tenant, drain, fake_mailchimp):
    # GIVEN an import job whose key is revoked after the job was created
    fake = fake_mailchimp
    fake.add_list("L1", "Newsletter")
    fake.add_member("L1", "a@x.io", last_changed=OLD)
    job = _import_job(api, _auth(api, fake.new_api_key())["id"])
    fake.api_keys.clear()
    # WHEN the run is delivered
    drain.run()
    # THEN the job failed at once (no retry helps), the log says what Mailchimp said
    final = api.get(f"/jobs/{job['id']}").json["data"]
    assert final["status"] == "failed" and final["fault_count"] == 1
    [line] = api.get(f"/jobs/{job['id']}/logs?level=error").json["data"]
    assert line["code"] == "run.config_error"
    assert "Mailchimp answered 401" in line["message"] and "Your API key may be invalid" in line["message"]


def test_bad_keys_are_refused_naming_the_field(api, fake_mailchimp):
    # a malformed key: 422 naming credentials.api_key, nothing stored
    r = api.post("/authorizations", {"provider": "mailchimp", "method": "api_key", "label": "x",
                                     "credentials": {"api_key": "no-data-center-here!"}})
    assert r.status_code == 422 and "credentials.api_key" in r.json["error"]["fields"]
    # a well-formed key Mailchimp refuses: 422 with Mailchimp's words
    r = api.post("/authorizations", {"provider": "mailchimp", "method": "api_key", "label": "x",
                                     "credentials": {"api_key": "0123456789abcdef0123456789abcdef-us21"}})
    assert r.status_code == 422 and "Your API key may be invalid" in r.json["error"]["message"]
    assert api.get("/authorizations?provider=mailchimp").json["data"] == []


CANARY = "CANARYmc7f3a9c1e5b2d4068aa"


def test_the_api_key_never_leaves_secrets_manager(api, deps, tenant, drain, fake_mailchimp, caplog):
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="switchyard")
    caplog.set_level(logging.DEBUG, logger="urllib3")
    fake = fake_mailchimp
    key = f"{CANARY}-{fake.dc}"
    fake.api_keys.add(key)
    fake.add_list("L1", "Customers", [("FNAME", "First", "text"), ("PLAN", "Plan", "text")])
    fake.add_member("L1", "in@x.io", last_changed=OLD)
    _seed(deps, tenant.account_id, [{"email": f"c{i}@x.io", "plan": "pro"} for i in range(15)])
    bodies: list[str] = []

    def call(method: str, path: str, body: Any = None) -> Any:
        r = api.call(method, path, body)
        bodies.append(r.body.decode())
        return r

    # every route that touches the key: create (and a refused create), check, options, jobs, runs, logs
    call("POST", "/authorizations", {"provider": "mailchimp", "method": "api_key", "label": "bad",
                                     "credentials": {"api_key": f"{CANARY}x-{fake.dc}"}})
    auth = call("POST", "/authorizations", {"provider": "mailchimp", "method": "api_key", "label": "k",
                                            "credentials": {"api_key": key}}).json["data"]
    call("POST", f"/authorizations/{auth['id']}/check")
    for field, extra in (("list_id", ""), ("fields", "&list_id=L1"), ("tag", "&list_id=L1"), ("fields", "&list_id=x")):
        call("GET", f"/providers/mailchimp/workflows/mailchimp_audience_export/options/{field}"
                    f"?authorization_id={auth['id']}{extra}")
    imp = _import_job(api, auth["id"])
    exp = _export_job(api, auth["id"], _audience(api))
    fake.fail(500, times=8, path="/batches")  # a transient failure: its message is logged too
    drain.run()
    for path in ("/authorizations", f"/authorizations/{auth['id']}", f"/jobs/{imp['id']}", f"/jobs/{exp['id']}",
                 f"/jobs/{imp['id']}/runs", f"/jobs/{exp['id']}/runs", f"/jobs/{imp['id']}/logs",
                 f"/jobs/{exp['id']}/logs", "/providers/mailchimp"):
        call("GET", path)
    assert len(bodies) > 15 and auth["credential_hint"] and CANARY not in auth["credential_hint"]
    logs = api.get(f"/jobs/{exp['id']}/logs").json["data"]
    assert any(ln["code"] == "run.transient_error" for ln in logs)

    def leaks(text: str) -> bool:
        return CANARY[:16] in text

    assert not [b for b in bodies if leaks(b)]
    assert not [r.getMessage() for r in caplog.records if leaks(r.getMessage())]
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    items = []
    for table in (deps.table.name, deps.profiles_table.name):
        for page in ddb.get_paginator("scan").paginate(TableName=table):
            items += page["Items"]
    assert items and not [i for i in items if leaks(json.dumps(i, default=repr))]
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.get_queue_url(QueueName="switchyard-test-runs")["QueueUrl"]
    msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])
    assert not [m for m in msgs if leaks(m["Body"])]
    # ...and it is in Secrets Manager
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    value = sm.get_secret_value(SecretId=f"switchyard/test/{tenant.account_id}/{auth['id']}")
    assert CANARY in value["SecretString"]


def test_an_export_that_crashes_mid_part_resends_it_and_counts_once(api, deps, tenant, drain, options,
                                                                     fake_mailchimp):
    # GIVEN 25 members, 10 a part, and crashes after Mailchimp got a part (before the commit),
    # after a commit, and before the next step was queued (at most 2 per message: 5 receives
    # would send it to the DLQ, which is another test's subject)
    fake = fake_mailchimp
    fake.add_list("L1", "Customers", [("FNAME", "First", "text"), ("PLAN", "Plan", "text")])
    _seed(deps, tenant.account_id, [{"email": f"r{i}@x.io", "first_name": f"R{i}", "plan": "pro"} for i in range(25)])
    options.max_records = 10
    crashes = ["after_write", "after_commit", "after_write", "before_enqueue", "after_write"]

    def fault(point: str) -> None:
        if crashes and point == crashes[0]:
            crashes.pop(0)
            raise RuntimeError(f"crash at {point}")

    options.fault = fault
    job = _export_job(api, _auth(api, fake.new_api_key())["id"], _audience(api))
    # WHEN its messages are delivered, crashed ones redelivered
    for _ in range(5):
        drain.run()
    # THEN every crash happened, the run succeeded and counted each member once
    assert crashes == [] and len(drain.errors) == 5
    [run] = _runs(api, job["id"])
    assert run["status"] == "succeeded" and run["added"] == 25 and run["omitted"] == 0, run
    # AND the list holds each member once, tagged, although parts were sent again
    assert _tagged(fake) == {f"r{i}@x.io" for i in range(25)} and len(fake.lists["L1"].members) == 25
    subscribes = [r for r in fake.requests if r.method == "POST" and r.path.endswith("/lists/L1")]
    assert len(subscribes) > 3  # 3 parts, some sent twice: upserts by address are idempotent


def test_options_and_configured_lists_are_read_through_the_authorization(api, fake_mailchimp):
    fake = fake_mailchimp
    fake.add_list("L1", "Customers", [("FNAME", "First", "text"), ("PLAN", "Plan", "text")])
    fake.add_member("L1", "a@x.io", tags=["vip"])
    auth = _auth(api, fake.new_api_key())
    base = "/providers/mailchimp/workflows/mailchimp_audience_export/options"
    # WHEN the wizard lists lists, merge fields and tags
    lists = api.get(f"{base}/list_id?authorization_id={auth['id']}").json["data"]
    fields = api.get(f"{base}/fields?authorization_id={auth['id']}&list_id=L1").json["data"]
    tags = api.get(f"{base}/tag?authorization_id={auth['id']}&list_id=L1").json["data"]
    # THEN
    assert [o["value"] for o in lists] == ["L1"]
    assert [o["value"] for o in fields] == ["FNAME", "PLAN"] and [o["value"] for o in tags] == ["vip"]
    # AND merge fields without a list: a clear 422 naming list_id
    r = api.get(f"{base}/fields?authorization_id={auth['id']}")
    assert r.status_code == 422 and "list_id" in r.json["error"]["fields"]
    # AND a job on a list the authorization cannot reach is refused, naming the config
    r = api.post("/jobs", {"provider": "mailchimp", "job_type": "import", "workflow": "mailchimp_import",
                           "authorization_id": auth["id"], "label": "x", "config": {"list_id": "nope"}})
    assert r.status_code == 422 and r.json["error"]["code"] == "job.config_unreachable"
    assert "'nope' was not found" in r.json["error"]["message"]
    # AND a bad merge tag in the export config names the field
    r = api.post("/jobs", {"provider": "mailchimp", "job_type": "export", "workflow": "mailchimp_audience_export",
                           "authorization_id": auth["id"], "label": "x",
                           "config": {"audience_id": "aud_x", "list_id": "L1", "fields": {"plan": "not a tag"}}})
    assert r.status_code == 422 and "config.fields.plan" in r.json["error"]["fields"]


def test_a_resync_restores_what_the_list_lost_without_duplicating_anyone(api, deps, tenant, drain, fake_mailchimp):
    # GIVEN 4 members sent to the list, then the list loses one and another's merge field is overwritten
    fake = fake_mailchimp
    fake.add_list("L1", "Customers", [("FNAME", "First", "text"), ("PLAN", "Plan", "text")])
    _seed(deps, tenant.account_id, [{"email": f"p{i}@x.io", "first_name": f"P{i}", "plan": "pro"} for i in range(4)])
    job = _export_job(api, _auth(api, fake.new_api_key())["id"], _audience(api))
    drain.run()
    members = fake.lists["L1"].members
    [lost] = [k for k, m in members.items() if m.email_address == "p1@x.io"]
    del members[lost]
    fake.member("L1", "p2@x.io").merge_fields["FNAME"] = "Overwritten"
    # WHEN a plain run comes (the control): it sends nothing, the list stays as it is
    _fires(deps, tenant, job["id"])
    drain.run()
    assert _runs(api, job["id"])[0]["added"] == 0
    assert _tagged(fake) == {"p0@x.io", "p2@x.io", "p3@x.io"}
    # WHEN the job is asked to re-send everything
    r = api.post(f"/jobs/{job['id']}/run", {"resync": True})
    assert r.status_code == 200, r.body
    drain.run()
    # THEN every member is in the list again with its values, each once
    run = _runs(api, job["id"])[0]
    assert (run["status"], run["added"], run["removed"], run["resync"]) == ("succeeded", 4, 0, True), run
    assert _tagged(fake) == {f"p{i}@x.io" for i in range(4)}
    assert fake.member("L1", "p2@x.io").merge_fields["FNAME"] == "P2"
    assert len(fake.lists["L1"].members) == 4
    assert drain.errors == []
