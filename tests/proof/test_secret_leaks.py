"""Proof suite: secret leaks (SPEC rule 12).

Canary Mailchimp API keys (random, unique to the run) go through an authorization's whole
life cycle against the fake Mailchimp over real HTTP — create (and a refused create),
check, options, an import and an export job run by the runs Lambda, a transient outage
whose 500s echo the key, rotation to a second canary, the daily health sweep while the key
is refused, check now, a run that fails on a 401 whose body and headers echo the key,
alert delivery, delete — and are then searched for everywhere they could have gone:

API response bodies and headers · log records (INFO, DEBUG for switchyard and urllib3) ·
stdout/stderr (where the EMF metrics go) · every request the app sent to AWS, per service
(DynamoDB, SQS, EventBridge, CloudWatch, SNS, Scheduler...) · every DynamoDB item of every
table · every message left on every SQS queue, DLQs included · every EventBridge event
(the bus routed to a capture queue) · the audit log · delivered alert webhooks.

Found 0 times each. The positive controls show the search can see them: the canaries are
in the Secrets Manager requests and in what Mailchimp received.

The small and the full size are the same life cycle (it is a walk, not a load): `size`
only sets how many members the jobs move.

Existing narrower canary tests: tests/api/test_secret_canary.py (S3 keys and an assume-role
external id through create/inline/rotate/change/delete), tests/engine/test_mailchimp.py
(the Mailchimp key through runs). This suite adds the rotation, the sweep, the failing run
with an echoing provider, events, alerts, metrics, all tables and all queues.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.fakes.mailchimp import ERROR_TYPE, Seen
from tests.http_receiver import Receiver
from tests.proof.leaks import AwsWire, BusCapture, Places, all_items, forms, queued_messages
from tests.proof.record import record, size

HOURLY = {"type": "interval", "every_minutes": 60}
OLD = "2026-01-01T00:00:00+00:00"


def _canary(tag: str, dc: str) -> str:
    # A Mailchimp key is <8..64 alphanumerics>-<dc>; random so no other text can hold it.
    return f"cnry{tag}{secrets.token_hex(14)}-{dc}"


class EchoingMailchimp:
    """Wraps the fake's dispatch: a refused key is answered 401 with the key echoed in the
    body (detail, errors, a raw text field) and in headers; `outage` answers 500s that
    echo it too. The worst a provider could do to us."""

    def __init__(self, fake: Any) -> None:
        self.fake = fake
        self.inner = fake.handle
        self.outage = 0  # requests left to answer with an echoing 500
        self.outage_path = "/batches"
        self.echoed = 0
        fake.handle = self.handle

    @staticmethod
    def _key(r: Seen) -> tuple[str, str]:
        header = r.headers.get("authorization", "")
        scheme, _, cred = header.partition(" ")
        if scheme.lower() != "basic":
            return "", header
        try:
            return base64.b64decode(cred).decode().partition(":")[2], header
        except ValueError:
            return "", header

    def handle(self, r: Seen) -> tuple[int, Any, dict[str, str]]:
        key, header = self._key(r)
        if not key or r.path.startswith("/login/"):
            return self.inner(r)
        if key not in self.fake.api_keys:
            self.fake.requests.append(r)
            self.echoed += 1
            return 401, {"type": ERROR_TYPE, "title": "API Key Invalid",
                         "detail": f"Your API key {key} may be invalid, or you've attempted to access the "
                                   "wrong datacenter.",
                         "errors": [{"field": "apikey", "message": f"{key} / {header}"}],
                         "instance": key}, {"X-Echo-Key": key, "WWW-Authenticate": f'Basic realm="{key}"'}
        if self.outage > 0 and self.outage_path in r.path:
            self.outage -= 1
            self.fake.requests.append(r)
            self.echoed += 1
            return 500, {"type": ERROR_TYPE, "title": "Internal Server Error",
                         "detail": f"An unexpected internal error has occurred (request by {key}).",
                         "instance": header}, {"X-Echo-Key": key}
        return self.inner(r)


@pytest.fixture()
def tenant(new_tenant: Any) -> Any:
    return new_tenant("Leaks")


@pytest.fixture()
def api(api_for: Any, tenant: Any) -> Any:
    return api_for(tenant.admin_token)


@pytest.fixture()
def capture_bus(deps: Any) -> Iterator[BusCapture]:
    with BusCapture() as bus:
        yield bus


class EchoingReceiver:
    """A webhook endpoint (tests/http_receiver.py handler) that accepts one bearer token and
    answers any other with a 401 echoing the Authorization header, in JSON and plain text."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.echoed = 0

    def __call__(self, req: Any) -> Any:
        from tests.http_receiver import Answer

        header = req.headers.get("authorization", "")
        if header == f"Bearer {self.token}":
            return Answer(200, {"ok": True})
        self.echoed += 1
        if self.echoed % 2:
            return Answer(401, {"error": {"message": f"token refused: {header}"}}, {"X-Echo": header})
        return Answer(401, f"401 Unauthorized ({header})", {"X-Echo": header})


