"""Assume-role without a confused deputy: Switchyard generates one external id per account
and never takes one from a request; sessions carry the account id; secrets stored with a
customer-chosen id keep working until rotated."""

from __future__ import annotations

import json
from typing import Any

import boto3

from chalicelib.services import credentials as creds_svc

ROLE = "arn:aws:iam::210987654321:role/SwitchyardAccess"


def _secret(name: str) -> dict[str, Any]:
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    return dict(json.loads(sm.get_secret_value(SecretId=name)["SecretString"]))


def _role_body(**creds: Any) -> dict[str, Any]:
    return {"provider": "amazon_s3", "method": "assume_role", "label": "Role",
            "credentials": {"role_arn": ROLE, **creds}}


def test_an_external_id_sent_by_the_client_is_refused_and_nothing_is_stored(api, tenant, deps):
    # WHEN a client sends its own external id
    r = api.post("/authorizations", _role_body(external_id="chosen-by-the-customer"))
    # THEN 422 naming the field, and no authorization exists
    assert r.status_code == 422, r.body
    assert "credentials.external_id" in r.json["error"]["fields"]
    assert "chosen-by-the-customer" not in r.body.decode()
    assert api.get("/authorizations").json["data"] == []
    # AND the session name is not settable either
    r = api.post("/authorizations", _role_body(switchyard_account="acct_someone_else"))
    assert r.status_code == 422 and "credentials.switchyard_account" in r.json["error"]["fields"]
    # AND the positive control: without them, the role authorization is created
    assert api.post("/authorizations", _role_body()).status_code == 201


def test_each_account_has_one_generated_external_id_shown_with_its_trust_policy(api, tenant, new_tenant, api_for):
    # GIVEN two accounts
    other = new_tenant("Other")
    api_other = api_for(other.admin_token)
    # WHEN each reads its trust settings twice
    mine, again = api.get("/account/aws-trust"), api.get("/account/aws-trust")
    theirs = api_other.get("/account/aws-trust")
    assert mine.status_code == theirs.status_code == 200, mine.body
    ext = mine.json["data"]["external_id"]
    # THEN the id is stable per account, random, and differs between accounts
    assert again.json["data"]["external_id"] == ext
    assert theirs.json["data"]["external_id"] != ext and len(ext) >= 40
    # AND the trust policy to paste requires it, for Switchyard's own AWS account (moto's)
    data = mine.json["data"]
    [st] = data["trust_policy"]["Statement"]
    assert st["Condition"] == {"StringEquals": {"sts:ExternalId": ext}}
    assert st["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"} == {"AWS": data["principal"]}
    assert data["session_name"] == f"switchyard-{tenant.account_id}"


def test_an_authorization_stores_the_accounts_external_id_and_names_its_sessions(api, tenant, deps):
    ext = api.get("/account/aws-trust").json["data"]["external_id"]
    # WHEN a role authorization is created
    r = api.post("/authorizations", _role_body())
    assert r.status_code == 201, r.body
    auth = deps.auths.get(tenant.account_id, r.json["data"]["id"])
    # THEN its secret holds the generated id and the account (the session's name)
    stored = _secret(auth.secret_name)
    assert stored["external_id"] == ext
    assert stored["switchyard_account"] == tenant.account_id


def test_the_catalog_does_not_ask_for_generated_fields(api):
    s3 = api.get("/providers/amazon_s3").json["data"]
    role = next(m for m in s3["auth_methods"] if m["id"] == "assume_role")
    assert list(role["credentials_schema"]["properties"]) == ["role_arn", "region", "bucket"]
    assert "external_id" not in role["credentials_schema"].get("required", [])
    assert role["generated_fields"] == ["external_id", "switchyard_account"]
    assert role["secret_fields"] == []
    # the access keys method is unchanged (positive control: secrets still marked)
    keys = next(m for m in s3["auth_methods"] if m["id"] == "access_keys")
    assert keys["secret_fields"] == ["secret_access_key"] and keys["generated_fields"] == []


def test_a_secret_with_a_chosen_external_id_keeps_working_until_rotated(api, tenant, deps):
    # GIVEN an authorization whose secret was stored before the rule: a customer-chosen id,
    # no account
    r = api.post("/authorizations", _role_body())
    assert r.status_code == 201, r.body
    auth = deps.auths.get(tenant.account_id, r.json["data"]["id"])
    legacy = {"role_arn": ROLE, "external_id": "legacy-chosen-id", "region": "us-east-1", "bucket": None}
    deps.secrets.put_version(auth.secret_name, legacy)
    spec = deps.registry.get("amazon_s3").spec
    # WHEN it is loaded for use
    loaded = creds_svc.load(deps, auth, spec)
    # THEN the chosen id is still the one sent, and the session is named by the account
    assert loaded.external_id.get_secret_value() == "legacy-chosen-id"
    assert loaded.switchyard_account == tenant.account_id
    assert api.post(f"/authorizations/{auth.id}/check").status_code == 200
    # WHEN the credentials are rotated (without an external id, as the form now asks)
    rot = api.put(f"/authorizations/{auth.id}/credentials", {"credentials": {"role_arn": ROLE}})
    assert rot.status_code == 200, rot.body
    # THEN the account's generated id replaced the chosen one
    ext = api.get("/account/aws-trust").json["data"]["external_id"]
    assert _secret(auth.secret_name)["external_id"] == ext != "legacy-chosen-id"


def test_only_roles_that_connect_integrations_read_the_trust_settings(api, tenant, api_for):
    user = api.post("/users", {"email": "obs@acme.example", "name": "Obs", "role": "observer"}).json["data"]
    token = api.post("/tokens", {"label": "obs", "user_id": user["id"]}).json["data"]["token"]
    assert api_for(token).get("/account/aws-trust").status_code == 403
    assert api.get("/account/aws-trust").status_code == 200
