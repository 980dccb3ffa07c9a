"""Webhook audience export end to end: a local receiver that verifies signatures (written
from docs/providers/webhook.md), an authorization and a job created through the API,
profiles and an audience in the store, runs delivered from SQS by the Drain harness.

Like tests/engine/test_s3_export.py (whose fresh-tables `deps` fixture and helpers this
module reuses), every test gets tables of its own.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from chalicelib.providers import http as H
from chalicelib.providers.registry import Registry
from chalicelib.providers.webhook import WebhookProvider
from chalicelib.runs.engine import Delivery, Engine
from tests.engine import test_s3_export as s3x
from tests.engine.test_s3_export import _audience, _ids, _job, _person, _runs, _schedule_fires, _seed
from tests.http_receiver import Answer, Receiver
from tests.webhook_inbox import Inbox

# Fixtures of the S3 export tests: fresh tables per test, moto's model copies dropped.
deps = s3x.deps
_moto_copies = s3x._moto_copies

SIGNING = "whsec-CANARY-1f8e3c5a7b9d2046"
TOKEN = "whtok-CANARY-c4a81e0f6d2b"
HOURLY = {"type": "interval", "every_minutes": 60}
FAST = H.RetryPolicy(max_attempts=4, backoff_factor=0.01, backoff_jitter=0.01)


@pytest.fixture(autouse=True)
def private_urls(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Receivers on 127.0.0.1 over http, as on the local stack. Settings are re-read now,
    outside any request (chalice's test client swaps the environment during requests)."""
    from chalicelib import config

    monkeypatch.setenv("SWITCHYARD_ALLOW_PRIVATE_URLS", "1")
    config.reset()
    assert config.settings().allow_private_urls and config.settings().stage == "test"
    H.reset()
    yield
    monkeypatch.undo()
    config.reset()
    config.settings()
    H.reset()


@pytest.fixture()
def webhooks(deps, drain) -> WebhookProvider:
    """The real provider with quick retries, for the API and the engine alike."""
    provider = WebhookProvider(policy=FAST, check_policy=H.RetryPolicy(max_attempts=2, backoff_factor=0.01))
    deps.registry = Registry(extra={"webhook": provider})
    return provider


@pytest.fixture()
def inbox() -> Iterator[tuple[Receiver, Inbox]]:
    box = Inbox(secret=SIGNING)
    with Receiver(handler=box) as r:
        yield r, box


def _auth(api, url: str, method: str = "hmac", **creds: Any) -> dict[str, Any]:
    if method == "hmac" and not creds:
        creds = {"signing_secret": SIGNING}
    r = api.post("/authorizations", {"provider": "webhook", "method": method, "label": "Hook",
                                     "credentials": {"url": url, **creds}})
    assert r.status_code == 201, r.body
    return r.json["data"]


def _export_job(api, auth_id: str, audience_id: str, *, schedule: dict[str, Any] | None = None,
                **config: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "provider": "webhook", "job_type": "export", "workflow": "webhook_audience_export",
        "authorization_id": auth_id, "label": "Pro to webhook",
        "config": {"audience_id": audience_id, "fields": ["email", "first_name"], "batch_size": 5, **config},
    }
    if schedule:
        body["schedule"] = schedule
    r = api.post("/jobs", body)
    assert r.status_code == 201, r.body
    return r.json["data"]


def _received(box: Inbox) -> Counter[tuple[str, str]]:
    return Counter((e["type"], e["profile_id"]) for e in box.events)


def _unzip(value: bytes) -> str:
    """Binary attributes (memberships, plans) are zlib-compressed: read them too."""
    try:
        return zlib.decompress(value).decode("utf-8", "replace")
    except zlib.error:
        return value.decode("utf-8", "replace")


def _requests(api, auth_id: str) -> tuple[int, int]:
    series = api.get(f"/authorizations/{auth_id}/activity?granularity=day").json["data"]["series"]
    return sum(p["api_requests"] for p in series), sum(p["errors"] for p in series)