class Lambdas:
    """The runs, health and alerts queues delivered to the app's own Lambda handlers
    (chalice.test), only this account's messages; the others' are dropped, as every test
    that drains a shared queue does."""

    def __init__(self, client: Any, account_id: str) -> None:
        self.client = client
        self.account_id = account_id
        self.sqs = boto3.client("sqs", region_name="us-east-1")
        self.handled: dict[str, int] = {"run_step": 0, "check_health": 0, "deliver_alerts": 0}

    def _url(self, name: str) -> str:
        return str(self.sqs.get_queue_url(QueueName=name)["QueueUrl"])

    def _ours(self, body: str) -> bool:
        try:
            doc = json.loads(body)
        except ValueError:
            return False
        return self.account_id in (doc.get("account_id"), (doc.get("detail") or {}).get("account_id"))

    def drain(self, queue: str, handler: str, limit: int = 200) -> int:
        url = self._url(queue)
        n = 0
        while n < limit:
            msgs = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not msgs:
                return n
            for m in msgs:  # one invocation per message: a batch of ours would be the same
                if self._ours(m["Body"]):
                    self.client.lambda_.invoke(handler, self.client.events.generate_sqs_event(
                        queue_name=queue, message_bodies=[m["Body"]]))
                    self.handled[handler] += 1
                    n += 1
            self.sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
        return n

    def runs(self) -> int:
        return self.drain("switchyard-test-runs", "run_step")

    def sweep(self) -> None:
        self.client.lambda_.invoke("health_sweep", self.client.events.generate_cw_event(
            source="aws.events", detail_type="Scheduled Event", detail={}, resources=[]))
        self.drain("switchyard-test-health", "check_health", limit=10_000)

    def alerts(self) -> int:
        return self.drain("switchyard-test-alerts", "deliver_alerts")


