"""The aggregates: accounts, users, tokens, authorizations, jobs. Plain dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from chalicelib.domain.access import Role
from chalicelib.domain.catalog import JobType
from chalicelib.domain.statuses import JobStatus


class HealthStatus(StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Health:
    status: HealthStatus
    reason: str | None
    checked_at: str | None


@dataclass(frozen=True)
class CheckResult:
    """What a provider's check says about a set of credentials."""

    status: HealthStatus
    reason: str | None = None
    # The provider account the credentials reach (AWS account id, Mailchimp account id).
    provider_account: str | None = None
    # Named resources that were verified, e.g. {"bucket": "acme-exports"}.
    resources: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status is not HealthStatus.UNHEALTHY


@dataclass
class Account:
    id: str
    name: str
    created_at: str


@dataclass
class User:
    id: str
    account_id: str
    email: str
    name: str
    role: Role
    created_at: str


@dataclass
class Token:
    id: str
    account_id: str
    user_id: str
    role: Role
    label: str
    token_hash: str
    created_at: str
    last4: str


def empty_usage() -> dict[str, int]:
    return {s.value: 0 for s in JobStatus}


@dataclass
class Authorization:
    id: str
    account_id: str
    provider: str
    method: str
    label: str
    description: str
    owner: str
    created_at: str
    updated_at: str
    secret_name: str
    health: Health
    provider_account: str | None = None
    credential_hint: str | None = None
    last_used_at: str | None = None
    usage: dict[str, int] = field(default_factory=empty_usage)
    version: int = 1


@dataclass
class Job:
    id: str
    account_id: str
    provider: str
    job_type: JobType
    workflow: str
    authorization_id: str
    label: str
    description: str
    config: dict[str, Any]
    schedule: dict[str, Any] | None
    status: JobStatus
    owner: str
    created_at: str
    updated_at: str
    authorization_label: str = ""
    provider_account: str | None = None
    fault_count: int = 0
    next_run_at: str | None = None
    last_run: dict[str, Any] | None = None
    version: int = 1
    # engine bookkeeping
    current_run_id: str | None = None
    state: dict[str, Any] = field(default_factory=dict)  # e.g. objects already imported
    failure_window_hours: float = 10.0
    first_fault_at: str | None = None
    # A Job Failed / Job Recovered alert recorded with the state change but not known to
    # have left yet: {transition_id, type, detail_json} (services/engine.py, send_alert).
    pending_alert: dict[str, Any] | None = None