def test_runs_send_exactly_the_adds_then_who_joined_and_left(api, deps, tenant, drain, webhooks, inbox):
    r, box = inbox
    # GIVEN 12 pro and 5 free profiles, an HMAC authorization (its check pings the receiver,
    # signed) and an hourly export of the pro audience, 5 events a batch
    ids = _seed(deps, tenant.account_id, [_person(i) for i in range(12)] + [_person(i, "free") for i in range(12, 17)])
    auth = _auth(api, r.url("/hooks/switchyard"))
    assert auth["health"]["status"] == "healthy" and auth["credential_hint"] == "127.0.0.1"
    job = _export_job(api, auth["id"], _audience(api), schedule=HOURLY)
    assert len(box.pings) == 2  # the create's check and the job's
    # WHEN its first run is delivered
    drain.run()
    # THEN the receiver got every member once as audience.entered, in signed batches of <= 5
    [run] = _runs(api, job["id"])
    assert run["status"] == "succeeded" and run["added"] == 12, run
    assert _received(box) == Counter({("audience.entered", ids[f"p{i}@example.com"]): 1 for i in range(12)})
    assert box.refused == 0 and box.repeats == []
    assert [len(json.loads(b)["events"]) for b in box.batches.values()][2:] == [5, 5, 2]
    ada = next(e for e in box.events if e["profile_id"] == ids["p7@example.com"])
    assert ada["fields"] == {"email": "p7@example.com", "first_name": "P7"}
    assert (ada["job_id"], ada["run_id"], ada["account_id"]) == (job["id"], run["id"], tenant.account_id)
    # AND the authorization's requests are the 2 pings and the 3 batches
    assert _requests(api, auth["id"]) == (5, 0)
    assert run["cost"]["provider_calls"] == 3
    # WHEN 2 members leave and 3 profiles join
    box.events.clear()
    _seed(deps, tenant.account_id, [_person(0, "free"), _person(1, "free")]
          + [_person(i, "pro") for i in (12, 13, 20)])
    ids = _ids(deps, tenant.account_id)
    _schedule_fires(deps, tenant, job["id"])
    drain.run()
    # THEN the next run sent just those: 3 entered, 2 exited (with their current values)
    second = _runs(api, job["id"])[0]
    assert second["status"] == "succeeded" and (second["added"], second["removed"]) == (3, 2)
    expected = Counter({("audience.entered", ids[f"p{i}@example.com"]): 1 for i in (12, 13, 20)})
    expected.update({("audience.exited", ids[f"p{i}@example.com"]): 1 for i in (0, 1)})
    assert _received(box) == expected
    assert all(e["run_id"] == second["id"] for e in box.events)
    assert drain.errors == []


def test_without_removals_leavers_are_not_sent(api, deps, tenant, drain, webhooks, inbox):
    r, box = inbox
    _seed(deps, tenant.account_id, [_person(i) for i in range(4)])
    job = _export_job(api, _auth(api, r.url())["id"], _audience(api), schedule=HOURLY, include_removals=False)
    drain.run()
    box.events.clear()
    # WHEN one member leaves and one joins
    _seed(deps, tenant.account_id, [_person(0, "free"), _person(9)])
    ids = _ids(deps, tenant.account_id)
    _schedule_fires(deps, tenant, job["id"])
    drain.run()
    # THEN only the add was sent
    assert _received(box) == Counter({("audience.entered", ids["p9@example.com"]): 1})
    assert _runs(api, job["id"])[0]["removed"] == 0


