"""The rules users rely on (SPEC 2, 3, 9, 10), as pure functions over domain objects."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from chalicelib.domain.catalog import JobType, ProviderSpec, WorkflowSpec
from chalicelib.domain.errors import Conflict, Invalid
from chalicelib.domain.models import Authorization, CheckResult, Job
from chalicelib.domain.statuses import ACTIVE_STATUSES

IMMUTABLE_JOB_FIELDS: tuple[str, ...] = ("provider", "job_type", "workflow")


def parse_job_type(value: str) -> JobType:
    try:
        return JobType(value)
    except ValueError:
        known = ", ".join(t.value for t in JobType)
        raise Invalid(
            f"job type {value!r} does not exist; custom job types are not supported (use one of: {known})",
            code="job.unknown_job_type",
            fields={"job_type": f"use one of: {known}"},
        ) from None


def resolve_workflow(provider: ProviderSpec, job_type: str, workflow_id: str) -> WorkflowSpec:
    """Wizard steps 1-2: the provider must offer the job type, and the workflow must be of it."""
    jt = parse_job_type(job_type)
    if jt not in provider.job_types:
        offered = ", ".join(t.value for t in provider.job_types)
        raise Invalid(
            f"{provider.name} does not support {jt.value} jobs (it supports: {offered})",
            code="job.unsupported_job_type",
            fields={"job_type": f"not supported by {provider.id}; use one of: {offered}"},
        )
    wf = provider.workflow(workflow_id)
    if wf.job_type is not jt:
        raise Invalid(
            f"workflow {wf.id!r} is an {wf.job_type.value} workflow, not {jt.value}",
            code="job.workflow_job_type_mismatch",
            fields={"workflow": f"is a {wf.job_type.value} workflow"},
        )
    return wf


def ensure_method_enables(workflow: WorkflowSpec, method_id: str, *, field_name: str) -> None:
    if method_id not in workflow.auth_methods:
        allowed = ", ".join(workflow.auth_methods)
        raise Invalid(
            f"authorization method {method_id!r} does not enable workflow {workflow.id!r} "
            f"(methods that do: {allowed})",
            code="authorization.method_not_enabled",
            fields={field_name: f"method {method_id!r} does not enable {workflow.id!r}; use: {allowed}"},
        )


def ensure_authorization_fits(
    auth: Authorization, provider: ProviderSpec, workflow: WorkflowSpec, *, field_name: str
) -> None:
    """Wizard step 3: an existing authorization must be of the provider and enable the workflow."""
    if auth.provider != provider.id:
        raise Invalid(
            f"authorization {auth.id!r} is for {auth.provider!r}, not {provider.id!r}",
            code="authorization.wrong_provider",
            fields={field_name: f"is for provider {auth.provider!r}"},
        )
    ensure_method_enables(workflow, auth.method, field_name=field_name)


def ensure_mutable(patch: Mapping[str, Any]) -> None:
    touched = [f for f in IMMUTABLE_JOB_FIELDS if f in patch]
    if touched:
        raise Invalid(
            f"{', '.join(touched)} of a job cannot be changed; create a new job instead",
            code="job.immutable_field",
            fields={f: "cannot be changed; create a new job" for f in touched},
        )


def blocking_jobs(jobs: Iterable[Job]) -> list[Job]:
    """SPEC rule 10: running, sleeping and paused jobs keep an authorization in use."""
    return [j for j in jobs if j.status in ACTIVE_STATUSES]


def in_use_error(auth_id: str, jobs: Iterable[Job]) -> Conflict:
    blocking = blocking_jobs(jobs)
    names = ", ".join(f"{j.label} ({j.status.value})" for j in blocking) or "jobs being changed"
    return Conflict(
        f"authorization {auth_id!r} is used by active jobs: {names}; pause is not enough — "
        "delete them or move them to another authorization first",
        code="authorization.in_use",
        details={
            "blocking_jobs": [
                {"id": j.id, "label": j.label, "status": j.status.value} for j in blocking
            ]
        },
    )


def change_authorization_problems(
    job: Job,
    new_auth: Authorization,
    provider: ProviderSpec,
    workflow: WorkflowSpec,
    check: CheckResult | None,
) -> list[str]:
    """SPEC rule 9: every reason the new authorization cannot take over the job."""
    problems: list[str] = []
    if new_auth.provider != job.provider:
        problems.append(f"it is for provider {new_auth.provider!r}, the job uses {job.provider!r}")
        return problems
    if new_auth.method not in workflow.auth_methods:
        problems.append(f"its method {new_auth.method!r} does not enable workflow {workflow.id!r}")
    if check is not None:
        if not check.ok:
            problems.append(f"it cannot reach the job's configured resources: {check.reason}")
        elif (
            job.provider_account
            and check.provider_account
            and check.provider_account != job.provider_account
        ):
            problems.append(
                f"it reaches {provider.name} account {check.provider_account}, "
                f"the job targets account {job.provider_account}"
            )
    return problems
