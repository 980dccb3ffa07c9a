"""What a provider declares: auth methods, workflows, job types, step roles. Pure data.

Credentials and config models are pydantic classes defined by each provider module;
the catalog only holds references to them, so importing the domain stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from chalicelib.domain.errors import Invalid, NotFound


class JobType(StrEnum):
    IMPORT = "import"
    EXPORT = "export"
    ENRICHMENT = "enrichment"
    OTHER = "other"


class Role(StrEnum):
    """What a workflow's step is to the job engine (the protocols: providers/roles.py)."""

    SOURCE = "source"
    DESTINATION = "destination"
    ENRICHER = "enricher"
    TASK = "task"


# The one role each job type's runs drive.
ROLE_OF: dict[JobType, Role] = {
    JobType.IMPORT: Role.SOURCE,
    JobType.EXPORT: Role.DESTINATION,
    JobType.ENRICHMENT: Role.ENRICHER,
    JobType.OTHER: Role.TASK,
}


@dataclass(frozen=True)
class StepRef:
    """A workflow's step: its role, and the factory that builds it from the provider, named
    "package.module:attribute" so that its module is imported on first use only."""

    role: Role
    factory: str

    def __post_init__(self) -> None:
        module, _, name = self.factory.partition(":")
        if not module or not name.isidentifier():
            raise ValueError(f"a step factory is 'package.module:attribute', not {self.factory!r}")


@dataclass(frozen=True)
class AuthMethodSpec:
    id: str
    name: str
    description: str
    credentials_model: type[Any]
    # False when the provider offers no way to verify: health is then "unknown".
    verifiable: bool = True
    # True when Switchyard issues the credential (a write key), shown once at creation.
    issued: bool = False


@dataclass(frozen=True)
class WorkflowSpec:
    id: str
    name: str
    job_type: JobType
    description: str
    auth_methods: tuple[str, ...]
    config_model: type[Any]
    # Config fields that name a resource in the provider account (bucket, list, stream).
    # A replacement authorization must reach each of them (SPEC rule 9).
    resource_fields: tuple[str, ...] = ()
    # Config fields whose choices are read live through an authorization.
    option_fields: tuple[str, ...] = ()
    # Data is pushed to Switchyard (collection): no scheduled or queued runs; its runs are
    # hourly windows of what arrived.
    pushed: bool = False
    # What runs its jobs' steps; None for a workflow no run can drive.
    step: StepRef | None = None

    def __post_init__(self) -> None:
        # A role the job type's runs never ask for would fail every run: refuse it at import.
        if self.step is not None and self.step.role is not ROLE_OF[self.job_type]:
            raise ValueError(f"workflow {self.id!r} is a {self.job_type.value} workflow; its step must be a "
                             f"{ROLE_OF[self.job_type].value}, not a {self.step.role.value}")


@dataclass(frozen=True)
class ProviderSpec:
    id: str
    name: str
    description: str
    auth_methods: tuple[AuthMethodSpec, ...]
    workflows: tuple[WorkflowSpec, ...]
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def job_types(self) -> list[JobType]:
        seen: list[JobType] = []
        for wf in self.workflows:
            if wf.job_type not in seen:
                seen.append(wf.job_type)
        return seen

    def method(self, method_id: str, *, field_name: str = "method") -> AuthMethodSpec:
        for m in self.auth_methods:
            if m.id == method_id:
                return m
        known = ", ".join(m.id for m in self.auth_methods)
        raise Invalid(
            f"provider {self.id!r} has no authorization method {method_id!r}; use one of: {known}",
            code="authorization.unknown_method",
            fields={field_name: f"unknown method; use one of: {known}"},
        )

    def workflow(self, workflow_id: str, *, field_name: str = "workflow") -> WorkflowSpec:
        for wf in self.workflows:
            if wf.id == workflow_id:
                return wf
        known = ", ".join(w.id for w in self.workflows)
        raise Invalid(
            f"provider {self.id!r} has no workflow {workflow_id!r}; use one of: {known}",
            code="job.unknown_workflow",
            fields={field_name: f"unknown workflow; use one of: {known}"},
        )

    def workflow_or_404(self, workflow_id: str) -> WorkflowSpec:
        for wf in self.workflows:
            if wf.id == workflow_id:
                return wf
        raise NotFound(
            f"provider {self.id!r} has no workflow {workflow_id!r}", code="workflow.not_found"
        )