def test_a_busy_receiver_makes_the_job_back_off_then_nothing_is_lost(
        api, deps, tenant, drain, webhooks, inbox, options):
    r, box = inbox
    # GIVEN 8 members, and a receiver that answers 503 to the 4 attempts of the first batch
    ids = _seed(deps, tenant.account_id, [_person(i) for i in range(8)])
    auth = _auth(api, r.url())
    job = _export_job(api, auth["id"], _audience(api))
    r.then(*[Answer(503, {"message": "deploying"})] * 4)
    # WHEN the run is delivered
    drain.run()
    # THEN the job sleeps, backing off, with the fault counted and a warning line
    state = _job(api, job["id"])
    assert state["status"] == "sleeping" and state["fault_count"] == 1
    assert datetime.strptime(state["next_run_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) > datetime.now(UTC)
    [warning] = api.get(f"/jobs/{job['id']}/logs?level=warning").json["data"]
    assert warning["code"] == "run.transient_error" and "503 Service Unavailable: deploying" in warning["message"]
    assert box.events == []
    # WHEN the retry comes (the receiver is back)
    retry = {"account_id": tenant.account_id, "job_id": job["id"], "trigger": "retry"}
    Engine(deps, options).handle(Delivery(body=retry, message_id="retry-1"))
    drain.run()
    # THEN the same run resumed and every member arrived exactly once
    [run] = _runs(api, job["id"])
    assert run["status"] == "succeeded" and run["added"] == 8
    assert _received(box) == Counter({("audience.entered", pid): 1 for pid in ids.values()})
    assert _job(api, job["id"])["fault_count"] == 0
    # AND the authorization shows the 4 failed attempts among its requests
    assert _requests(api, auth["id"]) == (2 + 4 + 2, 4)


def test_a_refusing_receiver_is_retried_with_backoff_until_the_failure_window_passes(
        api, deps, tenant, drain, webhooks, inbox, options):
    r, box = inbox
    # GIVEN a receiver that refuses the first batch with a 400 (mid-deploy, say)
    ids = _seed(deps, tenant.account_id, [_person(i) for i in range(3)])
    job = _export_job(api, _auth(api, r.url())["id"], _audience(api),
                      schedule={"type": "interval", "every_minutes": 60})
    r.then(Answer(400, {"message": "schema v2 not deployed yet"}))
    # WHEN the run is delivered
    drain.run()
    # THEN the job backs off (not failed), saying what the receiver said
    state = _job(api, job["id"])
    assert state["status"] == "sleeping" and state["fault_count"] == 1
    [warning] = api.get(f"/jobs/{job['id']}/logs?level=warning").json["data"]
    assert warning["code"] == "run.transient_error"
    assert "400 Bad Request: schema v2 not deployed yet" in warning["message"]
    # WHEN the retry comes and the receiver takes it THEN the same run delivers everything once
    retry = {"account_id": tenant.account_id, "job_id": job["id"], "trigger": "retry"}
    Engine(deps, options).handle(Delivery(body=retry, message_id="retry-400"))
    drain.run()
    [run] = _runs(api, job["id"])
    assert run["status"] == "succeeded" and run["added"] == 3
    assert _received(box) == Counter({("audience.entered", pid): 1 for pid in ids.values()})
    # WHEN, on a later run, it keeps refusing past the failure window (10 h)
    _seed(deps, tenant.account_id, [_person(9)])
    r.then(*[Answer(404, {"message": "hook not deployed"})] * 2)
    _schedule_fires(deps, tenant, job["id"])
    drain.run()
    assert _job(api, job["id"])["status"] == "sleeping"
    options.now = lambda: datetime.now(UTC) + timedelta(hours=11)
    Engine(deps, options).handle(Delivery(body=retry, message_id="retry-late"))
    # THEN the job fails, in the receiver's words, saying what to do
    final = _job(api, job["id"])
    assert final["status"] == "failed"
    line = api.get(f"/jobs/{job['id']}/logs?level=error").json["data"][0]
    assert line["code"] == "run.failure_window_passed"
    assert "404 Not Found: hook not deployed" in line["message"] and "resume" in line["message"]


def test_410_fails_the_job_at_once_with_a_clear_line(api, deps, tenant, drain, webhooks, inbox):
    r, box = inbox
    _seed(deps, tenant.account_id, [_person(i) for i in range(3)])
    job = _export_job(api, _auth(api, r.url())["id"], _audience(api))
    r.then(Answer(410, {"message": "this hook was deleted"}))
    # WHEN the run is delivered
    drain.run()
    # THEN the job failed after one request, and says why and what to do
    final = _job(api, job["id"])
    assert final["status"] == "failed" and final["last_run"]["status"] == "failed"
    [line] = api.get(f"/jobs/{job['id']}/logs?level=error").json["data"]
    assert line["code"] == "run.config_error"
    assert "the endpoint 127.0.0.1 answered 410 Gone: this hook was deleted" in line["message"]
    assert "gone" in line["message"] and "resume" in line["message"]
    assert len(r.requests) == 3 and box.events == []  # 2 pings, 1 batch


def test_secrets_never_leave_secrets_manager(api, deps, tenant, drain, webhooks, caplog):
    # Like tests/api/test_secret_canary.py: the app at DEBUG, the rest at INFO (botocore's
    # DEBUG dumps every request, Secrets Manager's included) — but urllib3, the HTTP
    # layer's transport, at DEBUG too.
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="switchyard")
    caplog.set_level(logging.DEBUG, logger="urllib3")
    bodies: list[str] = []

    def call(method: str, path: str, body: Any = None) -> Any:
        resp = api.call(method, path, body)
        bodies.append(resp.body.decode())
        return resp

    # GIVEN a receiver that takes bearer TOKEN and checks SIGNING, and echoes what it got
    # when it refuses a batch (as careless receivers do)
    seen: list[str] = []

    def receiver(req: Any) -> Answer:
        seen.append(req.headers.get("authorization", ""))
        if req.json()["events"][0]["type"] == "switchyard.ping":
            return Answer(200)
        return Answer(422, {"detail": f"rejected {req.headers.get('authorization')} "
                                      f"{req.headers.get('switchyard-signature')}"})

    sqs = boto3.client("sqs", region_name="us-east-1")
    messages: list[str] = []
    with Receiver(handler=receiver) as r:
        _seed(deps, tenant.account_id, [_person(i) for i in range(3)])
        audience = _audience(api)
        # WHEN authorizations are created (and a bad one refused), checked, rotated, a job is
        # created inline, runs and fails on the receiver's refusal
        call("POST", "/authorizations", {"provider": "webhook", "method": "bearer", "label": "bad",
                                         "credentials": {"url": "ftp://x", "token": TOKEN}})
        bearer = call("POST", "/authorizations", {"provider": "webhook", "method": "bearer", "label": "b",
                                                  "credentials": {"url": r.url(), "token": TOKEN}}).json["data"]
        signed = call("POST", "/authorizations", {"provider": "webhook", "method": "hmac", "label": "h",
                                                  "credentials": {"url": r.url(), "signing_secret": SIGNING}}).json["data"]
        call("POST", f"/authorizations/{bearer['id']}/check")
        call("PUT", f"/authorizations/{signed['id']}/credentials",
             {"credentials": {"url": r.url(), "signing_secret": SIGNING + "-2"}})
        inline = call("POST", "/jobs", {
            "provider": "webhook", "job_type": "export", "workflow": "webhook_audience_export",
            "label": "inline", "config": {"audience_id": audience},
            "authorization": {"method": "bearer", "label": "inline",
                              "credentials": {"url": r.url(), "token": TOKEN}}}).json["data"]
        job = call("POST", "/jobs", {
            "provider": "webhook", "job_type": "export", "workflow": "webhook_audience_export",
            "label": "signed", "config": {"audience_id": audience}, "authorization_id": signed["id"]}).json["data"]
        messages += [m["Body"] for m in sqs.receive_message(
            QueueUrl=drain.url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])]
        drain.run()
        for path in ("/authorizations", f"/authorizations/{bearer['id']}", f"/jobs/{inline['id']}",
                     f"/jobs/{job['id']}", f"/jobs/{inline['id']}/logs", f"/jobs/{job['id']}/logs",
                     f"/jobs/{inline['id']}/runs", "/providers/webhook"):
            call("GET", path)
    # THEN the secrets did go to the receiver, and the runs back off on its refusal...
    assert f"Bearer {TOKEN}" in seen and len(bodies) > 12
    for j in (inline, job):
        assert _job(api, j["id"])["status"] == "sleeping" and _job(api, j["id"])["fault_count"] == 1
    lines = api.get(f"/jobs/{inline['id']}/logs?level=warning").json["data"]
    assert "rejected Bearer [redacted]" in lines[0]["message"]

    def leaks(text: str) -> bool:
        return TOKEN in text or SIGNING in text

    # ...but they are in no response, log record, DynamoDB item or SQS message
    assert not [b for b in bodies if leaks(b)]
    assert not [rec.getMessage() for rec in caplog.records if leaks(rec.getMessage())]
    ddb = deps.table.client
    items = []
    for table in (deps.table.name, deps.profiles_table.name):
        for page in ddb.get_paginator("scan").paginate(TableName=table):
            items += page["Items"]
    assert items and not [i for i in items if leaks(json.dumps(i, default=_unzip))]
    messages += [m["Body"] for m in sqs.receive_message(
        QueueUrl=drain.url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])]
    assert messages and not [m for m in messages if leaks(m)]
    # AND Secrets Manager has them, which is the point
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    value = sm.get_secret_value(SecretId=f"switchyard/test/{tenant.account_id}/{inline['authorization_id']}")
    assert TOKEN in value["SecretString"]


