"""The same checks for every registered provider (meltano-style conformance suite).

A provider added to the registry runs these with no new test code, except one sample set
of credentials per auth method in SAMPLE_CREDENTIALS (the hint test refuses to guess), and
in tests/providers/workflow_fakes.py credentials its fake refuses (BAD_CHECKS) and a fake
per workflow (WORKFLOW_FAKES): the tests fail for a provider or workflow without them.
Schemas, hints and reprs need no fake; the check must answer refused credentials with
"unhealthy"; every workflow runs through the API and the engine against its fake, crashed
after every write, and ends exactly like an uninterrupted run.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from chalicelib.providers.base import Provider
from chalicelib.providers.registry import Registry
from tests.engine.fresh import forget_moto_models, fresh_deps
from tests.providers.workflow_fakes import (  # noqa: F401 (fixtures the fakes ask for by name)
    BAD_CHECKS,
    OPTION_FAKES,
    WORKFLOW_FAKES,
    WorkflowFake,
    fake_fullcontact,
    private_urls,
    refusing_endpoint,
)

PROVIDER_IDS = Registry().ids()

SAMPLE_CREDENTIALS: dict[str, dict[str, dict[str, Any]]] = {
    "amazon_kinesis": {
        "access_keys": {
            "access_key_id": "AKIAIOSFODNN7EXAMPLE",
            "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "region": "eu-west-1",
            "stream_name": "cdp-audience-events",
        },
        "assume_role": {
            "role_arn": "arn:aws:iam::210987654321:role/SwitchyardKinesis",
            "external_id": "sy-ext-kin-77a1",
        },
    },
    "http_api": {"write_key": {}},
    "amazon_sqs": {
        "access_keys": {
            "access_key_id": "AKIAIOSFODNN7EXAMPLE",
            "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "queue_url": "https://sqs.eu-west-1.amazonaws.com/210987654321/cdp-audience-events.fifo",
        },
        "assume_role": {
            "role_arn": "arn:aws:iam::210987654321:role/SwitchyardSqs",
            "external_id": "sy-ext-sqs-3c0e",
            "region": "eu-west-1",
        },
    },
    "amazon_s3": {
        "access_keys": {
            "access_key_id": "AKIAIOSFODNN7EXAMPLE",
            "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "bucket": "acme-cdp-data",
        },
        "assume_role": {
            "role_arn": "arn:aws:iam::210987654321:role/SwitchyardAccess",
            "external_id": "sy-ext-5f2c9a71",
        },
    },
    "webhook": {
        "none": {"url": "https://hooks.example.com/switchyard"},
        "bearer": {"url": "https://hooks.example.com/switchyard", "token": "whk-tok-4f1c9e2b7a"},
        "basic": {"url": "https://hooks.example.com/switchyard", "username": "switchyard",
                  "password": "pw-8d3a61f0"},
        "hmac": {"url": "https://hooks.example.com/switchyard", "signing_secret": "whsec-0c7e5b9a1d3f4e26"},
    },
    "mailchimp": {
        "api_key": {"api_key": "3f9a1c2b7d4e5f60718293a4b5c6d7e8-us21"},
        "oauth": {"access_token": "f3c2b1a0e9d8c7b6a5f4e3d2c1b0a9f8", "dc": "us21", "account_name": "Acme"},
    },
    "google_tag_manager": {
        "oauth": {"access_token": "ya29.sample-access-4b1e9c", "refresh_token": "1//0sample-refresh-7d2a",
                  "expires_at": 1900000000,
                  "scope": "https://www.googleapis.com/auth/tagmanager.edit.containers"},
    },
    "fullcontact": {
        "api_key": {"api_key": "fc-sample-3b9d71e2a4c6"},
    },
    "http_enrichment": {
        "none": {"url": "https://enrich.acme.example/v1/people?token=sample-url-token-77"},
        "bearer": {"url": "https://enrich.acme.example/v1/people", "token": "sample-bearer-token-9c2e"},
    },
}

# Methods that store no secret on purpose: the endpoint authenticates nothing, or Switchyard
# issues the credential itself and keeps only its hash (write keys).
SECRETLESS_METHODS = {("webhook", "none"), ("http_api", "write_key")}
# Methods whose credential Switchyard issues: nothing to type in, nothing to refuse.
ISSUED = {(p.spec.id, m.id) for p in Registry().all() for m in p.spec.auth_methods if m.issued}


@pytest.fixture(params=PROVIDER_IDS)
def provider(request: pytest.FixtureRequest) -> Provider:
    return Registry().get(request.param)


def _secret_fields(model: type[BaseModel]) -> set[str]:
    props = model.model_json_schema().get("properties", {})
    return {name for name, prop in props.items() if prop.get("x-secret")}


def test_there_is_at_least_one_provider() -> None:
    assert PROVIDER_IDS


def test_spec_id_is_the_registry_id(request: pytest.FixtureRequest, provider: Provider) -> None:
    assert provider.spec.id == request.node.callspec.params["provider"]


def test_spec_ids_are_unique(provider: Provider) -> None:
    # THEN no two methods and no two workflows share an id
    method_ids = [m.id for m in provider.spec.auth_methods]
    workflow_ids = [w.id for w in provider.spec.workflows]
    assert len(method_ids) == len(set(method_ids))
    assert len(workflow_ids) == len(set(workflow_ids))
    assert method_ids
    assert workflow_ids


def test_every_workflow_is_enabled_by_existing_methods(provider: Provider) -> None:
    # THEN every workflow lists at least one method, and only methods the provider has
    method_ids = {m.id for m in provider.spec.auth_methods}
    for wf in provider.spec.workflows:
        assert wf.auth_methods, wf.id
        assert set(wf.auth_methods) <= method_ids, wf.id


def test_every_model_produces_a_json_schema(provider: Provider) -> None:
    # THEN credentials and config models all render as object schemas with properties
    models = [m.credentials_model for m in provider.spec.auth_methods if (provider.spec.id, m.id) not in ISSUED]
    models += [w.config_model for w in provider.spec.workflows]
    for model in models:
        schema = model.model_json_schema()
        assert schema["type"] == "object", model.__name__
        assert schema["properties"], model.__name__
    # An issued credential's model takes nothing, and refuses anything given.
    for m in provider.spec.auth_methods:
        if (provider.spec.id, m.id) in ISSUED:
            schema = m.credentials_model.model_json_schema()
            assert not schema.get("properties") and schema.get("additionalProperties") is False, m.id


def test_config_models_refuse_unknown_fields(provider: Provider) -> None:
    # THEN a typo in a config field is an error, not silently dropped (SPEC rule 13)
    for wf in provider.spec.workflows:
        assert wf.config_model.model_json_schema().get("additionalProperties") is False, wf.id


def test_option_and_resource_fields_are_config_fields(provider: Provider) -> None:
    for wf in provider.spec.workflows:
        fields = set(wf.config_model.model_fields)
        assert set(wf.option_fields) <= fields, wf.id
        assert set(wf.resource_fields) <= fields, wf.id


def test_secret_fields_are_write_only(provider: Provider) -> None:
    # THEN a field marked secret is also write-only (SecretStr), and the reverse
    for method in provider.spec.auth_methods:
        props = method.credentials_model.model_json_schema().get("properties", {})
        for name, prop in props.items():
            assert bool(prop.get("x-secret")) == bool(prop.get("writeOnly")), f"{method.id}.{name}"


def test_every_verifiable_method_has_a_secret(provider: Provider) -> None:
    # THEN each method stores at least one secret (else it needs no authorization at all),
    # unless it is listed as secretless on purpose
    for method in provider.spec.auth_methods:
        if (provider.spec.id, method.id) in SECRETLESS_METHODS:
            assert not _secret_fields(method.credentials_model), method.id
            continue
        assert _secret_fields(method.credentials_model), method.id


def test_credential_hint_never_contains_a_secret(provider: Provider) -> None:
    samples = SAMPLE_CREDENTIALS.get(provider.spec.id, {})
    for method in provider.spec.auth_methods:
        # GIVEN sample credentials for the method
        assert method.id in samples, f"add SAMPLE_CREDENTIALS[{provider.spec.id!r}][{method.id!r}]"
        creds = method.credentials_model(**samples[method.id])
        secrets = {samples[method.id][name] for name in _secret_fields(method.credentials_model)}
        assert secrets or (provider.spec.id, method.id) in SECRETLESS_METHODS

        # WHEN its hint is made
        hint = provider.credential_hint(method.id, creds)

        # THEN no secret value is in it
        for secret in secrets:
            assert secret not in (hint or ""), method.id


# -- each workflow runs against its fake and is resumable --------------------------------------
#
# Every registered (provider, workflow) runs twice, for two tenants with the same data,
# through the API and the engine (runs queue drained as Lambda + SQS would): once without
# a fault, once with every step crashing right after its write (the provider has the data,
# nothing is committed) and being redelivered, and with the first commit crashing before its
# message was deleted. Both runs must end the same: same counters, same activity, and the
# same state at the destination (tests/providers/workflow_fakes.py says how each is read).

# Pushed workflows (collection) have no runs to drain: their crash proof is
# tests/proof/test_collect_crash.py.
WORKFLOWS = sorted((p.spec.id, w.id) for p in Registry().all() for w in p.spec.workflows if not w.pushed)


@pytest.fixture()
def deps(aws_endpoint: str) -> Iterator[Any]:
    # Fresh tables: moto answers Queries and transactions in time proportional to the table.
    yield from fresh_deps()


class _Crashes:
    """Crash every step once right after its write (odd passes through `after_write`: each
    redelivery passes it again) and the first commit once, right after it."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self.crashed: list[str] = []

    def __call__(self, point: str) -> None:
        self.seen[point] += 1
        if (point == "after_write" and self.seen[point] % 2) or (point == "after_commit" and self.seen[point] == 1):
            self.crashed.append(f"{point}#{self.seen[point]}")
            raise RuntimeError(f"crash at {point}")


