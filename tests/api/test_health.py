"""Authorization health (services/health.py): the daily sweep's fan-out through the sharded
index and the health queue, checks with a hard timeout, transitions recorded once, "check
now", and GET /authorizations/{id}/health."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from chalicelib.domain.catalog import AuthMethodSpec, JobType, ProviderSpec, WorkflowSpec
from chalicelib.domain.models import CheckResult, HealthStatus
from chalicelib.providers.base import Option, ProviderError
from chalicelib.providers.registry import Registry
from chalicelib.services import health
from chalicelib.store.metrics import metrics
from tests.engine.sources import Key, ListImportConfig
from tests.timing import bound, concurrent_seconds


class Probe:
    """A provider whose check answers what `modes[api_key]` says (default: healthy)."""

    spec = ProviderSpec(
        id="test_probe", name="Probe", description="test double",
        auth_methods=(AuthMethodSpec("api_key", "API key", "", Key),),
        workflows=(WorkflowSpec("list_import", "List import", JobType.IMPORT, "", ("api_key",),
                                ListImportConfig),),
    )

    def __init__(self) -> None:
        self.modes: dict[str, str] = {}
        self.calls: list[str] = []
        self.ended: list[str] = []  # keys whose check has returned (hung ones: once released)
        self.release = threading.Event()  # set at teardown: hung checks end with the test

    def check(self, method: str, credentials: Any, resources: dict[str, str], counter: Any = None) -> CheckResult:
        key = credentials.api_key.get_secret_value()
        self.calls.append(key)
        mode = self.modes.get(key, "ok")
        if mode == "hang":
            self.release.wait(300)
        self.ended.append(key)
        if mode == "flaky":
            raise ProviderError("throttled", transient=True)
        if mode == "bad":
            return CheckResult(HealthStatus.UNHEALTHY, "the API key was revoked")
        return CheckResult(HealthStatus.HEALTHY, None, provider_account="probe-1")

    def options(self, *a: Any, **k: Any) -> list[Option]:
        return []

    def credential_hint(self, method: str, credentials: Any) -> str | None:
        return None


@pytest.fixture()
def probe(deps: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Probe]:
    p = Probe()
    monkeypatch.setattr(deps, "registry", Registry(extra={"test_probe": p}))
    yield p
    p.release.set()


def _auth(api: Any, key: str) -> str:
    r = api.post("/authorizations", {"provider": "test_probe", "method": "api_key", "label": key[:20],
                                     "credentials": {"api_key": key}})
    assert r.status_code == 201, r.body
    return str(r.json["data"]["id"])


def _health_queue() -> tuple[Any, str]:
    sqs = boto3.client("sqs", region_name="us-east-1")
    return sqs, sqs.get_queue_url(QueueName="switchyard-test-health")["QueueUrl"]


def _drain_health_queue() -> list[dict[str, Any]]:
    sqs, url = _health_queue()
    out = []
    while True:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not msgs:
            return out
        for m in msgs:
            out.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def test_the_sweep_queues_every_authorization_once_without_a_scan(api, deps, tenant, probe) -> None:
    # GIVEN three authorizations of this account (and whatever other tests made)
    ids = {_auth(api, f"key-{uuid.uuid4().hex}") for _ in range(3)}
    _drain_health_queue()
    ops: list[str] = []
    events = deps.table.client.meta.events
    events.register("before-call.dynamodb", lambda model, **kw: ops.append(model.name), unique_id="sweep-ops")
    try:
        # WHEN the daily sweep runs
        queued, requests = health.sweep(deps)
    finally:
        events.unregister("before-call.dynamodb", unique_id="sweep-ops")

    # THEN each of ours is one message on the health queue, ids only
    bodies = _drain_health_queue()
    ours = [b for b in bodies if b["account_id"] == tenant.account_id]
    assert sorted(b["authorization_id"] for b in ours) == sorted(ids)
    assert all(set(b) == {"account_id", "authorization_id"} for b in bodies)
    assert len(bodies) == queued
    # AND it read the sweep index with Queries only, and sent batches of 10
    assert set(ops) == {"Query"}, ops
    assert requests <= -(-queued // 10) + 16  # at most one partial batch per shard page


def test_checks_run_concurrently_with_a_hard_timeout_and_record_transitions_once(api, deps, tenant, probe) -> None:
    # GIVEN four authorizations: one whose key gets revoked, one whose provider hangs,
    # one throttled, one fine
    revoked, hung, throttled, fine = (f"key-{n}-{uuid.uuid4().hex}" for n in range(4))
    ids = {k: _auth(api, k) for k in (revoked, hung, throttled, fine)}
    probe.modes.update({revoked: "bad", hung: "hang", throttled: "flaky"})

    # WHEN the health handler checks them with a timeout derived from how long reading their
    # secrets from moto, ten at once, takes now (what the others do in that time)
    secret = deps.auths.get(tenant.account_id, ids[fine]).secret_name
    timeout = bound(concurrent_seconds(lambda: deps.secrets.read(secret)), floor=3.0)
    probe.ended.clear()  # (creating them checked each once)
    verdicts = {v.auth_id: v for v in health.check_many(
        deps, [(tenant.account_id, i) for i in ids.values()], timeout=timeout)}

    # THEN the hanging one did not hold up the others: they had their verdicts while it hung
    assert hung not in probe.ended
    assert verdicts[ids[revoked]].status == HealthStatus.UNHEALTHY and verdicts[ids[revoked]].changed
    assert verdicts[ids[hung]].status == HealthStatus.UNHEALTHY and verdicts[ids[hung]].changed
    assert verdicts[ids[hung]].reason == f"unreachable: no answer within {timeout:g} s"
    assert verdicts[ids[throttled]].status is None  # inconclusive: nothing stored
    assert verdicts[ids[fine]].status == HealthStatus.HEALTHY and not verdicts[ids[fine]].changed
    # AND the API shows the verdicts and one transition for the revoked key
    summary = api.get(f"/authorizations/{ids[revoked]}").json["data"]
    assert summary["health"]["status"] == "unhealthy"
    assert summary["health"]["reason"] == "the API key was revoked"
    history = api.get(f"/authorizations/{ids[revoked]}/health").json["data"]
    assert [(h["from"], h["to"], h["by"]) for h in history] == [("healthy", "unhealthy", "sweep")]
    assert api.get(f"/authorizations/{ids[throttled]}").json["data"]["health"]["status"] == "healthy"
    assert api.get(f"/authorizations/{ids[fine]}/health").json["data"] == []

    # WHEN the same verdicts come again THEN no new transition is written
    health.check_many(deps, [(tenant.account_id, ids[revoked])], timeout=10)
    assert len(api.get(f"/authorizations/{ids[revoked]}/health").json["data"]) == 1

    # WHEN the key works again and a user checks now THEN it is healthy, by that user
    probe.modes[revoked] = "ok"
    r = api.post(f"/authorizations/{ids[revoked]}/check")
    assert r.status_code == 200 and r.json["data"]["status"] == "healthy", r.body
    history = api.get(f"/authorizations/{ids[revoked]}/health").json["data"]
    assert [(h["from"], h["to"], h["by"]) for h in history] == [
        ("unhealthy", "healthy", tenant.admin_user_id), ("healthy", "unhealthy", "sweep")]


def test_the_health_queue_handler_checks_what_the_sweep_sent(api, client, deps, tenant, probe) -> None:
    # GIVEN a revoked key, queued by the sweep
    key = f"key-{uuid.uuid4().hex}"
    auth_id = _auth(api, key)
    probe.modes[key] = "bad"
    event = client.events.generate_sqs_event(
        queue_name="switchyard-health",
        message_bodies=[json.dumps({"account_id": tenant.account_id, "authorization_id": auth_id}),
                        "not json"])
    # WHEN the Lambda handles the batch
    client.lambda_.invoke("check_health", event)
    # THEN the authorization is unhealthy, and the malformed message was dropped
    assert api.get(f"/authorizations/{auth_id}").json["data"]["health"]["status"] == "unhealthy"


def test_another_accounts_health_is_404(api, api_for, new_tenant, probe) -> None:
    auth_id = _auth(api, f"key-{uuid.uuid4().hex}")
    other = api_for(new_tenant("Other").admin_token)
    assert other.get(f"/authorizations/{auth_id}/health").status_code == 404


def test_the_health_handler_emits_emf_metrics_without_secrets(api, client, deps, tenant, probe, capsys) -> None:
    # GIVEN a revoked key and a working one, queued with a malformed message
    bad, good = f"CANARY-bad-{uuid.uuid4().hex}", f"CANARY-good-{uuid.uuid4().hex}"
    ids = [_auth(api, bad), _auth(api, good)]
    probe.modes[bad] = "bad"
    event = client.events.generate_sqs_event(
        queue_name="switchyard-health",
        message_bodies=[json.dumps({"account_id": tenant.account_id, "authorization_id": i}) for i in ids]
        + ["not json"])
    metrics().flush()  # what earlier direct calls counted
    capsys.readouterr()
    # WHEN the Lambda handles the batch
    client.lambda_.invoke("check_health", event)
    # THEN it printed one EMF document in the Switchyard namespace with the sweep's counts
    out = capsys.readouterr().out
    docs = [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]
    assert len(docs) == 1, out
    [doc] = docs
    [directive] = doc["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "Switchyard"
    assert directive["Dimensions"] == [["stage", "service"]]
    assert (doc["SweepChecked"], doc["SweepUnhealthy"], doc["SweepHealthy"]) == ([2.0], [1.0], [1.0])
    assert (doc["SweepTimeouts"], doc["SweepInconclusive"], doc["SweepErrors"]) == ([0.0], [0.0], [1.0])
    # AND no credential, label or account id in it (the JSON log lines on the same stdout
    # carry account ids on purpose, docs/operations.md "Logs"; credentials nowhere)
    emf = "\n".join(line for line in out.splitlines() if line.startswith('{"_aws"'))
    for secret in (bad, good, bad[:20], tenant.account_id):
        assert secret not in emf
    for secret in (bad, good, bad[:20]):
        assert secret not in out
