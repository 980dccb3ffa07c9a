"""OAuth flows started with `return=redirect` (popups blocked: the whole page went to the
provider): a failed callback sends the browser back to the SPA with the error, on the app's
own origin; flows started in a popup keep answering errors as JSON (tests/api/test_oauth.py)."""

from __future__ import annotations

import hashlib
import urllib.parse
from typing import Any

import boto3

from tests.api.test_oauth import _callback, _consent, oauth_app

__all__ = ["oauth_app"]


def _start_redirect(api: Any, label: str = "") -> tuple[str, str, dict[str, Any]]:
    r = api.get("/oauth/mailchimp/start?return=redirect" + (f"&label={urllib.parse.quote(label)}" if label else ""))
    assert r.status_code == 200, r.body
    nonce = r.headers["Set-Cookie"].split(";", 1)[0].split("=", 1)[1]
    data = r.json["data"]
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(data["authorize_url"]).query)["state"][0]
    return state, nonce, data


def _spa_error(r: Any) -> dict[str, str]:
    """The SPA page a failed callback redirects to, and the error it carries."""
    assert r.status_code == 302, r.body
    location = r.headers["Location"]
    # A fixed, relative path: the browser stays on the app's own origin.
    assert location.startswith("/#/authorizations?"), location
    assert "Max-Age=0" in r.headers["Set-Cookie"] and r.headers["Cache-Control"] == "no-store"
    return dict(urllib.parse.parse_qsl(location.split("?", 1)[1]))


def test_a_declined_redirect_flow_comes_back_to_the_spa_and_the_state_is_spent(api, api_for, oauth_app):
    browser = api_for(None)
    state, nonce, _ = _start_redirect(api)
    # WHEN the user declines at Mailchimp (the provider's reason carries markup)
    r = _callback(browser, {"error": "access_denied<script>", "state": state}, nonce)
    # THEN the browser goes back to the SPA with the error, nothing was created
    err = _spa_error(r)
    assert err["oauth_error"] == "oauth.denied"
    assert err["message"] == "Mailchimp did not grant access (access_deniedscript)"
    assert api.get("/authorizations?provider=mailchimp").json["data"] == []
    # AND the state was used up: bringing it back again is refused (back to the SPA too)
    again = _spa_error(_callback(browser, {"error": "access_denied", "state": state}, nonce))
    assert again["oauth_error"] == "oauth.invalid_state"


def test_a_refused_code_comes_back_without_secrets(api, api_for, oauth_app):
    state, nonce, _ = _start_redirect(api)
    r = _callback(api_for(None), {"code": "forged-code-value", "state": state}, nonce)
    err = _spa_error(r)
    assert err["oauth_error"] == "oauth.exchange_failed" and "Invalid authorization code" in err["message"]
    location = r.headers["Location"]
    assert oauth_app.client_secret not in location and "forged-code-value" not in location


def test_an_expired_redirect_flow_comes_back_to_the_spa(api, api_for, oauth_app):
    state, nonce, data = _start_redirect(api)
    back = _consent(data["authorize_url"])
    boto3.client("dynamodb", region_name="us-east-1").update_item(
        TableName="switchyard-test-main",
        Key={"PK": {"S": f"OAUTH#{hashlib.sha256(state.encode()).hexdigest()}"}, "SK": {"S": "STATE"}},
        UpdateExpression="SET expires_at = :t", ExpressionAttributeValues={":t": {"N": "1000"}})
    err = _spa_error(_callback(api_for(None), back, nonce))
    assert err["oauth_error"] == "oauth.state_expired" and "10 minutes" in err["message"]


def test_a_redirect_flow_stays_bound_to_its_user_and_finishes(api, api_for, tenant, new_tenant, oauth_app):
    browser = api_for(None)
    other = api_for(new_tenant("Other").admin_token)
    _, nonce_a, data_a = _start_redirect(api, "Newsletter (redirect)")
    _, nonce_b, _ = _start_redirect(other)
    back = _consent(data_a["authorize_url"])
    # WHEN another user's browser (itself in redirect mode) brings A's state back
    err = _spa_error(_callback(browser, back, nonce_b))
    # THEN it is refused, back in its own SPA, and A's state is untouched
    assert err["oauth_error"] == "oauth.state_mismatch"
    assert other.get("/authorizations?provider=mailchimp").json["data"] == []
    # AND A's browser finishes: the success redirect is the same as in popup mode
    r = _callback(browser, back, nonce_a)
    assert r.status_code == 302 and r.headers["Location"].startswith("/#/authorizations/au")
    auth = api.get(r.headers["Location"].removeprefix("/#")).json["data"]
    assert auth["label"] == "Newsletter (redirect)" and auth["owner"] == tenant.admin_user_id


def test_popup_flows_keep_json_errors_and_the_mode_is_checked(api, api_for, oauth_app):
    # A popup-mode nonce (no redirect mark) with an unknown state: JSON, as before
    r = _callback(api_for(None), {"code": "x", "state": "made-up"}, "plain-nonce")
    assert r.status_code == 400 and r.json["error"]["code"] == "oauth.invalid_state"
    # A redirect-mode browser with an unknown state: back to the SPA
    _, nonce, _ = _start_redirect(api)
    assert _spa_error(_callback(api_for(None), {"code": "x", "state": "made-up"}, nonce))["oauth_error"] == (
        "oauth.invalid_state")
    # An unknown mode is refused, naming the parameter
    r = api.get("/oauth/mailchimp/start?return=https://evil.example")
    assert r.status_code == 400 and "return" in r.json["error"]["fields"]
    doc = api.get("/openapi.json").json["paths"]["/api/v1/oauth/{provider}/start"]["get"]
    assert any(p["name"] == "return" and {"popup", "redirect"} <= set(p["schema"]["enum"]) for p in doc["parameters"])
