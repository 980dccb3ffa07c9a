"""Wizard, edit, delete and re-authorization rules (SPEC rules 2, 3, 9, 10).

The catalog here is built for the tests: two small pydantic models and a provider that
offers import and export, plus one that only exports.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from chalicelib.domain.catalog import AuthMethodSpec, JobType, ProviderSpec, WorkflowSpec
from chalicelib.domain.errors import Conflict, ErrorKind, Invalid
from chalicelib.domain.models import (
    Authorization,
    CheckResult,
    Health,
    HealthStatus,
    Job,
)
from chalicelib.domain.rules import (
    IMMUTABLE_JOB_FIELDS,
    blocking_jobs,
    change_authorization_problems,
    ensure_authorization_fits,
    ensure_method_enables,
    ensure_mutable,
    in_use_error,
    parse_job_type,
    resolve_workflow,
)
from chalicelib.domain.statuses import JobStatus


class ListConfig(BaseModel):
    list_id: str


class ApiKey(BaseModel):
    api_key: SecretStr


IMPORT_WF = WorkflowSpec(
    id="list_import",
    name="List import",
    job_type=JobType.IMPORT,
    description="",
    auth_methods=("api_key",),
    config_model=ListConfig,
    resource_fields=("list_id",),
)
EXPORT_WF = WorkflowSpec(
    id="list_export",
    name="List export",
    job_type=JobType.EXPORT,
    description="",
    auth_methods=("api_key", "oauth"),
    config_model=ListConfig,
)
API_KEY = AuthMethodSpec(id="api_key", name="API key", description="", credentials_model=ApiKey)
OAUTH = AuthMethodSpec(id="oauth", name="OAuth 2.0", description="", credentials_model=ApiKey)

ACME = ProviderSpec(
    id="acme",
    name="Acme Mail",
    description="",
    auth_methods=(API_KEY, OAUTH),
    workflows=(IMPORT_WF, EXPORT_WF),
)
SEND_ONLY = ProviderSpec(
    id="sendonly",
    name="Send Only",
    description="",
    auth_methods=(API_KEY,),
    workflows=(EXPORT_WF,),
)


def make_auth(**overrides: Any) -> Authorization:
    auth = Authorization(
        id="auth_1",
        account_id="acct_1",
        provider="acme",
        method="api_key",
        label="Acme prod",
        description="",
        owner="user_1",
        created_at="2024-01-01T00:00:00Z",
        updated_at="2024-01-01T00:00:00Z",
        secret_name="switchyard/test/acct_1/auth_1",
        health=Health(HealthStatus.HEALTHY, None, None),
    )
    return replace(auth, **overrides)


def make_job(**overrides: Any) -> Job:
    job = Job(
        id="job_1",
        account_id="acct_1",
        provider="acme",
        job_type=JobType.IMPORT,
        workflow="list_import",
        authorization_id="auth_1",
        label="Newsletter import",
        description="",
        config={"list_id": "L1"},
        schedule=None,
        status=JobStatus.SLEEPING,
        owner="user_1",
        created_at="2024-01-01T00:00:00Z",
        updated_at="2024-01-01T00:00:00Z",
        provider_account="acct-A",
    )
    return replace(job, **overrides)


# --- parse_job_type / resolve_workflow -------------------------------------------------


@pytest.mark.parametrize("value", ["import", "export", "enrichment", "other"])
def test_parse_job_type_accepts_the_four_types(value: str) -> None:
    # WHEN a known job type is parsed
    # THEN it becomes the enum member of that value
    assert parse_job_type(value) is JobType(value)


@pytest.mark.parametrize("value", ["custom", "Import", "", "imports"])
def test_parse_job_type_refuses_custom_types(value: str) -> None:
    # GIVEN a job type that is not one of the four (custom types do not exist)
    # WHEN it is parsed
    with pytest.raises(Invalid) as caught:
        parse_job_type(value)

    # THEN the error names the job_type field and lists the valid types
    err = caught.value
    assert err.code == "job.unknown_job_type"
    assert err.kind is ErrorKind.INVALID
    assert set(err.fields) == {"job_type"}
    assert "import, export, enrichment, other" in err.fields["job_type"]


def test_resolve_workflow_returns_the_workflow() -> None:
    # WHEN a provider, a job type it offers and a workflow of that type are chosen
    wf = resolve_workflow(ACME, "import", "list_import")

    # THEN the workflow spec is returned
    assert wf is IMPORT_WF


def test_resolve_workflow_refuses_a_job_type_the_provider_lacks() -> None:
    # GIVEN a provider that only exports
    # WHEN an import is asked for
    with pytest.raises(Invalid) as caught:
        resolve_workflow(SEND_ONLY, "import", "list_export")

    # THEN it is refused on the job_type field, listing what the provider offers
    err = caught.value
    assert err.code == "job.unsupported_job_type"
    assert set(err.fields) == {"job_type"}
    assert "export" in err.fields["job_type"]


def test_resolve_workflow_refuses_a_custom_job_type_before_anything_else() -> None:
    # WHEN the job type is not a job type at all
    with pytest.raises(Invalid) as caught:
        resolve_workflow(ACME, "custom", "list_import")

    # THEN the job type is what is refused
    assert caught.value.code == "job.unknown_job_type"


def test_resolve_workflow_refuses_an_unknown_workflow() -> None:
    # WHEN the workflow id does not exist for the provider
    with pytest.raises(Invalid) as caught:
        resolve_workflow(ACME, "import", "nope")

    # THEN it is refused on the workflow field, listing the provider's workflows
    err = caught.value
    assert err.code == "job.unknown_workflow"
    assert set(err.fields) == {"workflow"}
    assert "list_import, list_export" in err.fields["workflow"]


def test_resolve_workflow_refuses_a_workflow_of_another_job_type() -> None:
    # WHEN an export workflow is chosen for an import job
    with pytest.raises(Invalid) as caught:
        resolve_workflow(ACME, "import", "list_export")

    # THEN it is refused on the workflow field, saying what type the workflow is
    err = caught.value
    assert err.code == "job.workflow_job_type_mismatch"
    assert set(err.fields) == {"workflow"}
    assert "export workflow" in err.fields["workflow"]


# --- methods and authorizations --------------------------------------------------------


def test_ensure_method_enables_accepts_an_enabling_method() -> None:
    # WHEN a method listed by the workflow is checked
    # THEN nothing is raised
    assert ensure_method_enables(EXPORT_WF, "oauth", field_name="method") is None


def test_ensure_method_enables_refuses_other_methods() -> None:
    # GIVEN a workflow only API keys enable
    # WHEN OAuth is checked
    with pytest.raises(Invalid) as caught:
        ensure_method_enables(IMPORT_WF, "oauth", field_name="authorization.method")

    # THEN it is refused on the given field, naming the methods that do enable it
    err = caught.value
    assert err.code == "authorization.method_not_enabled"
    assert set(err.fields) == {"authorization.method"}
    assert "use: api_key" in err.fields["authorization.method"]


def test_ensure_authorization_fits_accepts_a_matching_authorization() -> None:
    # GIVEN an API-key authorization of the provider
    # THEN it fits the import workflow
    assert ensure_authorization_fits(make_auth(), ACME, IMPORT_WF, field_name="authorization_id") is None


def test_ensure_authorization_fits_refuses_another_provider() -> None:
    # GIVEN an authorization of another provider
    auth = make_auth(provider="sendonly")

    # WHEN it is offered for an Acme job
    with pytest.raises(Invalid) as caught:
        ensure_authorization_fits(auth, ACME, IMPORT_WF, field_name="authorization_id")

    # THEN it is refused on the given field, naming the authorization's provider
    err = caught.value
    assert err.code == "authorization.wrong_provider"
    assert err.fields == {"authorization_id": "is for provider 'sendonly'"}


def test_ensure_authorization_fits_refuses_a_method_that_does_not_enable() -> None:
    # GIVEN an OAuth authorization of the provider, and a workflow only API keys enable
    auth = make_auth(method="oauth")

    # WHEN it is offered for that workflow
    with pytest.raises(Invalid) as caught:
        ensure_authorization_fits(auth, ACME, IMPORT_WF, field_name="authorization_id")

    # THEN it is refused as a method that does not enable the workflow
    err = caught.value
    assert err.code == "authorization.method_not_enabled"
    assert set(err.fields) == {"authorization_id"}


# --- ensure_mutable --------------------------------------------------------------------


@pytest.mark.parametrize("field", ["provider", "job_type", "workflow"])
def test_ensure_mutable_refuses_each_immutable_field(field: str) -> None:
    # GIVEN a patch that changes one immutable field
    patch = {field: "something-else", "label": "New label"}

    # WHEN the patch is checked
    with pytest.raises(Invalid) as caught:
        ensure_mutable(patch)

    # THEN only that field is named, and the user is told to create a new job
    err = caught.value
    assert err.code == "job.immutable_field"
    assert err.fields == {field: "cannot be changed; create a new job"}
    assert "create a new job" in err.message


def test_ensure_mutable_names_every_immutable_field_together() -> None:
    # GIVEN a patch that touches all three immutable fields
    patch = {"provider": "x", "job_type": "export", "workflow": "y"}

    # WHEN the patch is checked
    with pytest.raises(Invalid) as caught:
        ensure_mutable(patch)

    # THEN all three are named, each saying to create a new job
    err = caught.value
    assert set(err.fields) == set(IMMUTABLE_JOB_FIELDS) == {"provider", "job_type", "workflow"}
    assert all("create a new job" in v for v in err.fields.values())
    assert "provider, job_type, workflow" in err.message


def test_ensure_mutable_accepts_editable_fields() -> None:
    # GIVEN a patch of every editable field (SPEC rule 3)
    patch = {
        "label": "Renamed",
        "description": "Now with more words",
        "config": {"list_id": "L2"},
        "schedule": {"every": "1h"},
    }

    # WHEN / THEN the patch is accepted
    assert ensure_mutable(patch) is None


# --- delete guard ----------------------------------------------------------------------


def _one_job_per_status() -> list[Job]:
    return [make_job(id=f"job_{s.value}", label=f"Job {s.value}", status=s) for s in JobStatus]


def test_blocking_jobs_are_running_sleeping_and_paused() -> None:
    # GIVEN one job in each status
    jobs = _one_job_per_status()

    # WHEN the jobs that block deleting their authorization are picked
    blocking = blocking_jobs(jobs)

    # THEN failed and completed jobs do not block (SPEC rule 10)
    assert [j.id for j in blocking] == ["job_running", "job_sleeping", "job_paused"]


def test_failed_and_completed_jobs_never_block() -> None:
    # GIVEN only failed and completed jobs
    jobs = [make_job(status=JobStatus.FAILED), make_job(status=JobStatus.COMPLETED)]

    # THEN nothing blocks
    assert blocking_jobs(jobs) == []


def test_in_use_error_names_the_blocking_jobs() -> None:
    # GIVEN one job in each status
    jobs = _one_job_per_status()

    # WHEN the refusal is built
    err = in_use_error("auth_1", jobs)

    # THEN it is a conflict whose details list id, label and status of each blocking job only
    assert isinstance(err, Conflict)
    assert err.code == "authorization.in_use"
    assert err.details["blocking_jobs"] == [
        {"id": "job_running", "label": "Job running", "status": "running"},
        {"id": "job_sleeping", "label": "Job sleeping", "status": "sleeping"},
        {"id": "job_paused", "label": "Job paused", "status": "paused"},
    ]
    assert "Job paused (paused)" in err.message
    assert "Job failed" not in err.message
    assert "Job completed" not in err.message


# --- change authorization --------------------------------------------------------------


def test_change_authorization_refuses_another_provider_and_stops_there() -> None:
    # GIVEN a replacement authorization of another provider, with a method that would also fail
    job = make_job()
    new_auth = make_auth(id="auth_2", provider="sendonly", method="oauth")

    # WHEN the problems are listed
    problems = change_authorization_problems(job, new_auth, ACME, IMPORT_WF, None)

    # THEN the provider is the one and only problem
    assert problems == ["it is for provider 'sendonly', the job uses 'acme'"]


def test_change_authorization_refuses_a_method_that_does_not_enable() -> None:
    # GIVEN an OAuth authorization for a workflow only API keys enable
    problems = change_authorization_problems(
        make_job(), make_auth(id="auth_2", method="oauth"), ACME, IMPORT_WF, None
    )

    # THEN the method is the problem
    assert problems == ["its method 'oauth' does not enable workflow 'list_import'"]


def test_change_authorization_refuses_when_the_check_is_unhealthy() -> None:
    # GIVEN a check of the new credentials that could not reach the configured list
    check = CheckResult(HealthStatus.UNHEALTHY, "list 'L1' does not exist")

    # WHEN the problems are listed
    problems = change_authorization_problems(make_job(), make_auth(id="auth_2"), ACME, IMPORT_WF, check)

    # THEN the provider's reason is passed on
    assert len(problems) == 1
    assert "list 'L1' does not exist" in problems[0]


def test_change_authorization_refuses_another_provider_account() -> None:
    # GIVEN a job that targets account A, and new credentials that reach account B
    check = CheckResult(HealthStatus.HEALTHY, provider_account="acct-B")

    # WHEN the problems are listed
    problems = change_authorization_problems(make_job(), make_auth(id="auth_2"), ACME, IMPORT_WF, check)

    # THEN the mismatch is named with both accounts
    assert len(problems) == 1
    assert "acct-B" in problems[0]
    assert "acct-A" in problems[0]
    assert "Acme Mail" in problems[0]


def test_change_authorization_accepts_the_same_provider_account() -> None:
    # GIVEN new credentials that reach the job's account
    check = CheckResult(HealthStatus.HEALTHY, provider_account="acct-A", resources={"list_id": "L1"})

    # THEN nothing stands in the way
    assert change_authorization_problems(make_job(), make_auth(id="auth_2"), ACME, IMPORT_WF, check) == []


def test_change_authorization_accepts_an_unverifiable_check() -> None:
    # GIVEN a provider that cannot verify (health unknown is not a failure)
    check = CheckResult(HealthStatus.UNKNOWN, "no way to verify")

    # THEN nothing stands in the way
    assert change_authorization_problems(make_job(), make_auth(id="auth_2"), ACME, IMPORT_WF, check) == []


def test_change_authorization_without_a_check_only_looks_at_provider_and_method() -> None:
    # GIVEN no check at all
    # THEN a fitting authorization has no problems
    assert change_authorization_problems(make_job(), make_auth(id="auth_2"), ACME, IMPORT_WF, None) == []


def test_change_authorization_lists_every_problem_at_once() -> None:
    # GIVEN a method that does not enable the workflow AND an unhealthy check
    check = CheckResult(HealthStatus.UNHEALTHY, "revoked")

    # WHEN the problems are listed
    problems = change_authorization_problems(
        make_job(), make_auth(id="auth_2", method="oauth"), ACME, IMPORT_WF, check
    )

    # THEN both are reported (a dry run says everything that would break)
    assert len(problems) == 2
    assert "oauth" in problems[0]
    assert "revoked" in problems[1]
