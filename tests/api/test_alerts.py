"""Alerts (services/alerts.py): on a state change, one event on the EventBridge bus; the
alerts rule routes it to the alerts queue; delivery publishes it to the SNS topic (each
subscription filtered to its account) and POSTs it, signed, to the account's webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from chalicelib import config
from chalicelib.services import alerts, health
from tests.api.test_health import Probe
from tests.http_receiver import Receiver


@pytest.fixture()
def private_urls() -> Iterator[None]:
    # The receiver listens on 127.0.0.1 over http: allowed only with this (test/local)
    # setting. Flipped on the cached settings: re-reading the environment inside Chalice's
    # test client would pick up its stage's variables instead of the test stage's.
    conf = config.settings()
    object.__setattr__(conf, "allow_private_urls", True)
    yield
    object.__setattr__(conf, "allow_private_urls", False)


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    yield r
    r.stop()


@pytest.fixture()
def probe(deps: Any, monkeypatch: pytest.MonkeyPatch) -> Probe:
    from chalicelib.providers.registry import Registry

    p = Probe()
    monkeypatch.setattr(deps, "registry", Registry(extra={"test_probe": p}))
    return p


def _queue(name: str) -> tuple[Any, str]:
    sqs = boto3.client("sqs", region_name="us-east-1")
    return sqs, sqs.get_queue_url(QueueName=name)["QueueUrl"]


def _take(name: str) -> list[dict[str, Any]]:
    sqs, url = _queue(name)
    out = []
    while True:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not msgs:
            return out
        for m in msgs:
            out.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def _email_stand_in(account_id: str) -> str:
    """An SQS queue subscribed to the topic the way an e-mail address is (same filter)."""
    sqs, sns = boto3.client("sqs", region_name="us-east-1"), boto3.client("sns", region_name="us-east-1")
    url = sqs.create_queue(QueueName=f"alerts-inbox-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic = next(t["TopicArn"] for t in sns.list_topics()["Topics"] if t["TopicArn"].endswith(":switchyard-test-alerts"))
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={
        "FilterPolicy": json.dumps({"account_id": [account_id]}), "RawMessageDelivery": "true"})
    return url


def test_an_unhealthy_authorization_alerts_by_email_and_signed_webhook_once(
        api, deps, tenant, probe, private_urls, receiver) -> None:
    # GIVEN alert settings with an e-mail and a webhook (the signing secret is shown once)
    r = api.put("/alerts", {"emails": ["ops@acme.example"], "webhooks": [receiver.url("/alerts")], "version": 0})
    assert r.status_code == 200, r.body
    [secret] = r.json["data"]["signing_secrets"].values()
    assert secret.startswith("whsec_")
    assert "signing_secrets" not in api.get("/alerts").json["data"]
    inbox = _email_stand_in(tenant.account_id)
    key = f"key-{uuid.uuid4().hex}"
    created = api.post("/authorizations", {"provider": "test_probe", "method": "api_key", "label": "CRM key",
                                           "credentials": {"api_key": key}})
    auth_id = created.json["data"]["id"]
    _take("switchyard-test-alerts")

    # WHEN its key gets revoked and the sweep sees it twice
    probe.modes[key] = "bad"
    health.check_many(deps, [(tenant.account_id, auth_id)], timeout=10)
    health.check_many(deps, [(tenant.account_id, auth_id)], timeout=10)

    # THEN one event reached the alerts queue through the bus and its rule
    events = [e for e in _take("switchyard-test-alerts") if e["detail"]["account_id"] == tenant.account_id]
    assert [e["detail-type"] for e in events] == ["Authorization Unhealthy"]
    assert events[0]["source"] == "switchyard" and events[0]["detail"]["authorization_id"] == auth_id
    # WHEN the alerts Lambda delivers it
    assert alerts.deliver(deps, events[0]) == {"emails": 1, "webhooks": 1}
    # THEN the webhook got it, signed with the account's secret over "<t>.<body>"
    [req] = receiver.requests
    sig = dict(p.split("=", 1) for p in req.headers["switchyard-signature"].split(","))
    expected = hmac.new(secret.encode(), f"{sig['t']}.".encode() + req.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(sig["v1"], expected)
    assert req.json()["type"] == "Authorization Unhealthy" and req.json()["detail"]["label"] == "CRM key"
    # AND the topic delivered it to this account's subscriber only, with no secret in it
    sqs, _ = _queue("switchyard-test-alerts")
    mail = sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10).get("Messages", [])
    assert len(mail) == 1 and "Authorization Unhealthy" in mail[0]["Body"]
    assert key not in mail[0]["Body"] and key not in req.body.decode()


def test_settings_are_versioned_and_validated(api, tenant) -> None:
    first = api.put("/alerts", {"emails": ["a@acme.example"], "version": 0})
    assert first.status_code == 200 and first.json["data"]["version"] == 1
    # a stale version changes nothing
    stale = api.put("/alerts", {"emails": [], "version": 0})
    assert stale.status_code == 409
    assert api.get("/alerts").json["data"]["emails"] == ["a@acme.example"]
    # bad addresses and URLs are named
    bad = api.put("/alerts", {"emails": ["not-an-email"], "webhooks": ["ftp://x"], "version": 1})
    assert bad.status_code == 422 and set(bad.json["error"]["fields"]) >= {"emails.0", "webhooks.0"}, bad.body
    # removing the address unsubscribes it
    assert api.put("/alerts", {"emails": [], "version": 1}).json["data"]["emails"] == []


def test_observers_read_settings_but_cannot_change_them(api, api_for) -> None:
    user = api.post("/users", {"email": "obs@acme.example", "name": "o", "role": "observer"})
    token = api.post("/tokens", {"label": "o", "user_id": user.json["data"]["id"]}).json["data"]["token"]
    observer = api_for(token)
    assert observer.get("/alerts").status_code == 200
    assert observer.put("/alerts", {"emails": [], "version": 0}).status_code == 403
    assert observer.post("/alerts/test", {}).status_code == 403


def test_an_admin_sends_a_test_alert(api) -> None:
    # GIVEN the account's admin (allowed to send); WHEN a test alert is asked for
    r = api.post("/alerts/test", {})
    # THEN it is accepted and published on the bus
    assert r.status_code == 202, r.body
    assert r.json["data"] == {"published": True}


def test_an_authorization_healthy_again_alerts_once(api, deps, tenant, probe) -> None:
    # GIVEN an authorization whose key was revoked (one "Authorization Unhealthy" alert)
    key = f"key-{uuid.uuid4().hex}"
    created = api.post("/authorizations", {"provider": "test_probe", "method": "api_key", "label": "CRM key",
                                           "credentials": {"api_key": key}})
    auth_id = created.json["data"]["id"]
    probe.modes[key] = "bad"
    health.check_many(deps, [(tenant.account_id, auth_id)], timeout=10)
    _take("switchyard-test-alerts")

    # WHEN the key works again and the sweep sees it twice
    probe.modes[key] = "ok"
    health.check_many(deps, [(tenant.account_id, auth_id)], timeout=10)
    health.check_many(deps, [(tenant.account_id, auth_id)], timeout=10)

    # THEN exactly one "Authorization Healthy Again" reached the alerts queue, about it
    events = [e for e in _take("switchyard-test-alerts") if e["detail"]["account_id"] == tenant.account_id]
    assert [e["detail-type"] for e in events] == ["Authorization Healthy Again"]
    assert events[0]["detail"]["authorization_id"] == auth_id and events[0]["detail"]["label"] == "CRM key"
    assert key not in json.dumps(events)
    # AND a check that finds it healthy again later alerts nothing
    assert api.post(f"/authorizations/{auth_id}/check").status_code == 200
    assert [e for e in _take("switchyard-test-alerts") if e["detail"]["account_id"] == tenant.account_id] == []
