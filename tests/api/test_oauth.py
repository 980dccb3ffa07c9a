"""Connecting Mailchimp with OAuth 2.0 through the API, against a fake Mailchimp that
issues codes (`/oauth2/authorize`), exchanges them (`/oauth2/token`) and reports the data
center (`/oauth2/metadata`)."""

from __future__ import annotations

import contextlib
import json
import urllib.parse
import urllib.request
from typing import Any

import boto3
import pytest

REDIRECT = "https://switchyard.example/api/v1/oauth/mailchimp/callback"


@pytest.fixture()
def oauth_app(fake_mailchimp: Any) -> Any:
    """The stage's Mailchimp OAuth client credentials, as an operator stores them."""
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    value = json.dumps({"client_id": fake_mailchimp.client_id, "client_secret": fake_mailchimp.client_secret,
                        "redirect_uri": REDIRECT})
    try:
        sm.create_secret(Name="switchyard/test/oauth/mailchimp", SecretString=value)
    except sm.exceptions.ResourceExistsException:
        sm.put_secret_value(SecretId="switchyard/test/oauth/mailchimp", SecretString=value)
    return fake_mailchimp


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kw: Any) -> None:
        return None


def _start(api: Any, label: str = "") -> tuple[str, str, dict[str, Any]]:
    """Start a flow; returns (state, browser nonce cookie, response data)."""
    r = api.get("/oauth/mailchimp/start" + (f"?label={urllib.parse.quote(label)}" if label else ""))
    assert r.status_code == 200, r.body
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/api/v1/oauth/mailchimp/callback" in cookie
    nonce = cookie.split(";", 1)[0].split("=", 1)[1]
    data = r.json["data"]
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(data["authorize_url"]).query)["state"][0]
    return state, nonce, data


def _consent(authorize_url: str) -> dict[str, str]:
    """The user approves at Mailchimp: the browser is sent back with code and state."""
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        opener.open(authorize_url)
    except urllib.error.HTTPError as exc:
        assert exc.code == 302
        location = exc.headers["Location"]
    else:
        raise AssertionError("no redirect")
    assert location.startswith(REDIRECT)
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


def _callback(browser: Any, params: dict[str, str], nonce: str | None) -> Any:
    headers = {"Cookie": f"sy_oauth={nonce}"} if nonce else {}
    return browser.get("/oauth/mailchimp/callback?" + urllib.parse.urlencode(params), headers=headers)


def test_oauth_flow_creates_an_authorization_and_the_token_stays_secret(api, api_for, tenant, oauth_app):
    fake = oauth_app
    browser = api_for(None)  # the callback is a top-level navigation: no API token
    # WHEN the user starts the flow
    state, nonce, data = _start(api, "Newsletter (OAuth)")
    # THEN the authorize URL names the client, the redirect URI and the state
    url = urllib.parse.urlsplit(data["authorize_url"])
    query = urllib.parse.parse_qs(url.query)
    assert url.path == "/login/oauth2/authorize" and query["response_type"] == ["code"]
    assert query["client_id"] == [fake.client_id] and query["redirect_uri"] == [REDIRECT]
    assert len(state) >= 40 and data["expires_at"] > 0
    # WHEN the user consents and the browser comes back
    back = _consent(data["authorize_url"])
    r = _callback(browser, back, nonce)
    # THEN it is redirected to the new authorization in the SPA
    assert r.status_code == 302, r.body
    auth_id = r.headers["Location"].removeprefix("/#/authorizations/")
    auth = api.get(f"/authorizations/{auth_id}").json["data"]
    assert auth["provider"] == "mailchimp" and auth["method"] == "oauth" and auth["label"] == "Newsletter (OAuth)"
    assert auth["health"]["status"] == "healthy" and auth["provider_account"] == fake.account_id
    assert auth["owner"] == tenant.admin_user_id
    # AND the token is in Secrets Manager only: not in responses, not in DynamoDB
    token = fake.oauth_token
    listing = api.get("/authorizations").body.decode()
    assert token not in json.dumps(auth) and token not in listing and token not in r.body.decode()
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    items = [i for p in ddb.get_paginator("scan").paginate(TableName="switchyard-test-main") for i in p["Items"]]
    assert not [i for i in items if token in json.dumps(i, default=repr)]
    secret = boto3.client("secretsmanager", region_name="us-east-1").get_secret_value(
        SecretId=f"switchyard/test/{tenant.account_id}/{auth_id}")
    assert json.loads(secret["SecretString"]) == {"access_token": token, "dc": fake.dc,
                                                  "account_name": fake.account_name}
    # AND the token works for the provider (options through the new authorization)
    fake.add_list("L9", "Via OAuth")
    opts = api.get(f"/providers/mailchimp/workflows/mailchimp_import/options/list_id?authorization_id={auth_id}")
    assert [o["value"] for o in opts.json["data"]] == ["L9"]
    # AND the state is single use: a replay is refused
    again = _callback(browser, back, nonce)
    assert again.status_code == 400 and again.json["error"]["code"] == "oauth.invalid_state"


