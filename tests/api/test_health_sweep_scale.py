"""The health sweep at scale: 2,000 authorizations of 3 accounts, some
with a provider that hangs, all swept through the health queue and its Lambda.

Seeded straight through the store (BatchWriteItem) on tables of this test's own, so the
sweep index holds exactly these; their credentials share three secrets (one per
behaviour): the check still reads its secret, and counting the provider's calls per key
plus every authorization's `checked_at` shows each was checked exactly once.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.domain.models import Authorization, Health, HealthStatus, empty_usage
from chalicelib.providers.registry import Registry
from chalicelib.services import health
from chalicelib.store import keys as K
from chalicelib.store.authorizations import HEALTH_PREFIX
from tests.api.test_alerts import _take
from tests.api.test_health import Probe, _drain_health_queue, _health_queue
from tests.timing import bound, concurrent_seconds

# The full proof is 2,000 authorizations: `SWITCHYARD_SWEEP_SCALE=2000` runs that size (about
# 2 minutes on an idle machine); `make test` runs 300 to keep CI well inside its 20 minutes.
N = int(os.environ.get("SWITCHYARD_SWEEP_SCALE", "300"))
# A batch holding a hanging check waits out the whole timeout (>= 3 s), and the sweep spreads
# them over as many batches: 15 among 300 held `make test` ~36 s longer than 3 do, proving the
# same (each ends unreachable, once). `make proof` keeps 15 among its 2,000.
HANGING = 15 if N >= 2000 else 3
REVOKED = 25
# The check timeout: a healthy check (a GetSecretValue from moto, ten at once) must never
# miss it, so it comes from how long that takes at the start of the run (tests/timing.py),
# never under 3 s; each batch with a hanging one waits it out.
TIMEOUT_FLOOR = 3.0


@pytest.fixture()
def deps(aws_endpoint: str) -> Iterator[Any]:
    from tests.tables import fresh_deps

    yield from fresh_deps()


def _seed(deps: Any, accounts: list[str], keys: dict[str, str]) -> dict[str, tuple[str, str]]:
    """N healthy authorizations, round-robin over the accounts; returns id -> (account, mode)."""
    from chalicelib.store.authorizations import AuthorizationRepo

    for key in keys.values():
        deps.secrets.create(f"scale/{key}", {"api_key": key}, tags={"test": "scale"})
    modes = ["hang"] * HANGING + ["bad"] * REVOKED + ["ok"] * (N - HANGING - REVOKED)
    made: dict[str, tuple[str, str]] = {}
    puts = []
    repo = AuthorizationRepo(deps.table)
    for i, mode in enumerate(modes):
        account = accounts[i % len(accounts)]
        auth = Authorization(
            id=uuid.uuid4().hex, account_id=account, provider="test_probe", method="api_key",
            label=f"auth {i}", description="", owner="seed", created_at="2026-01-01T00:00:00Z",
            updated_at="2026-01-01T00:00:00Z", secret_name=f"scale/{keys[mode]}",
            health=Health(HealthStatus.HEALTHY, None, "2026-01-01T00:00:00Z"), usage=empty_usage())
        made[auth.id] = (account, mode)
        puts.append({"PutRequest": {"Item": repo.put_new_op(auth)["Put"]["Item"]}})
    client = deps.table.client
    for start in range(0, len(puts), 25):
        pending: dict[str, Any] = {deps.table.name: puts[start:start + 25]}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
    return made


def _transitions(deps: Any, account_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    start = None
    while True:
        rows, start = deps.table.query(key_condition="PK = :pk AND begins_with(SK, :p)", names={},
                                       values={":pk": K.account_pk(account_id), ":p": HEALTH_PREFIX},
                                       limit=500, start_key=start)
        out += rows
        if not start:
            return out


@pytest.mark.timeout(900)  # ~2 min on an idle machine; moto's requests slow down under load
def test_a_sweep_of_2000_checks_each_once_and_hanging_providers_end_unreachable(
        client, deps, new_tenant, request) -> None:
    # GIVEN N healthy authorizations over 3 accounts (2,000 in make proof): HANGING whose
    # provider hangs, REVOKED whose key was revoked, the rest fine; checks time out after a
    # bound derived from reading their secret ten at once now
    probe = Probe()
    request.addfinalizer(probe.release.set)  # the hung checks end with the test
    deps.registry = Registry(extra={"test_probe": probe})
    accounts = [new_tenant(f"Scale{n}").account_id for n in range(3)]
    keys = {mode: f"{mode}-{uuid.uuid4().hex}" for mode in ("ok", "bad", "hang")}
    probe.modes.update({keys["bad"]: "bad", keys["hang"]: "hang"})
    made = _seed(deps, accounts, keys)
    timeout = deps.health_check_timeout = bound(
        concurrent_seconds(lambda: deps.secrets.read(f"scale/{keys['ok']}")), floor=TIMEOUT_FLOOR)
    _drain_health_queue()
    _take("switchyard-test-alerts")
    started = time.monotonic()

    # WHEN the daily sweep fans out and the health Lambda takes every batch off the queue
    queued, _requests = health.sweep(deps)
    assert queued == N
    sqs, url = _health_queue()
    delivered: Counter[str] = Counter()
    while True:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not msgs:
            break
        for m in msgs:
            delivered[json.loads(m["Body"])["authorization_id"]] += 1
        client.lambda_.invoke("check_health", client.events.generate_sqs_event(
            queue_name="switchyard-health", message_bodies=[m["Body"] for m in msgs]))
        sqs.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
    elapsed = time.monotonic() - started

    # THEN every authorization was queued once and its provider asked exactly once
    assert set(delivered) == set(made) and set(delivered.values()) == {1}
    assert Counter(probe.calls) == {keys["ok"]: N - HANGING - REVOKED, keys["bad"]: REVOKED,
                                    keys["hang"]: HANGING}
    # AND each one's verdict: hanging ones unreachable, revoked ones unhealthy, others unaffected
    for account in accounts:
        ours = [i for i, (a, _m) in made.items() if a == account]
        for auth_id, auth in deps.auths.get_many(account, ours).items():
            mode = made[auth_id][1]
            assert auth.health.checked_at and auth.health.checked_at > "2026-01-01T00:00:00Z", auth_id
            if mode == "hang":
                assert (auth.health.status, auth.health.reason) == (
                    HealthStatus.UNHEALTHY, f"unreachable: no answer within {timeout:g} s")
            elif mode == "bad":
                assert (auth.health.status, auth.health.reason) == (HealthStatus.UNHEALTHY, "the API key was revoked")
            else:
                assert auth.health.status == HealthStatus.HEALTHY and auth.health.reason is None
    # AND one transition per unhealthy authorization, nothing for the others
    transitions = [t for a in accounts for t in _transitions(deps, a)]
    unhealthy = {i for i, (_a, m) in made.items() if m != "ok"}
    assert sorted(t["SK"].split("#")[1] for t in transitions) == sorted(unhealthy)
    # AND one alert per transition
    alerts = [e for e in _take("switchyard-test-alerts") if e["detail"]["account_id"] in accounts]
    assert sorted(e["detail"]["authorization_id"] for e in alerts) == sorted(unhealthy)
    assert {e["detail-type"] for e in alerts} == {"Authorization Unhealthy"}

    # WHEN SQS delivers some of those messages again (at least once) THEN nothing new is recorded
    again = sorted(unhealthy)[:10]
    client.lambda_.invoke("check_health", client.events.generate_sqs_event(
        queue_name="switchyard-health",
        message_bodies=[json.dumps({"account_id": made[i][0], "authorization_id": i}) for i in again]))
    assert len([t for a in accounts for t in _transitions(deps, a)]) == len(transitions)
    assert [e for e in _take("switchyard-test-alerts") if e["detail"]["account_id"] in accounts] == []
    print(f"sweep of {N}: {elapsed:.1f} s on moto")
    from tests.proof.record import record

    record("health_sweep", "Health sweep at scale", {
        "authorizations": N, "accounts": len(accounts), "hanging providers": HANGING,
        "revoked keys": REVOKED, "check timeout (s)": round(timeout, 1),
        "checked exactly once": len(delivered), "hanging ended unreachable": HANGING,
        "transitions recorded": len(transitions), "alerts fired": len(alerts),
        "redelivered checks recording anything new": 0, "wall time on moto (s)": round(elapsed, 1),
    }, summary="The daily sweep's fan-out through the health queue and the check_health Lambda, "
               "2,000 authorizations in `make proof` (300 in `make test`). Request counts and the "
               "10,000-authorization simulation are in docs/health.md (bench/health_sweep.py).",
       order=60)