def test_an_endpoint_elsewhere_cannot_take_over_a_job_and_bad_urls_name_the_field(
        api, deps, tenant, drain, webhooks):
    with Receiver(handler=Inbox()) as first, Receiver(handler=Inbox()) as second:
        # GIVEN a job on an endpoint, and an authorization for another origin
        auth = _auth(api, first.url("/in"), "none")
        assert auth["provider_account"] == f"http://127.0.0.1:{first.port}"
        job = _export_job(api, auth["id"], _audience(api))
        other = _auth(api, second.url("/in"), "none")
        # WHEN the job is moved to it THEN refused with the reason (its members are not there)
        r = api.patch(f"/jobs/{job['id']}", {"authorization_id": other["id"], "version": job["version"]})
        assert r.status_code == 422 and r.json["error"]["code"] == "job.authorization_incompatible"
        assert f"the job targets account http://127.0.0.1:{first.port}" in r.json["error"]["message"]
        # AND rotating to another origin is refused, another path on the same one is fine
        r = api.put(f"/authorizations/{auth['id']}/credentials", {"credentials": {"url": second.url("/in")}})
        assert r.status_code == 422 and r.json["error"]["code"] == "authorization.other_account"
        r = api.put(f"/authorizations/{auth['id']}/credentials", {"credentials": {"url": first.url("/v2")}})
        assert r.status_code == 200, r.body
    # AND a URL that is not one, or a missing token, is refused naming the field
    r = api.post("/authorizations", {"provider": "webhook", "method": "bearer", "label": "x",
                                     "credentials": {"url": "ftp://hooks.example.com/in"}})
    assert r.status_code == 422
    assert set(r.json["error"]["fields"]) == {"credentials.url", "credentials.token"}
    assert "https://" in r.json["error"]["fields"]["credentials.url"]
