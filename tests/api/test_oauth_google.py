"""Connecting Google Tag Manager with OAuth 2.0 through the API (the same routes as
Mailchimp, `/oauth/{provider}/...`), against a fake Google that issues codes
(`/o/oauth2/v2/auth`) and exchanges them and refresh tokens (`/token`)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import boto3
import pytest

from tests.fakes.google import EDIT, PUBLISH, VERSIONS, FakeGoogle

REDIRECT = "https://switchyard.example/api/v1/oauth/google_tag_manager/callback"
SECRET_NAME = "switchyard/test/oauth/google_tag_manager"


def store_google_app(fake: FakeGoogle) -> None:
    """The stage's Google OAuth client, as an operator stores it."""
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    value = json.dumps({"client_id": fake.client_id, "client_secret": fake.client_secret, "redirect_uri": REDIRECT})
    try:
        sm.create_secret(Name=SECRET_NAME, SecretString=value)
    except sm.exceptions.ResourceExistsException:
        sm.put_secret_value(SecretId=SECRET_NAME, SecretString=value)


@pytest.fixture()
def google_app(fake_google: FakeGoogle) -> FakeGoogle:
    store_google_app(fake_google)
    fake_google.add_account("6001", "Acme")
    return fake_google


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kw: Any) -> None:
        return None


def start(api: Any, label: str = "") -> tuple[str, str, dict[str, Any]]:
    """Start a flow; returns (state, browser nonce cookie, response data)."""
    r = api.get("/oauth/google_tag_manager/start" + (f"?label={urllib.parse.quote(label)}" if label else ""))
    assert r.status_code == 200, r.body
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "Path=/api/v1/oauth/google_tag_manager/callback" in cookie
    nonce = cookie.split(";", 1)[0].split("=", 1)[1]
    data = r.json["data"]
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(data["authorize_url"]).query)["state"][0]
    return state, nonce, data


def consent(authorize_url: str) -> dict[str, str]:
    """The user approves at Google: the browser is sent back with code and state."""
    try:
        urllib.request.build_opener(_NoRedirect).open(authorize_url)
    except urllib.error.HTTPError as exc:
        assert exc.code == 302
        location = exc.headers["Location"]
    else:
        raise AssertionError("no redirect")
    assert location.startswith(REDIRECT)
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


def come_back(browser: Any, params: dict[str, str], nonce: str | None) -> Any:
    headers = {"Cookie": f"sy_oauth={nonce}"} if nonce else {}
    return browser.get("/oauth/google_tag_manager/callback?" + urllib.parse.urlencode(params), headers=headers)


def connect(api: Any, api_for: Any, label: str = "GTM") -> str:
    """The whole flow; returns the new authorization's id."""
    _, nonce, data = start(api, label)
    r = come_back(api_for(None), consent(data["authorize_url"]), nonce)
    assert r.status_code == 302, r.body
    return str(r.headers["Location"].removeprefix("/#/authorizations/"))


