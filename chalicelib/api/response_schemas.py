"""Response models: the source of the OpenAPI document's answers, never needed to serve a
request. Apart from the request models so that validating a body does not build them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.domain.access import Role

# -- responses --------------------------------------------------------------------------


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HealthOut(Out):
    status: Literal["healthy", "unhealthy", "unknown"]
    reason: str | None
    checked_at: str | None


class HealthTransitionOut(Out):
    at: str
    from_: Literal["healthy", "unhealthy", "unknown"] = Field(alias="from")
    to: Literal["healthy", "unhealthy", "unknown"]
    reason: str | None
    by: str = Field(description="Who saw it: a user id, 'sweep', or 'run <run id>'")


class AuditEventOut(Out):
    at: str
    user_id: str = Field(description="Who: a user id, or 'system' for the purge")
    action: Literal["created", "changed", "paused", "resumed", "run", "deleted", "rotated",
                    "reauthorized", "purged", "resync"]
    object_type: Literal["job", "authorization", "audience", "alert_rule", "alert_settings", "token", "user"]
    object_id: str
    label: str
    diff: dict[str, Any] = Field(description="field -> {before, after}; never a secret")


class UsageOut(Out):
    total: int
    by_status: dict[Literal["running", "sleeping", "paused", "failed", "completed"], int]


class AuthorizationRow(Out):
    id: str
    provider: str
    method: str
    label: str
    description: str
    owner: str
    created_at: str
    updated_at: str
    health: HealthOut
    last_used_at: str | None
    usage: UsageOut
    credential_hint: str | None = Field(description="Masked reminder; never the secret")
    provider_account: str | None


class JobRef(Out):
    id: str
    label: str
    status: str


class AuthorizationSummary(AuthorizationRow):
    jobs: list[JobRef]
    version: int


class LastRun(Out):
    id: str | None = None
    status: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    added: int | None = None
    removed: int | None = None
    omitted: int | None = None
    error: str | None = None
    cost: dict[str, float] | None = None


class CostEstimate(Out):
    last_run_usd: float
    runs_per_month: float
    monthly_usd: float
    basis: str


class JobRow(Out):
    id: str
    label: str
    provider: str
    job_type: Literal["import", "export", "enrichment", "other"]
    workflow: str
    authorization_id: str
    status: Literal["running", "sleeping", "paused", "failed", "completed"]
    fault_count: int
    owner: str
    created_at: str
    updated_at: str
    last_run: LastRun | None
    next_run_at: str | None
    schedule: dict[str, Any] | None = Field(None, description="The job's schedule as set ({\"type\": \"realtime\"} "
                                                            "for a real-time export); null: runs when asked")
    warning: str | None = Field(None, description="Set while the job's authorization is unhealthy")


class AuthRefOut(Out):
    id: str
    label: str
    health: HealthOut | None
    deleted: bool


class JobSummary(JobRow):
    description: str
    config: dict[str, Any]
    authorization: AuthRefOut
    cost_estimate: CostEstimate
    failure_window_hours: float
    version: int
    collection: CollectionTotals | None = Field(
        None, description="Collection jobs (pushed workflows such as http_collect), in GET /jobs/{id} only: counts "
                          "since creation, committed with the messages they count (seconds after the answer)")
    lag_seconds: float | None = Field(
        None, description="Real-time jobs, on GET /jobs/{id}: age in seconds of the oldest audience change "
                          "not yet delivered, 0 when caught up; null otherwise")
    resync_requested: ResyncRequested | None = Field(
        None, description="Export jobs: a re-send of every member asked for (POST /jobs/{id}/run with "
                          "{\"resync\": true}) and not yet done by a successful run; null otherwise")


class ResyncRequested(Out):
    id: str = Field(description="The request's id; the run that serves it records it")
    requested_at: str
    requested_by: str


class CollectionTotals(Out):
    last_received_at: str | None = Field(description="When the latest message the engine has applied reached "
                                                     "the endpoint (UTC); null before the first")
    accepted: int = Field(description="Messages the endpoint accepted since the job was created")
    duplicates: int = Field(description="Messages answered as duplicates (a messageId seen in the last 24 h), "
                                        "plus accepted ones the engine found applied by a concurrent request")
    rejected: int = Field(description="Messages the endpoint rejected (reported by index in its answer)")


class JobEditPreview(Out):
    dry_run: Literal[True]
    allowed: bool
    problems: list[str]
    changes: list[str]
    job: JobSummary
    next_runs: list[str] = Field(description="The next run starts (UTC, at most 3) of the schedule the job would "
                                             "have, computed in its time zone; now when it has none")


class JobCheckOut(Out):
    valid: bool
    next_runs: list[str] = Field(description="The next run starts (UTC, at most 3); now when there is no schedule")


class OAuthStartOut(Out):
    authorize_url: str = Field(description="Send the browser here; Mailchimp sends it back to the callback")
    expires_at: int = Field(description="The link works once, until this time (epoch seconds)")


class OptionOut(Out):
    value: str
    label: str
    kind: str | None


class AuthMethodOut(Out):
    id: str
    name: str
    description: str
    verifiable: bool
    credentials_schema: dict[str, Any]
    secret_fields: list[str]
    generated_fields: list[str] = Field(description="Credentials fields Switchyard sets itself (never sent)")


class WorkflowOut(Out):
    id: str
    name: str
    job_type: Literal["import", "export", "enrichment", "other"]
    description: str
    auth_methods: list[str]
    config_schema: dict[str, Any]
    option_fields: list[str]
    realtime: bool = Field(description='Accepts the schedule {"type": "realtime"}: each audience change is sent '
                                       'as it happens')


class ProviderOut(Out):
    id: str
    name: str
    description: str
    job_types: list[Literal["import", "export", "enrichment", "other"]]
    auth_methods: list[AuthMethodOut]
    workflows: list[WorkflowOut]


class RunProgress(Out):
    steps: int = Field(description="Steps committed so far")
    processed: int = Field(description="Records read so far")
    read: int = Field(description="Progress so far, in unit (rows, or bytes of the source)")
    total: int | None = Field(description="What the source will yield, when known")
    unit: str = Field(description="Unit of processed/total: rows or bytes")


class RunOut(Out):
    id: str
    trigger: str
    status: Literal["running", "retrying", "paused", "succeeded", "failed", "cancelled"]
    started_at: str | None
    finished_at: str | None
    added: int
    removed: int
    omitted: int
    omitted_reasons: dict[str, int]
    error: str | None = None
    requested_by: str | None
    progress: RunProgress
    cost: dict[str, float] = Field(description="AWS requests by service, provider calls, Lambda time")
    cost_usd: float = Field(description="What the run cost at public AWS prices")
    resync: bool = Field(False, description="Export runs: this run re-sent every member of the audience")


class LogLineOut(Out):
    timestamp: str
    level: Literal["debug", "info", "warning", "error"]
    code: str
    message: str
    run_id: str | None
    user: str | None = Field(description="The user whose action this line records, if any")
    context: dict[str, Any]


class JobActivityPoint(Out):
    start: str
    added: int
    removed: int
    omitted: int


class JobActivity(Out):
    granularity: Literal["hour", "day", "week"]
    series: list[JobActivityPoint]


class AuthActivityPoint(Out):
    start: str
    api_requests: int  # every attempt, retries included
    errors: int  # attempts that failed (no answer, or an error status)


class AuthActivity(Out):
    granularity: Literal["hour", "day", "week"]
    series: list[AuthActivityPoint]


class TokenOut(Out):
    id: str
    label: str
    user_id: str
    role: Role
    created_at: str
    hint: str


class TokenCreated(TokenOut):
    token: str = Field(description="Shown once; store it now")


class UserOut(Out):
    id: str
    email: str
    name: str
    role: Role
    created_at: str
    disabled: bool


class UserNameOut(Out):
    """A user as every role of the account sees them (GET /users/names)."""

    id: str
    name: str


class AccountOut(Out):
    id: str
    name: str


class AwsTrustOut(Out):
    external_id: str = Field(description="The account's external id: the role's trust policy must require it")
    principal: str = Field(description="Switchyard's AWS account, to trust")
    session_name: str = Field(description="The session name Switchyard's role sessions carry")
    trust_policy: dict[str, Any] = Field(description="A trust policy to paste on the role")


class MeOut(Out):
    account: AccountOut
    user: UserOut
    role: Role


class Health(Out):
    status: Literal["ok"]


class ErrorBody(Out):
    code: str
    message: str
    fields: dict[str, str]
    details: dict[str, Any]


class ErrorOut(Out):
    error: ErrorBody


class WebhookOut(Out):
    id: str
    host: str = Field(description="The URL's host only: the URL is kept in Secrets Manager")
    created_at: str | None


class AlertSettingsOut(Out):
    emails: list[str]
    webhooks: list[WebhookOut]
    events: list[str] = Field(description="The alert types delivered")
    updated_at: str | None
    version: int
    signing_secrets: dict[str, str] | None = Field(
        None, description="Only in the answer that added webhooks: each one's signing secret, by id")


class WebhookSecretOut(Out):
    id: str
    signing_secret: str = Field(description="Shown once")


class AlertRuleOut(Out):
    id: str
    job_id: str
    metric: str
    granularity: str
    min: int | None
    max: int | None
    allowable_violations: int
    alert_state: Literal["ok", "breached"]
    state_changed_at: str | None
    created_at: str
    created_by: str


class AlertTestOut(Out):
    published: bool