def test_canary_credentials_are_found_nowhere_but_secrets_manager(
        api, client, deps, tenant, fake_mailchimp, capture_bus, caplog, capfd) -> None:
    from chalicelib.store.metrics import metrics

    caplog.set_level(logging.INFO)
    for name in ("switchyard", "urllib3"):
        caplog.set_level(logging.DEBUG, logger=name)
    members = size(12, 600)
    fake = fake_mailchimp
    echo = EchoingMailchimp(fake)
    first, second, refused = (_canary(t, fake.dc) for t in ("A", "B", "X"))
    hook_token = f"whtok{secrets.token_hex(16)}"
    canaries = {"first key": first, "rotated key": second, "refused key": refused, "webhook token": hook_token}
    endpoint = EchoingReceiver(hook_token)
    fake.api_keys.update({first, second})
    fake.add_list("L1", "Customers", [("FNAME", "First", "text"), ("PLAN", "Plan", "text")])
    for i in range(members):
        fake.add_member("L1", f"in{i}@x.io", merge_fields={"FNAME": f"In{i}"}, last_changed=OLD)
    lam = Lambdas(client, tenant.account_id)
    lam.runs()  # other tests' leftovers
    responses: list[str] = []

    def call(method: str, path: str, body: Any = None, expect: int | None = None) -> Any:
        r = api.call(method, path, body)
        responses.append(f"{r.status_code} {json.dumps(dict(r.headers))}\n{r.body.decode()}")
        if expect is not None:
            assert r.status_code == expect, (method, path, r.body)
        return r.json

    def fire(job_id: str) -> None:
        deps.runs_queue.send({"account_id": tenant.account_id, "job_id": job_id, "trigger": "schedule"})

    metrics().flush()
    capfd.readouterr()
    with Receiver() as hooks, Receiver(handler=endpoint) as receiver, AwsWire() as wire:
        # -- alerts go to a webhook and an e-mail address (SNS) ---------------------------------
        version = call("GET", "/alerts", expect=200)["data"]["version"]
        call("PUT", "/alerts", {"emails": ["ops@acme.example"], "webhooks": [hooks.url("/alerts")],
                                "version": version}, expect=200)
        # -- create: refused (401 echoing the key), then accepted; check; options ---------------
        call("POST", "/authorizations", {"provider": "mailchimp", "method": "api_key", "label": "refused",
                                         "credentials": {"api_key": refused}}, expect=422)
        auth = call("POST", "/authorizations", {"provider": "mailchimp", "method": "api_key", "label": "Key",
                                                "credentials": {"api_key": first}}, expect=201)["data"]
        call("POST", f"/authorizations/{auth['id']}/check", expect=200)
        base = "/providers/mailchimp/workflows/mailchimp_audience_export/options"
        call("GET", f"{base}/list_id?authorization_id={auth['id']}", expect=200)
        call("GET", f"{base}/fields?authorization_id={auth['id']}&list_id=L1", expect=200)
        # -- an import and an export job, run by the runs Lambda -------------------------------------
        imp = call("POST", "/jobs", {"provider": "mailchimp", "job_type": "import", "workflow": "mailchimp_import",
                                     "authorization_id": auth["id"], "label": "In", "schedule": HOURLY,
                                     "config": {"list_id": "L1"}}, expect=201)["data"]
        audience = call("POST", "/audiences", {"name": "Everyone in", "filter": {
            "all": [{"field": "first_name", "op": "exists"}]}}, expect=201)["data"]
        exp = call("POST", "/jobs", {"provider": "mailchimp", "job_type": "export",
                                     "workflow": "mailchimp_audience_export", "authorization_id": auth["id"],
                                     "label": "Out", "schedule": HOURLY,
                                     "config": {"audience_id": audience["id"], "list_id": "L1",
                                                "fields": {"first_name": "FNAME"}}}, expect=201)["data"]
        # the export's batch operations hit an outage whose 500s echo the key (4 attempts)
        echo.outage = 4
        lam.runs()
        assert call("GET", f"/jobs/{imp['id']}", expect=200)["data"]["last_run"]["added"] == members
        exp_now = call("GET", f"/jobs/{exp['id']}", expect=200)["data"]
        assert exp_now["status"] == "sleeping" and exp_now["fault_count"] == 1, exp_now
        # -- rotate to the second key; the first stops working; the export resumes -----------------
        call("PUT", f"/authorizations/{auth['id']}/credentials", {"credentials": {"api_key": second}},
             expect=200)
        fake.api_keys.discard(first)
        for _ in range(3):  # run now rather than wait for the backoff (again if a step ran out of time)
            call("POST", f"/jobs/{exp['id']}/run", expect=200)
            lam.runs()
            exp_now = call("GET", f"/jobs/{exp['id']}", expect=200)["data"]
            if exp_now["last_run"]["status"] != "retrying":
                break
        assert exp_now["last_run"]["status"] == "succeeded" and exp_now["fault_count"] == 0, (
            exp_now, api.get(f"/jobs/{exp['id']}/logs").json["data"][:5])
        # -- the daily sweep while Mailchimp refuses the key, then check now once it works ----------
        fake.api_keys.discard(second)
        lam.sweep()
        health = call("GET", f"/authorizations/{auth['id']}", expect=200)["data"]["health"]
        assert health["status"] == "unhealthy", health
        fake.api_keys.add(second)
        assert call("POST", f"/authorizations/{auth['id']}/check", expect=200)["data"]["status"] == "healthy"
        # -- a run that fails: 401 echoing the key --------------------------------------------------
        fake.api_keys.discard(second)
        fire(imp["id"])
        lam.runs()
        failed = call("GET", f"/jobs/{imp['id']}", expect=200)["data"]
        assert failed["status"] == "failed" and "401" in failed["last_run"]["error"], failed
        lam.alerts()
        # -- a webhook export with a bearer token: the endpoint refuses it, echoing it --------------
        hook = call("POST", "/authorizations", {"provider": "webhook", "method": "bearer", "label": "Hook",
                                                "credentials": {"url": receiver.url("/in"), "token": hook_token}},
                    expect=201)["data"]
        hook_job = call("POST", "/jobs", {"provider": "webhook", "job_type": "export",
                                          "workflow": "webhook_audience_export", "authorization_id": hook["id"],
                                          "label": "Hook out", "config": {"audience_id": audience["id"]}},
                        expect=201)["data"]
        endpoint.token = "rotated-at-the-endpoint"
        lam.runs()
        assert call("GET", f"/jobs/{hook_job['id']}", expect=200)["data"]["status"] == "failed"
        call("POST", f"/authorizations/{hook['id']}/check", expect=200)
        call("PUT", f"/authorizations/{hook['id']}/credentials",
             {"credentials": {"url": receiver.url("/in"), "token": hook_token + "x"}}, expect=422)
        lam.alerts()
        # -- everything a user can read -------------------------------------------------------------
        for path in ("/authorizations", f"/authorizations/{auth['id']}", f"/authorizations/{auth['id']}/health",
                     f"/authorizations/{auth['id']}/activity?granularity=hour", "/jobs", "/alerts",
                     *(p for j in (imp, exp) for p in (f"/jobs/{j['id']}", f"/jobs/{j['id']}/runs",
                                                       f"/jobs/{j['id']}/logs", f"/jobs/{j['id']}/logs?level=error",
                                                       f"/jobs/{j['id']}/activity?granularity=day"))):
            call("GET", path, expect=200)
        audit = call("GET", "/audit?limit=200", expect=200)["data"]
        # -- delete -----------------------------------------------------------------------------------
        call("DELETE", f"/jobs/{exp['id']}", expect=204)
        call("DELETE", f"/jobs/{imp['id']}", expect=204)
        call("DELETE", f"/authorizations/{auth['id']}", expect=204)
        call("DELETE", f"/jobs/{hook_job['id']}", expect=204)
        call("DELETE", f"/authorizations/{hook['id']}", expect=204)
        metrics().flush()
    out, err = capfd.readouterr()
    events = capture_bus.take()
    left_on_queues = queued_messages()
    items = all_items()

    # -- search ---------------------------------------------------------------------------------------
    places = Places({name: forms(value) for name, value in canaries.items()})
    places.search("API response bodies and headers", responses)
    places.search("log records (message, arguments, extra fields, tracebacks)", [
        f"{r.getMessage()} {r.__dict__!r} {r.exc_text or ''}" for r in caplog.records])
    places.search("stdout and stderr (EMF metric lines included)", [out, err])
    places.search("EMF metric documents on stdout", [ln for ln in out.splitlines() if '"_aws"' in ln])
    for service in sorted(s for s in wire.bodies if s != "secretsmanager"):
        places.search(f"app requests to AWS: {service}", wire.bodies[service])
    places.search("DynamoDB items, every table", [i for table in items.values() for i in table])
    places.search("SQS messages left on every queue (DLQs included)", [
        m for msgs in left_on_queues.values() for m in msgs])
    places.search("EventBridge events on the bus", events)
    places.search("audit entries (GET /audit)", [json.dumps(a) for a in audit])
    places.search("alert webhooks delivered", [r.body.decode() + json.dumps(r.headers) for r in hooks.requests])

    # positive controls: the search sees the canaries where they belong
    in_secrets = Places({name: forms(value) for name, value in canaries.items()})
    stored = in_secrets.search("Secrets Manager requests", wire.bodies["secretsmanager"])
    sent = in_secrets.search("requests Mailchimp received", [
        json.dumps(r.headers) + r.body.decode() for r in fake.requests])
    assert stored["first key"] and stored["rotated key"], stored
    assert sent["first key"] and sent["rotated key"] and sent["refused key"], sent
    heard = in_secrets.search("requests the webhook endpoint received", [
        json.dumps(r.headers) + r.body.decode() for r in receiver.requests])
    assert heard["webhook token"] and stored["webhook token"], (heard, stored)

    # the life cycle went where it should
    assert echo.echoed >= 4 and lam.handled["check_health"] >= 1 and lam.handled["deliver_alerts"] >= 3
    types = sorted(json.loads(e)["detail-type"] for e in events
                   if json.loads(e)["detail"].get("account_id") == tenant.account_id)
    # the export recovered from its outage; the sweep found the key refused, check now found it
    # working again; the failing run failed the import and made the authorization unhealthy
    # (and the webhook export failed on its 401, its authorization unhealthy)
    assert types == sorted(["Job Recovered", "Authorization Unhealthy", "Authorization Healthy Again",
                            "Authorization Unhealthy", "Job Failed", "Job Failed",
                            "Authorization Unhealthy"]), types
    assert hooks.requests and audit and '"_aws"' in out
    searched = sum(n for _, n, _ in places.rows)
    sqs_sends = len(wire.bodies.get("sqs", []))

    record("secret_leaks", "Secret leaks", {
        "canaries": len(canaries),
        "places searched": len(places.rows),
        "texts searched": searched,
        "hits": sum(n for _, _, n in places.leaks()),
        "API responses": len(responses),
        "log records": len(caplog.records),
        "DynamoDB items": sum(len(v) for v in items.values()),
        "app AWS requests": sum(len(v) for v in wire.bodies.values()),
        "SQS requests": sqs_sends,
        "events": len(events),
        "provider answers echoing the secret": echo.echoed + endpoint.echoed,
    }, table=places.table() + "\n\nPositive controls (where the canaries must be):\n\n" + in_secrets.table(),
        summary=("Three canary Mailchimp API keys (the first, the rotated one, one Mailchimp refused) through "
                 "create, check, options, an import and an export run, an outage whose 500s echo the key, "
                 "rotation, the daily sweep while the key is refused, check now, a run failing on a 401 "
                 "that echoes the key in its body and headers, alert delivery (SNS and webhook) and delete; and a "
                 "webhook bearer token whose endpoint refuses it with 401s echoing the Authorization header "
                 "(JSON and plain text), through create, a failing export, check now and a refused rotation. "
                 "Searched as themselves, their first 16 characters and inside an HTTP Basic header. "
                 "Logs captured at INFO (DEBUG for switchyard and urllib3)."),
        order=30)
    assert places.leaks() == [], places.table()
