"""The provider registry: explicit ids, modules imported on first use only; each workflow's
step built by its declared role, its module imported on first use too."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chalicelib.domain.catalog import ROLE_OF, JobType, ProviderSpec, Role, StepRef, WorkflowSpec
from chalicelib.domain.errors import ErrorKind, Invalid, NotFound
from chalicelib.providers.base import ProviderError
from chalicelib.providers.registry import Registry, default_registry
from chalicelib.providers.roles import Destination, Enricher, Source, Task
from tests.test_import_graph import build

ROOT = Path(__file__).resolve().parents[2]


class FakeProvider:
    spec = ProviderSpec(id="fake", name="Fake", description="", auth_methods=(), workflows=())


def test_ids_list_amazon_s3() -> None:
    assert "amazon_s3" in Registry().ids()


def test_get_loads_the_module_once() -> None:
    # GIVEN a fresh registry
    registry = Registry()

    # WHEN the S3 provider is fetched twice
    first = registry.get("amazon_s3")

    # THEN it is the module's provider, and the same object both times
    assert first.spec.id == "amazon_s3"
    assert registry.get("amazon_s3") is first


def test_default_registry_is_a_singleton() -> None:
    assert default_registry() is default_registry()


def test_get_unknown_is_not_found() -> None:
    # WHEN an unknown provider is fetched (e.g. from a URL)
    with pytest.raises(NotFound) as caught:
        Registry().get("myspace")

    # THEN it is a 404-kind error
    assert caught.value.kind is ErrorKind.NOT_FOUND
    assert caught.value.code == "provider.not_found"


@pytest.mark.parametrize("field", ["provider", "authorization.provider"])
def test_for_request_unknown_is_invalid_on_the_field(field: str) -> None:
    # WHEN an unknown provider comes in a request body
    with pytest.raises(Invalid) as caught:
        Registry().for_request("myspace", field=field)

    # THEN it is bad input on that field, listing the known providers
    err = caught.value
    assert err.kind is ErrorKind.INVALID
    assert err.code == "provider.unknown"
    assert set(err.fields) == {field}
    assert "amazon_s3" in err.fields[field]


def test_injected_providers_are_served_without_import() -> None:
    # GIVEN a registry with no modules and one injected provider
    fake = FakeProvider()
    registry = Registry(modules={}, extra={"fake": fake})

    # THEN it lists and serves exactly that provider
    assert registry.ids() == ["fake"]
    assert registry.get("fake") is fake
    assert registry.all() == [fake]


def _modules_after(code: str, modules: tuple[str, ...] = ("chalicelib.providers.s3", "boto3", "botocore", "moto"),
                   ) -> dict[str, bool]:
    probe = (
        "import sys, json\n"
        f"{code}\n"
        f"print(json.dumps({{m: m in sys.modules for m in {modules!r}}}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    return json.loads(out.stdout)


def test_importing_the_registry_imports_no_provider() -> None:
    # WHEN a fresh interpreter imports the registry and lists ids
    loaded = _modules_after("from chalicelib.providers.registry import Registry; Registry().ids()")

    # THEN no provider module and no AWS SDK was imported (cold start pays for none of them)
    assert loaded == {"chalicelib.providers.s3": False, "boto3": False, "botocore": False, "moto": False}


def test_loading_the_s3_provider_does_not_import_boto3() -> None:
    # WHEN a fresh interpreter loads the S3 provider through the registry
    loaded = _modules_after("from chalicelib.providers.registry import Registry; Registry().get('amazon_s3')")

    # THEN the module is loaded but boto3 waits for the first AWS call
    assert loaded["chalicelib.providers.s3"] is True
    assert loaded["boto3"] is False
    assert loaded["botocore"] is False


# -- steps by role ------------------------------------------------------------------------------

ROLE_TYPES: dict[Role, type] = {Role.SOURCE: Source, Role.DESTINATION: Destination, Role.ENRICHER: Enricher,
                                Role.TASK: Task}
WORKFLOWS = sorted((p.spec.id, w.id) for p in Registry().all() for w in p.spec.workflows)


def _build(registry: Registry, role: Role, provider_id: str, workflow_id: str) -> object:
    by_role = {Role.SOURCE: registry.source, Role.DESTINATION: registry.destination,
               Role.ENRICHER: registry.enricher, Role.TASK: registry.task}
    return by_role[role](provider_id, workflow_id)


@pytest.mark.parametrize(("provider_id", "workflow_id"), WORKFLOWS)
def test_every_workflow_declares_the_role_its_job_type_runs_and_builds_it(provider_id: str,
                                                                          workflow_id: str) -> None:
    # GIVEN a workflow of a registered provider
    registry = Registry()
    wf = registry.get(provider_id).spec.workflow(workflow_id)
    if wf.pushed:
        # data pushed to Switchyard is no run's step: no role is declared, none is built
        assert wf.step is None
        with pytest.raises(ProviderError, match=f"workflow {workflow_id!r} has no import step"):
            registry.source(provider_id, workflow_id)
        return

    # THEN it declares a step, in the role its job type's runs drive
    assert wf.step is not None
    assert wf.step.role is ROLE_OF[wf.job_type]

    # AND the registry builds it, a fresh object implementing that role's protocol
    first = _build(registry, wf.step.role, provider_id, workflow_id)
    assert isinstance(first, ROLE_TYPES[wf.step.role])
    assert _build(registry, wf.step.role, provider_id, workflow_id) is not first

    # AND asking for it in any other role is the user-facing "has no ... step" error
    for other in set(Role) - {wf.step.role}:
        with pytest.raises(ProviderError, match=f"workflow {workflow_id!r} has no .* step") as caught:
            _build(registry, other, provider_id, workflow_id)
        assert caught.value.field == "workflow" and not caught.value.transient


def test_the_step_of_an_unknown_workflow_or_provider_is_refused() -> None:
    with pytest.raises(ProviderError, match="workflow 'nope' has no import step"):
        Registry().source("amazon_s3", "nope")
    with pytest.raises(NotFound):
        Registry().source("myspace", "s3_file_import")


class Shapeless:
    """A provider whose declared factory builds an object of the wrong shape."""

    spec = ProviderSpec(id="shapeless", name="Shapeless", description="", auth_methods=(), workflows=(
        WorkflowSpec("w", "W", JobType.IMPORT, "", (), object,
                     step=StepRef(Role.SOURCE, "tests.providers.test_registry:not_a_source")),
        WorkflowSpec("t", "T", JobType.OTHER, "", (), object,
                     step=StepRef(Role.TASK, "tests.providers.test_registry:given_provider")),
    ))


def not_a_source(provider: object) -> object:
    return object()


def given_provider(provider: Shapeless) -> Shapeless:
    return provider


def test_a_factory_building_the_wrong_shape_is_our_bug_not_a_step() -> None:
    registry = Registry(modules={}, extra={"shapeless": Shapeless()})
    # a step without read() is refused, named
    with pytest.raises(TypeError, match="object does not implement the source role"):
        registry.source("shapeless", "w")
    # positive control: the factory is given the registered provider; it has no run(), so it
    # is no task either
    with pytest.raises(TypeError, match="Shapeless does not implement the task role"):
        registry.task("shapeless", "t")


def test_a_declaration_names_a_role_its_job_type_runs_and_a_factory() -> None:
    with pytest.raises(ValueError, match="its step must be a source, not a destination"):
        WorkflowSpec("w", "W", JobType.IMPORT, "", (), object, step=StepRef(Role.DESTINATION, "m:f"))
    for bad in ("module", ":f", "m:", "m:f.g"):
        with pytest.raises(ValueError, match=r"package\.module:attribute"):
            StepRef(Role.SOURCE, bad)
    assert WorkflowSpec("w", "W", JobType.EXPORT, "", (), object, step=StepRef(Role.DESTINATION, "m:f")).step


def test_a_step_module_is_imported_on_the_first_run_that_needs_it() -> None:
    steps = ("chalicelib.providers.s3_files", "chalicelib.providers.s3_export", "boto3")
    # WHEN a fresh interpreter loads the S3 provider (a check, the catalog)
    loaded = _modules_after("from chalicelib.providers.registry import Registry; Registry().get('amazon_s3')", steps)
    # THEN neither step module is imported
    assert loaded == dict.fromkeys(steps, False)

    # WHEN it builds the import step
    loaded = _modules_after("from chalicelib.providers.registry import Registry; "
                            "Registry().source('amazon_s3', 's3_file_import')", steps)
    # THEN that step's module alone is imported (and still no boto3 before the first call)
    assert loaded == {"chalicelib.providers.s3_files": True, "chalicelib.providers.s3_export": False,
                      "boto3": False}


def test_no_provider_imports_its_step_modules() -> None:
    # The step module imports its provider (config models, errors); the provider names the
    # step only as a string, so the two never import each other.
    edges = build().edges
    checked = 0
    for provider in Registry().all():
        module = type(provider).__module__
        for wf in provider.spec.workflows:
            if wf.step is None:
                continue
            step_module = wf.step.factory.partition(":")[0]
            if step_module != module:
                checked += 1
                assert step_module not in edges[module], (module, step_module)
    assert checked >= 6  # positive control: S3, Kinesis and Mailchimp keep their steps apart