def _run_once(fake: WorkflowFake, api: Any, deps: Any, tenant: Any,
              crashes: _Crashes | None) -> tuple[dict[str, Any], list[str], list[BaseException]]:
    from chalicelib.runs.engine import EngineOptions
    from tests.engine.conftest import Drain

    options = EngineOptions(max_records=3, fault=crashes or (lambda point: None))
    drain = Drain(deps, options)
    drain.purge()
    job_id = fake.start(api, deps, tenant)
    for _ in range(5):
        forget_moto_models()
        drain.run()
        runs = api.get(f"/jobs/{job_id}/runs").json["data"]
        if runs and runs[0]["status"] != "running":
            break
    [run] = runs
    assert run["status"] == "succeeded", (run, drain.errors)
    series = api.get(f"/jobs/{job_id}/activity?granularity=day").json["data"]["series"]
    counters = {k: run[k] for k in ("added", "removed", "omitted", "omitted_reasons")}
    counters["processed"] = run["progress"]["processed"]
    counters["activity"] = [sum(b[k] for b in series) for k in ("added", "removed", "omitted")]
    return counters, fake.effect(deps, tenant, job_id), drain.errors


@pytest.mark.parametrize(("provider_id", "workflow_id"), WORKFLOWS, ids=[f"{p}-{w}" for p, w in WORKFLOWS])
def test_each_workflow_runs_against_its_fake_and_is_resumable(
        request: pytest.FixtureRequest, provider_id: str, workflow_id: str, deps: Any, new_tenant: Any,
        api_for: Any) -> None:
    # GIVEN the workflow's fake (a registered workflow without one fails here)
    make = WORKFLOW_FAKES.get((provider_id, workflow_id))
    if make is None:
        pytest.fail(f"no fake for {provider_id}/{workflow_id}: add one to WORKFLOW_FAKES in "
                    "tests/providers/workflow_fakes.py")
    fake = make(request)
    # WHEN one tenant's run goes through without a fault
    clean = new_tenant("Clean")
    counters, effect, errors = _run_once(fake, api_for(clean.admin_token), deps, clean, None)
    assert errors == [] and effect, (errors, effect)
    # AND another tenant's run of the same data crashes after every write and its first commit
    crashes = _Crashes()
    crashed = new_tenant("Crashed")
    counters2, effect2, errors2 = _run_once(make(request), api_for(crashed.admin_token), deps, crashed, crashes)
    # THEN every crash was redelivered, and the run ended exactly like the clean one
    assert crashes.seen["after_write"] >= 2 and "after_commit#1" in crashes.crashed, crashes.crashed
    assert [str(e) for e in errors2] == [f"crash at {c.split('#')[0]}" for c in crashes.crashed]
    assert counters2 == counters
    assert effect2 == effect


