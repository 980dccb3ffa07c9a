"""Credential rotation against a fake Mailchimp over real HTTP (SPEC rule 8 and the goal
"credential rotation without re-pointing jobs"): new keys that cannot reach a job's list
are refused naming the job, and accepted keys are what the next step uses."""

from __future__ import annotations

import base64
import time
from typing import Any

import boto3

from tests.engine.test_mailchimp import OLD, _auth, _fires, _import_job, _runs


def _secret_version(tenant: Any, auth_id: str) -> str:
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    return str(sm.get_secret_value(SecretId=f"switchyard/test/{tenant.account_id}/{auth_id}")["VersionId"])


def _key_of(seen: Any) -> str:
    scheme, _, cred = seen.headers.get("authorization", "").partition(" ")
    assert scheme.lower() == "basic", seen.headers
    return base64.b64decode(cred).decode().partition(":")[2]


def test_rotation_to_a_key_of_the_same_account_that_cannot_see_the_jobs_list_is_refused(
        api, tenant, fake_mailchimp):
    # GIVEN a job on list L1 through key A
    fake = fake_mailchimp
    fake.add_list("L1", "Newsletter")
    fake.add_list("L2", "Other")
    auth = _auth(api, fake.new_api_key())
    job = _import_job(api, auth["id"])
    version = _secret_version(tenant, auth["id"])
    # AND key B of the same Mailchimp account that sees only L2
    key_b = fake.new_api_key()
    fake.scope(key_b, {"L2"})
    # WHEN rotating to B
    r = api.put(f"/authorizations/{auth['id']}/credentials", {"credentials": {"api_key": key_b}})
    # THEN refused, naming the job and its list, in Mailchimp's terms
    assert r.status_code == 422, r.body
    err = r.json["error"]
    assert err["code"] == "authorization.check_failed"
    assert job["id"] in err["message"] and "Newsletter in" in err["message"] and "'L1'" in err["message"]
    assert err["details"]["jobs"] == [{"id": job["id"], "label": "Newsletter in"}]
    assert err["details"]["resources"] == {"list_id": "L1"}
    assert key_b not in r.body.decode()
    # AND nothing changed: same secret version, same hint, no rotation in the audit log
    assert _secret_version(tenant, auth["id"]) == version
    assert api.get(f"/authorizations/{auth['id']}").json["data"]["credential_hint"] == auth["credential_hint"]
    audit = api.get(f"/audit?object_id={auth['id']}").json["data"]
    assert [e["action"] for e in audit] == ["created"]


def test_the_next_step_uses_rotated_keys_with_no_job_interrupted_or_repointed(
        api, deps, tenant, drain, fake_mailchimp):
    # GIVEN an import job that ran with key A
    fake = fake_mailchimp
    fake.add_list("L1", "Newsletter")
    fake.add_member("L1", "a@x.io", merge_fields={"FNAME": "A"}, last_changed=OLD)
    key_a = fake.new_api_key()
    auth = _auth(api, key_a)
    job = _import_job(api, auth["id"])
    drain.run()
    [first] = _runs(api, job["id"])
    assert first["status"] == "succeeded" and first["added"] == 1, first
    assert {_key_of(s) for s in fake.requests if not s.path.startswith("/login")} == {key_a}
    # WHEN the credentials are rotated to key B, then Mailchimp stops accepting A
    key_b = fake.new_api_key()
    r = api.put(f"/authorizations/{auth['id']}/credentials", {"credentials": {"api_key": key_b}})
    assert r.status_code == 200, r.body
    fake.revoke(key_a)
    fake.add_member("L1", "b@x.io", merge_fields={"FNAME": "B"})
    time.sleep(1.1)  # the run's window ends at its start, to the second
    mark = len(fake.requests)
    # AND the job's schedule fires
    _fires(deps, tenant, job["id"])
    drain.run()
    # THEN the run used B only, and succeeded with the new member
    second = _runs(api, job["id"])[0]
    assert second["id"] != first["id"] and second["status"] == "succeeded", second
    assert second["added"] == 1
    assert deps.profiles.find(tenant.account_id, "email", "b@x.io") is not None
    used = {_key_of(s) for s in fake.requests[mark:]}
    assert used == {key_b}
    # AND the job was never interrupted nor re-pointed: same authorization, no fault, no error
    after = api.get(f"/jobs/{job['id']}").json["data"]
    assert after["authorization_id"] == auth["id"] and after["status"] == "sleeping"
    assert after["fault_count"] == 0 and after["warning"] is None
    assert api.get(f"/jobs/{job['id']}/logs?level=error").json["data"] == []
    assert [e["action"] for e in api.get(f"/audit?object_id={job['id']}").json["data"]] == ["created"]
    assert drain.errors == []