def test_another_users_state_is_refused_and_stays_usable_by_its_owner(api, api_for, tenant, new_tenant, oauth_app):
    browser = api_for(None)
    other = api_for(new_tenant("Other").admin_token)
    _, nonce_a, data_a = _start(api)
    _, nonce_b, _ = _start(other)
    back = _consent(data_a["authorize_url"])
    # WHEN another user's browser brings A's state back
    r = _callback(browser, back, nonce_b)
    # THEN 400, and nothing was created
    assert r.status_code == 400 and r.json["error"]["code"] == "oauth.state_mismatch"
    assert "another user" in r.json["error"]["message"]
    # AND without the cookie at all: 400
    r = _callback(browser, back, None)
    assert r.status_code == 400 and r.json["error"]["code"] == "oauth.state_mismatch"
    assert api.get("/authorizations?provider=mailchimp").json["data"] == []
    # AND A's own browser can still finish
    assert _callback(browser, back, nonce_a).status_code == 302


def test_an_expired_state_is_refused(api, api_for, oauth_app):
    import hashlib

    state, nonce, data = _start(api)
    back = _consent(data["authorize_url"])
    # GIVEN the flow started more than 10 minutes ago
    boto3.client("dynamodb", region_name="us-east-1").update_item(
        TableName="switchyard-test-main",
        Key={"PK": {"S": f"OAUTH#{hashlib.sha256(state.encode()).hexdigest()}"}, "SK": {"S": "STATE"}},
        UpdateExpression="SET expires_at = :t", ExpressionAttributeValues={":t": {"N": "1000"}})
    # WHEN the browser comes back THEN 400 expired
    r = _callback(api_for(None), back, nonce)
    assert r.status_code == 400 and r.json["error"]["code"] == "oauth.state_expired"


def test_declined_bad_code_and_unknown_state(api, api_for, oauth_app):
    browser = api_for(None)
    # the user declined at Mailchimp
    state, nonce, _ = _start(api)
    r = _callback(browser, {"error": "access_denied", "state": state}, nonce)
    assert r.status_code == 400 and r.json["error"]["code"] == "oauth.denied"
    # a code Mailchimp never issued: refused in Mailchimp's words
    state, nonce, _ = _start(api)
    r = _callback(browser, {"code": "forged", "state": state}, nonce)
    assert r.status_code == 400 and r.json["error"]["code"] == "oauth.exchange_failed"
    assert "Invalid authorization code" in r.json["error"]["message"]
    # a state never issued; no state at all
    r = _callback(browser, {"code": "x", "state": "made-up"}, "n")
    assert r.status_code == 400 and r.json["error"]["code"] == "oauth.invalid_state"
    r = _callback(browser, {"code": "x"}, "n")
    assert r.status_code == 400 and "state" in r.json["error"]["fields"]


