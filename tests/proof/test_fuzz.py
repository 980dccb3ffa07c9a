"""Proof suite: API fuzzing with schemathesis against /api/v1/openapi.json over HTTP.

The app is served over real HTTP by devserver's gateway (tests/proof/served.py) on the
session's moto; the fuzzer reads the document the server serves and calls every operation
as the admin of a seeded account whose objects (authorization, job with a finished run and
its logs, audience, alert rule, profile, spare token, user) exist, so id routes reach real
objects as well as made-up ids. Two phases:

- per operation, schema-valid (positive) and schema-violating (negative) requests;
- stateful: valid sequences that follow the document's OpenAPI links (a create or a listing
  → the item's routes), as schemathesis' state machine draws them.

Every response is checked for: no 5xx, a declared status code, a declared content type and
a body that conforms to the declared schema; negative requests must be refused (4xx).
Nothing leaves this machine: credential checks against made-up hosts are refused at the
socket (served.no_outside_network).

Size: make test ≈ 300 requests drawn from a fixed seed (the same every run); make proof
≥ 2,000, from a seed drawn fresh. The seed is printed and recorded; SWITCHYARD_SEED=<seed>
replays either (tests/seeds.py).
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import Any

import boto3
import requests

from tests import requires
from tests.api.helpers import create_auth, create_job, make_bucket
from tests.proof.record import full, record, size
from tests.proof.served import no_outside_network, serve_app
from tests.seeds import replay_hint, single

schemathesis = requires.module("schemathesis", "run `make venv` (requirements-dev.txt pins schemathesis)")
from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.core.failures import FailureGroup  # noqa: E402

# Examples per operation and generation mode, and stateful scenarios (× up to 6 steps).
EXAMPLES = size(2, 15)
SCENARIOS = size(25, 220)
TARGET = size(250, 2000)
REQUEST_TIMEOUT = 60
# make test's seed. One run only: the fuzz is too slow to repeat in every run with a fresh
# seed too; make proof draws a fresh one.
FIXED_SEED = 20260101

# What "a response that violates the schema" means here (schemathesis check names).
RESPONSE_CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
                   "response_schema_conformance", "response_headers_conformance")
NEGATIVE_CHECKS = ("negative_data_rejection",)


@dataclass
class Tally:
    requests: int = 0
    by_class: collections.Counter[str] = field(default_factory=collections.Counter)
    by_phase: collections.Counter[str] = field(default_factory=collections.Counter)
    routes: set[str] = field(default_factory=set)
    routes_2xx: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)
    by_check: collections.Counter[str] = field(default_factory=collections.Counter)
    seeded_ids_used: int = 0
    guarded: int = 0
    no_negative: list[str] = field(default_factory=list)
    slowest: tuple[float, str] = (0.0, "")


@dataclass
class World:
    base: str
    headers: dict[str, str]
    own_token_id: str
    spare_tokens: list[str]
    ids: dict[str, str]


def _seed(api: Any, deps: Any, tenant: Any, base: str) -> World:
    """An account with one of every object, and a job that ran (runs, logs, activity)."""
    from chalicelib.domain.profiles import ProfileRecord
    from chalicelib.runs.engine import Delivery, Engine, EngineOptions

    bucket = make_bucket()
    boto3.client("s3", region_name="us-east-1").put_object(
        Bucket=bucket, Key="in/people.csv", Body=b"email,plan\nada@example.com,pro\nbob@example.com,free\n")
    auth = create_auth(api, label="Fuzz keys")
    job = create_job(api, auth["id"], bucket, label="Fuzz import", config={"bucket": bucket, "prefix": "in/"})
    # The run the API queued, delivered to the engine here (nothing else reads this job's message).
    Engine(deps, EngineOptions()).handle(Delivery(
        body={"account_id": tenant.account_id, "job_id": job["id"], "trigger": "create",
              "requested_by": tenant.admin_user_id, "requested_at": "2026-01-01T00:00:00Z"},
        message_id="fuzz-seed"))
    assert api.get(f"/jobs/{job['id']}/runs").json["data"], "the seeded run did not happen"
    deps.profiles.upsert_batch(tenant.account_id, [ProfileRecord({"email": "carol@example.com"}, {}, "seed")],
                               step_tag="fuzz-seed#0")
    profile = next(deps.profiles.iterate(tenant.account_id))
    audience = api.post("/audiences", {"name": "Pro", "filter": {"all": [
        {"field": "plan", "op": "equals", "value": "pro"}]}}).json["data"]
    rule = api.post(f"/jobs/{job['id']}/alert-rules", {"metric": "added", "granularity": "day", "max": 9})
    user = api.post("/users", {"email": "obs@fuzz.example", "name": "Obs", "role": "observer"}).json["data"]
    spare = [api.post("/tokens", {"label": f"spare {i}"}).json["data"]["id"] for i in range(3)]
    hooks = api.put("/alerts", {"webhooks": ["https://93.184.216.34/hook"], "version": 0})
    assert hooks.status_code == 200, hooks.body
    ids = {"webhook_id": hooks.json["data"]["webhooks"][0]["id"], "job_id": job["id"], "auth_id": auth["id"], "audience_id": audience["id"],
           "rule_id": rule.json["data"]["id"], "profile_id": profile.id, "token_id": spare[0],
           "user_id": user["id"], "provider": "amazon_s3", "workflow": "s3_file_import", "field": "prefix"}
    return World(base=base, headers={"Authorization": f"Bearer {tenant.admin_token}"},
                 own_token_id=tenant.admin_token.split(".")[0], spare_tokens=spare, ids=ids)


def _checks(names: tuple[str, ...]) -> list[Any]:
    from schemathesis import checks

    return [getattr(checks, n) for n in names]


def _observe(tally: Tally, phase: str, case: Any, response: Any, checks: list[Any], world: World) -> None:
    label = f"{case.operation.method.upper()} {case.operation.path}"
    tally.requests += 1
    tally.by_phase[phase] += 1
    tally.by_class[f"{response.status_code // 100}xx"] += 1
    tally.routes.add(label)
    tally.slowest = max(tally.slowest, (float(response.elapsed), label))
    if 200 <= response.status_code < 300:
        tally.routes_2xx.add(label)
    try:
        case.validate_response(response, checks=checks, headers=world.headers)
    except FailureGroup as group:
        for failure in group.exceptions:
            tally.by_check[failure.code] += 1
            tally.failures.append(
                f"[{phase}] {failure.code} {failure.title}: {label} → {response.status_code} "
                f"{response.text[:300]!r}\n    {case.as_curl_command(headers={'Authorization': '***'})}")


def _guard_own_token(case: Any, world: World, tally: Tally) -> None:
    """The fuzzer may delete tokens (links lead there), but not the one it calls with."""
    deletes_token = case.operation.method.upper() == "DELETE" and case.operation.path.endswith("/tokens/{token_id}")
    if deletes_token and (case.path_parameters or {}).get("token_id") == world.own_token_id:
        case.path_parameters["token_id"] = world.spare_tokens[-1]
        tally.guarded += 1


def _settings(max_examples: int, **extra: Any) -> settings:
    # No database and no derandomizing: the seed alone decides what is drawn.
    return settings(max_examples=max_examples, deadline=None, database=None, derandomize=False,
                    suppress_health_check=list(HealthCheck), **extra)


def _fuzz_operation(op: Any, mode: Any, checks: list[Any], world: World, tally: Tally,
                    session: requests.Session, fuzz_seed: int) -> None:
    names = [p.name for p in op.path_parameters]

    @seed(fuzz_seed)
    @_settings(EXAMPLES)
    @given(drawn=st.tuples(op.as_strategy(generation_mode=mode), st.booleans()))
    def run(drawn: tuple[Any, bool]) -> None:
        case, use_seeded = drawn
        # Half of the valid requests name the seeded objects, so id routes reach real ones.
        if use_seeded and names and mode is GenerationMode.POSITIVE:
            for n in names:
                case.path_parameters[n] = world.ids[n]
            tally.seeded_ids_used += 1
        _guard_own_token(case, world, tally)
        response = case.call(base_url=world.base, session=session, headers=world.headers)
        _observe(tally, mode.value, case, response, checks, world)

    run()


def _stateless(schema: Any, world: World, tally: Tally, session: requests.Session, fuzz_seed: int) -> None:
    positive, negative = _checks(RESPONSE_CHECKS), _checks(RESPONSE_CHECKS + NEGATIVE_CHECKS)
    for result in schema.get_all_operations():
        op = result.ok()
        _fuzz_operation(op, GenerationMode.POSITIVE, positive, world, tally, session, fuzz_seed)
        try:
            _fuzz_operation(op, GenerationMode.NEGATIVE, negative, world, tally, session, fuzz_seed)
        except (Unsatisfiable, schemathesis.errors.SchemathesisError):
            tally.no_negative.append(op.label)  # nothing in it can be made invalid (no parameters)


def _stateful(schema: Any, world: World, tally: Tally, session: requests.Session, fuzz_seed: int) -> None:
    checks = _checks(RESPONSE_CHECKS)
    # Valid requests only along the links. A sequence's negative requests mutate parameters
    # taken from the server's earlier answers, whose shape depends on what earlier scenarios
    # left on the server (the state persists across hypothesis' test cases): hypothesis then
    # sees the same choices draw differently and stops with FlakyStrategyDefinition (it did,
    # every run, from one evening on, with the fixed seed). Every operation's negative
    # requests are drawn in the stateless phase.
    schema.config.generation.update(modes=[GenerationMode.POSITIVE])

    @seed(fuzz_seed)
    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        rule_order_seed = fuzz_seed  # schemathesis' shuffle of the first steps
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            _guard_own_token(case, world, tally)
            return {"base_url": world.base, "session": session, "headers": world.headers}

        def validate_response(self, response: Any, case: Any, additional_checks: Any = None,
                              **kwargs: Any) -> None:
            _observe(tally, "stateful", case, response, checks, world)

    Machine.run(settings=_settings(SCENARIOS, stateful_step_count=6))


def test_fuzz_every_route_over_http_finds_no_server_error_and_no_schema_violation(
        deps, new_tenant, api_for, record_property) -> None:
    fuzz = single(FIXED_SEED, fresh_instead=full())
    hint = replay_hint(fuzz)
    print(hint)
    record_property("seed", fuzz)
    started = time.monotonic()
    tenant = new_tenant("Fuzz")
    with no_outside_network() as refused, serve_app() as base:
        world = _seed(api_for(tenant.admin_token), deps, tenant, base)
        session = requests.Session()
        doc = session.get(base + "/api/v1/openapi.json", timeout=10).json()
        schema = schemathesis.openapi.from_dict(doc)
        # moto runs in this process and CI runs two suites at once: a slow answer is not a
        # failure here (the load proof measures latency), so wait longer than schemathesis' 10 s.
        schema.config.update(base_url=base, request_timeout=REQUEST_TIMEOUT)
        operations = sum(len(ops) for ops in doc["paths"].values())
        tally = Tally()
        print(f"seeded in {time.monotonic() - started:.1f}s")
        _stateless(schema, world, tally, session, fuzz)
        print(f"stateless done at {time.monotonic() - started:.1f}s: {tally.requests} requests")
        _stateful(schema, world, tally, session, fuzz)
        # The fuzzer's own token survived, so every request above was an admin's.
        assert session.get(base + "/api/v1/me", headers=world.headers, timeout=10).status_code == 200
    elapsed = time.monotonic() - started
    server_errors = tally.by_class["5xx"]
    violations = sum(n for code, n in tally.by_check.items() if code != "ST101" and not code.startswith("ST2"))
    accepted_invalid = sum(n for code, n in tally.by_check.items() if code.startswith("ST2"))
    record("fuzz", "API fuzzing (schemathesis)", {
        "requests": tally.requests,
        "by phase": ", ".join(f"{k} {v}" for k, v in sorted(tally.by_phase.items())),
        "by status class": ", ".join(f"{k} {v}" for k, v in sorted(tally.by_class.items())),
        "server errors (5xx)": server_errors,
        "responses violating the schema": violations,
        "invalid requests accepted": accepted_invalid,
        "routes covered": f"{len(tally.routes)} of {operations}",
        "routes answered 2xx": f"{len(tally.routes_2xx)} of {operations}",
        "requests on seeded ids": tally.seeded_ids_used,
        "outside connections refused": len(refused),
        "deletes of the fuzzer's own token diverted to a spare": tally.guarded,
        "operations with nothing to make invalid": len(tally.no_negative),
        "seed": fuzz,
        "examples": "a fresh seed" if full() else "a fixed seed (the same every run)",
        "slowest answer": f"{tally.slowest[0]:.1f} s ({tally.slowest[1]})",
        "seconds": round(elapsed, 1),
    }, summary=("schemathesis " + schemathesis.__version__ + " against the served /api/v1/openapi.json, "
                "positive and negative requests per operation, then valid stateful sequences along the "
                "document's links; checks: " + ", ".join(RESPONSE_CHECKS + NEGATIVE_CHECKS) + "."),
        order=10)
    print(f"\nfuzz: {tally.requests} requests, {dict(tally.by_class)}, {len(tally.routes)}/{operations} routes, "
          f"{elapsed:.1f}s")
    assert not tally.failures, f"{hint}: {len(tally.failures)} failures:\n" + "\n".join(tally.failures[:30])
    assert server_errors == 0, hint
    assert len(tally.routes) == operations, (hint, sorted(tally.routes))
    assert tally.requests >= TARGET, (hint, tally.requests)


# -- the seed ------------------------------------------------------------------------------------

_TINY = {"openapi": "3.0.3", "info": {"title": "seed", "version": "1"}, "paths": {"/items": {"post": {
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["name"],
        "properties": {"name": {"type": "string"}, "n": {"type": "integer"}}}}}},
    "responses": {"201": {"description": "created"}}}}}}


def _drawn(fuzz_seed: int) -> list[str]:
    """The request bodies the fuzzer draws for one operation, seeded as the fuzz test seeds."""
    op = next(iter(schemathesis.openapi.from_dict(_TINY).get_all_operations())).ok()
    bodies: list[str] = []

    @seed(fuzz_seed)
    @_settings(12)
    @given(case=op.as_strategy(generation_mode=GenerationMode.POSITIVE))
    def draw(case: Any) -> None:
        bodies.append(repr(case.body))

    draw()
    return bodies


def test_the_same_seed_draws_the_same_requests() -> None:
    first = _drawn(FIXED_SEED)
    # the same seed: the same requests
    assert len(first) == 12 and _drawn(FIXED_SEED) == first
    # and the seed matters (else replaying it would prove nothing)
    assert _drawn(FIXED_SEED + 1) != first
