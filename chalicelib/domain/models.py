"""The aggregates: accounts, users, tokens, authorizations, jobs. Plain dataclasses."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from chalicelib.domain.access import Role
from chalicelib.domain.catalog import JobType
from chalicelib.domain.statuses import Action, JobStatus, transition

# job.state key of a pending "re-send every member" (export jobs): set by the user's run
# request, removed by the last commit of the run that served it.
RESYNC_KEY = "resync"
# What a user edits of a job without a check of its own (config and authorization have theirs).
EDITABLE_SETTINGS: tuple[str, ...] = ("label", "description", "schedule", "failure_window_hours")


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
    # When unhealthy: the configured resource that could not be reached ("bucket"), which makes
    # it a configuration problem; None means the credentials themselves were refused.
    resource: str | None = None

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
    disabled: bool = False


@dataclass(frozen=True)
class UserAccess:
    """What a token of the user may do now: the user's current role, or nothing when the
    user is disabled. Read by the authorizer next to the token."""

    account_id: str
    user_id: str
    role: Role
    disabled: bool


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
    # A credential Switchyard issued (a write key), only on the object that created it:
    # never stored, never read back.
    issued_key: str | None = field(default=None, repr=False, compare=False)


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
    # have left yet: {transition_id, type, detail_json} (runs/engine.py, send_alert).
    pending_alert: dict[str, Any] | None = None

    # -- state changes: each returns the job as it is after the change (the store saves it
    # conditionally on the status it had); the job itself is left as read.

    @property
    def one_time(self) -> bool:
        return self.schedule is None or self.schedule.get("type") == "once"

    def acted(self, action: Action, now: str, start_at: str | None = None) -> Job:
        """A user paused, resumed or asked to run it now. Resume and run now are due at
        `start_at` (a one-time job's future start) or now; resume forgets past faults."""
        after = copy.deepcopy(self)
        after.status = transition(self.status, action)
        if action in (Action.RESUME, Action.RUN_NOW):
            after.next_run_at = start_at or now
            if action is Action.RESUME:
                after.fault_count = 0
        elif action is Action.PAUSE:
            after.next_run_at = None
        return after

    def resync_asked(self, marker: dict[str, Any], *, drop_run: bool) -> Job:
        """After `acted(RUN_NOW)`: the next run re-sends every member. The marker stays in
        `state` until that run's last commit; `drop_run` when the run that waited to be
        resumed is cancelled in its favour (its retry goes stale with the fault count)."""
        after = copy.deepcopy(self)
        after.state = {**self.state, RESYNC_KEY: marker}
        if drop_run:
            after.current_run_id = None
            after.fault_count = 0
            after.first_fault_at = None
        return after

    def resync_served(self) -> Job:
        """The re-send it asked for was served: the marker goes."""
        after = copy.deepcopy(self)
        after.state = {k: v for k, v in self.state.items() if k != RESYNC_KEY}
        return after

    def edited(self, patch: Mapping[str, Any]) -> tuple[Job, list[str]]:
        """A user's edit of its plain settings (label, description, schedule, failure
        window): the job after it, and the names of the settings that changed."""
        after = copy.deepcopy(self)
        changed = [name for name in EDITABLE_SETTINGS if name in patch and patch[name] != getattr(self, name)]
        for name in changed:
            setattr(after, name, patch[name])
        return after, changed

    def reconfigured(self, config: dict[str, Any]) -> Job:
        """Its workflow's settings, already validated against the workflow."""
        after = copy.deepcopy(self)
        after.config = config
        return after

    def reauthorized(self, authorization: Authorization, provider_account: str | None) -> Job:
        """It moves to another authorization (the account it reaches, when the check named one)."""
        after = copy.deepcopy(self)
        after.authorization_id = authorization.id
        after.authorization_label = authorization.label
        if provider_account:
            after.provider_account = provider_account
        return after

    @property
    def resync_requested(self) -> dict[str, Any] | None:
        """The re-send asked for and not yet served by a successful run, if any."""
        marker = self.state.get(RESYNC_KEY)
        return marker if isinstance(marker, dict) else None

    def run_started(self, run_id: str) -> Job:
        after = copy.deepcopy(self)
        after.status = transition(self.status, Action.RUN_STARTED)
        after.current_run_id = run_id
        return after

    def run_succeeded(self, *, state: dict[str, Any], last_run: dict[str, Any], next_run_at: str | None,
                      pending_alert: dict[str, Any] | None) -> Job:
        """Its run succeeded: a one-time job is completed, a scheduled one sleeps until
        `next_run_at`; past faults are forgotten."""
        after = copy.deepcopy(self)
        after.status = transition(self.status, Action.RUN_FINISHED_ONCE if self.one_time else Action.RUN_SUCCEEDED)
        after.state = state
        after.current_run_id = None
        after.fault_count = 0
        after.first_fault_at = None
        after.next_run_at = next_run_at
        after.last_run = last_run
        after.pending_alert = pending_alert
        return after

    def step_faulted(self, first_fault_at: str) -> Job:
        """A step met a provider error: one more fault, counted from the first of the series."""
        after = copy.deepcopy(self)
        after.fault_count = self.fault_count + 1
        after.first_fault_at = first_fault_at
        return after

    def gave_up(self, last_run: dict[str, Any], pending_alert: dict[str, Any]) -> Job:
        """After `step_faulted`: no retry can help (a permanent error, or past the failure
        window), so the job fails until a user resumes it."""
        after = copy.deepcopy(self)
        after.status = transition(self.status, Action.RUN_FAILED)
        after.current_run_id = None
        after.next_run_at = None
        after.last_run = last_run
        after.pending_alert = pending_alert
        return after

    def retries_at(self, next_run_at: str, last_run: dict[str, Any]) -> Job:
        """After `step_faulted`: back off, and resume the run from its checkpoint then."""
        after = copy.deepcopy(self)
        after.status = transition(self.status, Action.RUN_ERRORED)
        after.next_run_at = next_run_at
        after.last_run = last_run
        return after