def test_every_secret_stays_out_of_the_credentials_repr(provider: Provider) -> None:
    samples = SAMPLE_CREDENTIALS.get(provider.spec.id, {})
    for method in provider.spec.auth_methods:
        # GIVEN sample credentials for the method
        creds = method.credentials_model(**samples[method.id])
        secrets = [samples[method.id][name] for name in _secret_fields(method.credentials_model)]
        # THEN no secret value shows in repr, str or a JSON dump (what a log line would hold)
        text = repr(creds) + str(creds) + creds.model_dump_json()
        assert not [s for s in secrets if s in text], method.id


@pytest.mark.parametrize("provider_id", PROVIDER_IDS)
def test_bad_credentials_are_unhealthy_not_an_exception(request: pytest.FixtureRequest, provider_id: str,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    from chalicelib.domain.models import HealthStatus
    from chalicelib.providers.calls import CallCounter

    caplog.set_level(logging.DEBUG, logger="switchyard")
    provider = Registry().get(provider_id)
    if all((provider_id, m.id) in ISSUED for m in provider.spec.auth_methods):
        # THEN a provider whose only credential Switchyard issues has nothing to refuse: an
        # unknown or revoked write key is refused at the endpoint (tests/api/test_collect_api.py)
        assert provider.check(provider.spec.auth_methods[0].id, None, {}, CallCounter()).ok
        return
    # GIVEN credentials the provider's fake refuses, or that name what it does not have
    entry = BAD_CHECKS.get(provider_id)
    if entry is None:
        pytest.fail(f"no refused credentials for {provider_id}: add them to BAD_CHECKS in "
                    "tests/providers/workflow_fakes.py")
    fixtures, make = entry
    method, raw, resources = make({name: request.getfixturevalue(name) for name in fixtures})
    spec = next(m for m in provider.spec.auth_methods if m.id == method)
    creds = spec.credentials_model(**raw)
    secrets = [raw[name] for name in _secret_fields(spec.credentials_model)]
    # WHEN it is checked
    result = provider.check(method, creds, resources, CallCounter())
    # THEN a verdict: unhealthy, with the provider's reason, and no secret in it or in the logs
    assert result.status is HealthStatus.UNHEALTHY and result.reason, result
    assert not [s for s in secrets if s in repr(result) or s in caplog.text], result


@pytest.mark.parametrize("provider_id", PROVIDER_IDS)
def test_options_are_read_live_through_the_credentials(request: pytest.FixtureRequest, provider_id: str) -> None:
    from chalicelib.providers.base import ProviderError
    from chalicelib.providers.calls import CallCounter

    provider = Registry().get(provider_id)
    wanted = {(wf.id, field) for wf in provider.spec.workflows for field in wf.option_fields}
    entry = OPTION_FAKES.get(provider_id)
    if not wanted:
        # THEN a provider without live options says so for any field, naming it
        method = provider.spec.auth_methods[0]
        creds = method.credentials_model(**SAMPLE_CREDENTIALS[provider_id][method.id])
        with pytest.raises(ProviderError) as caught:
            provider.options(method.id, creds, provider.spec.workflows[0].id, "nothing", {}, CallCounter())
        assert caught.value.field == "field"
        return
    if entry is None:
        pytest.fail(f"no options fake for {provider_id}: add one to OPTION_FAKES in tests/providers/workflow_fakes.py")
    # GIVEN the provider's fake holding one resource of each kind, and credentials it accepts
    fixtures, make = entry
    method, raw, fields = make({name: request.getfixturevalue(name) for name in fixtures})
    spec = next(m for m in provider.spec.auth_methods if m.id == method)
    creds = spec.credentials_model(**raw)
    assert {f for _, f in wanted} <= set(fields), f"OPTION_FAKES[{provider_id!r}] misses option fields"
    for workflow, field in sorted(wanted):
        params, expected = fields[field]
        counter = CallCounter()
        # WHEN the wizard asks for the field's choices
        got = provider.options(method, creds, workflow, field, params, counter)
        # THEN they come from the provider (requests counted) and hold the resource
        assert expected in [o.value for o in got], (workflow, field, got)
        assert counter.total >= 1, (workflow, field)