def test_google_flow_asks_offline_access_and_stores_both_tokens_in_the_secret_only(api, api_for, tenant,
                                                                                  google_app):
    fake = google_app
    # WHEN the user starts the flow
    state, nonce, data = start(api, "Tag Manager")
    # THEN the authorize URL asks Google for the Tag Manager scopes (publishing included) and offline access
    url = urllib.parse.urlsplit(data["authorize_url"])
    query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
    assert url.path == "/o/oauth2/v2/auth" and query["response_type"] == "code"
    assert query["client_id"] == fake.client_id and query["redirect_uri"] == REDIRECT
    assert query["scope"].split() == [EDIT, VERSIONS, PUBLISH]
    assert query["access_type"] == "offline" and query["prompt"] == "consent" and query["state"] == state
    # WHEN the user consents and the browser comes back
    back = consent(data["authorize_url"])
    r = come_back(api_for(None), back, nonce)
    # THEN an OAuth authorization, healthy, reaching the Tag Manager account
    assert r.status_code == 302, r.body
    auth_id = r.headers["Location"].removeprefix("/#/authorizations/")
    auth = api.get(f"/authorizations/{auth_id}").json["data"]
    assert auth["provider"] == "google_tag_manager" and auth["method"] == "oauth"
    assert auth["label"] == "Tag Manager" and auth["health"]["status"] == "healthy"
    assert auth["provider_account"] == "6001" and auth["owner"] == tenant.admin_user_id
    # AND the access and refresh tokens are in its secret, and nowhere in responses or DynamoDB
    [issued] = fake.issued
    tokens = (issued["access_token"], issued["refresh_token"])
    secret = json.loads(boto3.client("secretsmanager", region_name="us-east-1").get_secret_value(
        SecretId=f"switchyard/test/{tenant.account_id}/{auth_id}")["SecretString"])
    assert (secret["access_token"], secret["refresh_token"]) == tokens
    assert secret["expires_at"] > 0 and secret["scope"].split() == [EDIT, VERSIONS, PUBLISH]
    listing = api.get("/authorizations").body.decode()
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    items = json.dumps([i for p in ddb.get_paginator("scan").paginate(TableName="switchyard-test-main")
                        for i in p["Items"]], default=repr)
    for token in tokens:
        assert token not in json.dumps(auth) and token not in listing and token not in items
    # AND the state is single use
    again = come_back(api_for(None), back, nonce)
    assert again.status_code == 400 and again.json["error"]["code"] == "oauth.invalid_state"


def test_google_state_is_bound_to_its_provider_user_and_time(api, api_for, new_tenant, google_app,
                                                          fake_mailchimp):
    import hashlib

    browser = api_for(None)
    # a Google state brought back by another user's browser: refused, still usable by its owner
    other = api_for(new_tenant("Other").admin_token)
    _, nonce_a, data_a = start(api)
    _, nonce_b, _ = start(other)
    back = consent(data_a["authorize_url"])
    r = come_back(browser, back, nonce_b)
    assert r.status_code == 400 and r.json["error"]["code"] == "oauth.state_mismatch"
    # a Google state brought to the Mailchimp callback: refused (and spent)
    state, nonce, data = start(api)
    r = browser.get("/oauth/mailchimp/callback?" + urllib.parse.urlencode(consent(data["authorize_url"])),
                    headers={"Cookie": f"sy_oauth={nonce}"})
    assert r.status_code == 400 and r.json["error"]["code"] == "oauth.invalid_state"
    assert come_back(browser, back, nonce_a).status_code == 302
    # past 10 minutes: expired
    state, nonce, data = start(api)
    boto3.client("dynamodb", region_name="us-east-1").update_item(
        TableName="switchyard-test-main",
        Key={"PK": {"S": f"OAUTH#{hashlib.sha256(state.encode()).hexdigest()}"}, "SK": {"S": "STATE"}},
        UpdateExpression="SET expires_at = :t", ExpressionAttributeValues={":t": {"N": "1000"}})
    r = come_back(browser, consent(data["authorize_url"]), nonce)
    assert r.status_code == 400 and r.json["error"]["code"] == "oauth.state_expired"


def test_declined_and_forged_codes_are_refused_in_googles_words(api, api_for, google_app):
    browser = api_for(None)
    state, nonce, _ = start(api)
    r = come_back(browser, {"error": "access_denied", "state": state}, nonce)
    assert r.status_code == 400 and r.json["error"]["code"] == "oauth.denied"
    assert "Google did not grant access" in r.json["error"]["message"]
    state, nonce, _ = start(api)
    r = come_back(browser, {"code": "4/forged", "state": state}, nonce)
    assert r.status_code == 400 and r.json["error"]["code"] == "oauth.exchange_failed"
    assert "Google refused the authorization code" in r.json["error"]["message"]
    assert api.get("/authorizations?provider=google_tag_manager").json["data"] == []


def test_an_unknown_oauth_provider_is_404(api, api_for, google_app):
    r = api.get("/oauth/amazon_s3/start")
    assert r.status_code == 404 and r.json["error"]["code"] == "oauth.provider_not_found"
    r = api_for(None).get("/oauth/nope/callback?code=x&state=y", headers={"Cookie": "sy_oauth=n"})
    assert r.status_code == 404 and "Set-Cookie" not in r.headers
