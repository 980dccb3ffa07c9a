"""ProviderSpec lookups: job types in order, and errors that name the field."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from chalicelib.domain.catalog import AuthMethodSpec, JobType, ProviderSpec, WorkflowSpec
from chalicelib.domain.errors import ErrorKind, Invalid, NotFound


class Empty(BaseModel):
    pass


def wf(wf_id: str, job_type: JobType) -> WorkflowSpec:
    return WorkflowSpec(
        id=wf_id, name=wf_id, job_type=job_type, description="", auth_methods=("key",), config_model=Empty
    )


def method(method_id: str) -> AuthMethodSpec:
    return AuthMethodSpec(id=method_id, name=method_id, description="", credentials_model=Empty)


def provider(*workflows: WorkflowSpec) -> ProviderSpec:
    return ProviderSpec(
        id="acme",
        name="Acme",
        description="",
        auth_methods=(method("key"), method("oauth")),
        workflows=workflows,
    )


def test_job_types_follow_workflow_order_without_duplicates() -> None:
    # GIVEN workflows of types export, import, export, enrichment
    spec = provider(
        wf("a", JobType.EXPORT), wf("b", JobType.IMPORT), wf("c", JobType.EXPORT), wf("d", JobType.ENRICHMENT)
    )

    # WHEN the provider's job types are read
    # THEN each appears once, in first-seen order
    assert spec.job_types == [JobType.EXPORT, JobType.IMPORT, JobType.ENRICHMENT]


def test_job_types_of_a_provider_without_workflows_is_empty() -> None:
    assert provider().job_types == []


def test_method_finds_by_id() -> None:
    spec = provider()
    assert spec.method("oauth").id == "oauth"


@pytest.mark.parametrize("field_name", ["method", "authorization.method"])
def test_unknown_method_names_the_field_and_lists_known_ids(field_name: str) -> None:
    # GIVEN a provider with methods key and oauth
    spec = provider()

    # WHEN an unknown method is looked up
    with pytest.raises(Invalid) as caught:
        spec.method("basic", field_name=field_name)

    # THEN the error names the given field and lists the known methods
    err = caught.value
    assert err.code == "authorization.unknown_method"
    assert set(err.fields) == {field_name}
    assert "key, oauth" in err.fields[field_name]
    assert "'basic'" in err.message


def test_workflow_finds_by_id() -> None:
    spec = provider(wf("a", JobType.IMPORT), wf("b", JobType.EXPORT))
    assert spec.workflow("b").job_type is JobType.EXPORT


@pytest.mark.parametrize("field_name", ["workflow", "workflow_id"])
def test_unknown_workflow_names_the_field_and_lists_known_ids(field_name: str) -> None:
    # GIVEN a provider with workflows a and b
    spec = provider(wf("a", JobType.IMPORT), wf("b", JobType.EXPORT))

    # WHEN an unknown workflow is looked up
    with pytest.raises(Invalid) as caught:
        spec.workflow("zzz", field_name=field_name)

    # THEN the error names the given field and lists the known workflows
    err = caught.value
    assert err.kind is ErrorKind.INVALID
    assert err.code == "job.unknown_workflow"
    assert set(err.fields) == {field_name}
    assert "a, b" in err.fields[field_name]


def test_workflow_or_404_is_not_found() -> None:
    # GIVEN a provider with one workflow
    spec = provider(wf("a", JobType.IMPORT))

    # WHEN an unknown workflow is looked up from a URL
    with pytest.raises(NotFound) as caught:
        spec.workflow_or_404("zzz")

    # THEN it is a 404-kind error
    assert caught.value.code == "workflow.not_found"
    assert spec.workflow_or_404("a").id == "a"