def test_start_needs_a_token_and_the_routes_are_documented(api, api_for, oauth_app):
    assert api_for(None).get("/oauth/mailchimp/start").status_code == 401
    doc = api.get("/openapi.json").json
    start = doc["paths"]["/api/v1/oauth/{provider}/start"]["get"]
    callback = doc["paths"]["/api/v1/oauth/{provider}/callback"]["get"]
    assert start["security"] == [{"bearer": []}] and "security" not in callback
    assert "302" in callback["responses"] and "400" in callback["responses"]
    assert start["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["data"]["$ref"].endswith(
        "/OAuthStartOut")


@pytest.mark.parametrize(("label", "why"), [("x" * 201, "200"), ("bad\x07label", "control characters"),
                                             ("a\u202eb", "bidirectional")])
def test_the_label_is_validated_like_any_label_and_nothing_is_started(api, oauth_app, label, why):
    # WHEN a flow is started with a label no authorization may have
    r = api.get(f"/oauth/mailchimp/start?label={urllib.parse.quote(label)}")
    # THEN 422 names the query parameter, and no flow (no cookie) was started
    assert r.status_code == 422, r.body
    assert why in r.json["error"]["fields"]["label"], r.body
    assert "Set-Cookie" not in r.headers
    # AND a positive control: a fine label (trimmed, like everywhere) starts one
    assert _start(api, "  Newsletter  ")[2]["authorize_url"]


def test_a_token_revoked_while_the_user_was_at_the_provider_creates_nothing(api, api_for, tenant, oauth_app):
    browser = api_for(None)
    # GIVEN a second admin token that starts a flow
    issued = api.post("/tokens", {"label": "laptop"}).json["data"]
    laptop = api_for(issued["token"])
    _, nonce, data = _start(laptop, "Revoked on the way")
    back = _consent(data["authorize_url"])
    # WHEN the token is revoked before the browser comes back
    assert api.delete(f"/tokens/{issued['id']}").status_code == 204
    r = _callback(browser, back, nonce)
    # THEN the callback is refused and no authorization exists
    assert r.status_code == 403, r.body
    assert r.json["error"]["code"] == "oauth.token_revoked"
    assert api.get("/authorizations").json["data"] == []
    # AND a positive control: the same flow with a live token creates one
    _, nonce2, data2 = _start(api, "Live token")
    assert _callback(browser, _consent(data2["authorize_url"]), nonce2).status_code == 302
    assert [a["label"] for a in api.get("/authorizations").json["data"]] == ["Live token"]


def test_without_client_credentials_start_says_oauth_is_not_configured_or_unreadable(api):
    """The stage's OAuth client credentials missing, or present but unreadable (marked for
    deletion: Secrets Manager refuses the read): two plain answers, and no flow starts."""
    from chalicelib.services.oauth_clients import secret_name

    sm = boto3.client("secretsmanager", region_name="us-east-1")
    name = secret_name("mailchimp")
    with contextlib.suppress(sm.exceptions.ResourceNotFoundException):  # an earlier test stored it
        sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
    missing = api.get("/oauth/mailchimp/start")
    sm.create_secret(Name=name, SecretString=json.dumps({"client_id": "c", "client_secret": "s",
                                                         "redirect_uri": REDIRECT}))
    sm.delete_secret(SecretId=name, RecoveryWindowInDays=7)
    try:
        unreadable = api.get("/oauth/mailchimp/start")
    finally:
        sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)  # other tests store their own
    assert missing.status_code == 503, missing.body
    assert missing.json["error"]["code"] == "oauth.not_configured"
    assert "not configured" in missing.json["error"]["message"] and name in missing.json["error"]["message"]
    assert unreadable.status_code == 503, unreadable.body
    assert unreadable.json["error"]["message"] == "the OAuth client credentials could not be read right now"
    # no flow started: no browser nonce was set
    assert "Set-Cookie" not in missing.headers and "Set-Cookie" not in unreadable.headers
