"""Alert webhooks: URLs kept in Secrets Manager and shown by host only, vetted by the SSRF
guard when saved, one signing secret per webhook with rotation; settings saved before keep
delivering until the next save moves them."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import boto3

from chalicelib.services import alerts
from tests.api.test_alerts import private_urls, receiver  # noqa: F401  (fixtures)

EVENT = {"id": "evt-1", "detail-type": "Test Alert", "time": "2026-12-05T08:00:00Z"}


def _item(account_id: str) -> dict[str, Any]:
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    return dict(ddb.get_item(TableName="switchyard-test-main",
                             Key={"PK": {"S": f"ACCT#{account_id}"}, "SK": {"S": "ALERTS"}})["Item"])


def _signatures(header: str, body: bytes) -> tuple[str, list[str]]:
    parts = [p.split("=", 1) for p in header.split(",")]
    t = next(v for k, v in parts if k == "t")
    return t, [v for k, v in parts if k == "v1"]


def _mac(secret: str, t: str, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def test_a_webhook_url_is_kept_secret_and_shown_by_host(api, api_for, tenant, deps):
    # public literal addresses: no DNS needed
    url = "https://93.184.216.35/in/T0KEN-path?token=QUERYSECRET"
    r = api.put("/alerts", {"webhooks": ["https://93.184.216.34/hook"], "version": 0})
    assert r.status_code == 200, r.body
    # GIVEN a second webhook whose URL carries tokens
    hook_id = r.json["data"]["webhooks"][0]["id"]
    r = api.put("/alerts", {"webhooks": [hook_id, url], "version": 1})
    assert r.status_code == 200, r.body
    data = r.json["data"]
    # THEN the answer, a later read by an observer, the audit log and the DynamoDB item show
    # the host only
    assert [w["host"] for w in data["webhooks"]] == ["93.184.216.34", "93.184.216.35"]
    user = api.post("/users", {"email": "o@acme.example", "name": "o", "role": "observer"}).json["data"]
    observer = api_for(api.post("/tokens", {"label": "o", "user_id": user["id"]}).json["data"]["token"])
    seen = json.dumps(observer.get("/alerts").json) + json.dumps(api.get("/audit").json) + json.dumps(_item(tenant.account_id))
    assert "93.184.216.35" in seen
    for secret in ("T0KEN-path", "QUERYSECRET"):
        assert secret not in seen and secret not in r.body.decode()
    # AND the URL is in the webhook's own secret, with its own signing secret (shown once)
    new_id = data["webhooks"][1]["id"]
    stored = deps.secrets.read(deps.secrets.name_for(tenant.account_id, f"alerts-{new_id}"))
    assert stored["url"] == url and stored["signing_secret"] == data["signing_secrets"][new_id]
    assert list(data["signing_secrets"]) == [new_id]  # the kept one's secret is not shown again


def test_a_webhook_url_is_vetted_by_the_ssrf_guard_when_saved(api, tenant):
    for bad in ("https://169.254.169.254/latest/meta-data", "https://127.0.0.1/x",
                "https://[2002:a9fe:a9fe::1]/x", "http://93.184.216.34/plain-http"):
        r = api.put("/alerts", {"webhooks": ["https://93.184.216.34/ok", bad], "version": 0})
        # THEN refused, naming the entry, and nothing saved
        assert r.status_code == 422, (bad, r.body)
        assert "webhooks[1]" in r.json["error"]["fields"], r.body
        assert api.get("/alerts").json["data"]["version"] == 0
    # AND an unknown webhook id is refused the same way
    r = api.put("/alerts", {"webhooks": ["whk_nobody"], "version": 0})
    assert r.status_code == 422 and "webhooks[0]" in r.json["error"]["fields"]
    # positive control: a public address is accepted
    assert api.put("/alerts", {"webhooks": ["https://93.184.216.34/ok"], "version": 0}).status_code == 200


def test_each_webhook_signs_with_its_own_secret_and_rotation_overlaps(api, tenant, deps, private_urls, receiver):  # noqa: F811
    r = api.put("/alerts", {"webhooks": [receiver.url("/a"), receiver.url("/b")], "version": 0})
    assert r.status_code == 200, r.body
    secrets = r.json["data"]["signing_secrets"]
    a, b = (w["id"] for w in r.json["data"]["webhooks"])
    assert secrets[a] != secrets[b]
    event = {**EVENT, "detail": {"account_id": tenant.account_id}}
    assert alerts.deliver(deps, event)["webhooks"] == 2
    for req, hook in zip(receiver.requests, (a, b), strict=True):
        t, macs = _signatures(req.headers["switchyard-signature"], req.body)
        assert macs == [_mac(secrets[hook], t, req.body)]
    # WHEN a's secret is rotated
    rot = api.post(f"/alerts/webhooks/{a}/rotate-secret")
    assert rot.status_code == 200, rot.body
    new = rot.json["data"]["signing_secret"]
    assert new != secrets[a]
    receiver.requests.clear()
    alerts.deliver(deps, {**event, "id": "evt-2"})
    # THEN a's deliveries carry the new signature and, for the overlap, the previous one
    got = {req.path: (*_signatures(req.headers["switchyard-signature"], req.body), req.body)
           for req in receiver.requests}
    t, macs, body = got["/a"]
    assert macs == [_mac(new, t, body), _mac(secrets[a], t, body)]
    t, macs, body = got["/b"]
    assert macs == [_mac(secrets[b], t, body)]
    # WHEN the overlap is over, only the new one signs
    name = deps.secrets.name_for(tenant.account_id, f"alerts-{a}")
    deps.secrets.put_version(name, {**deps.secrets.read(name), "previous_until": 0})
    receiver.requests.clear()
    alerts.deliver(deps, {**event, "id": "evt-3"})
    [req] = [q for q in receiver.requests if q.path == "/a"]
    t, macs = _signatures(req.headers["switchyard-signature"], req.body)
    assert macs == [_mac(new, t, req.body)]
    # AND an unknown webhook is not found
    assert api.post("/alerts/webhooks/whk_nobody/rotate-secret").status_code == 404


def test_settings_saved_with_urls_keep_delivering_until_the_next_save_moves_them(
        api, tenant, deps, private_urls, receiver):  # noqa: F811
    # GIVEN settings as saved before: the URL in DynamoDB, the account's one signing secret
    url = receiver.url("/legacy?token=OLDQUERY")
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    ddb.put_item(TableName="switchyard-test-main", Item={
        "PK": {"S": f"ACCT#{tenant.account_id}"}, "SK": {"S": "ALERTS"}, "type": {"S": "alert_settings"},
        "emails_json": {"S": "{}"}, "webhooks_json": {"S": json.dumps([url])}, "version": {"N": "1"}})
    legacy = "whsec_legacy-account-secret"
    deps.secrets.create(deps.secrets.name_for(tenant.account_id, "alerts"), {"signing_secret": legacy}, tags={})
    # THEN it is shown by host, and delivered signed with the account's secret
    [hook] = api.get("/alerts").json["data"]["webhooks"]
    assert hook["host"] == "127.0.0.1" and "OLDQUERY" not in json.dumps(hook)
    event = {**EVENT, "detail": {"account_id": tenant.account_id}}
    assert alerts.deliver(deps, event)["webhooks"] == 1
    [req] = receiver.requests
    t, macs = _signatures(req.headers["switchyard-signature"], req.body)
    assert macs == [_mac(legacy, t, req.body)]
    # WHEN the settings are saved keeping it
    r = api.put("/alerts", {"emails": [], "webhooks": [hook["id"]], "version": 1})
    assert r.status_code == 200, r.body
    assert not r.json["data"].get("signing_secrets")  # the receiver's secret did not change
    # THEN the URL left DynamoDB, and deliveries still verify with the same secret
    assert "OLDQUERY" not in json.dumps(_item(tenant.account_id))
    receiver.requests.clear()
    alerts.deliver(deps, {**event, "id": "evt-2"})
    [req] = receiver.requests
    t, macs = _signatures(req.headers["switchyard-signature"], req.body)
    assert macs == [_mac(legacy, t, req.body)] and "OLDQUERY" in req.path
