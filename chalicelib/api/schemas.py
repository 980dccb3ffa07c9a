"""Request and response models: validation of bodies and the source of the OpenAPI document.

Imported on the first request that needs them, never at cold start.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from chalicelib.domain.access import Role

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Bidirectional embeddings, overrides and isolates reorder how the text around them is
# displayed ("Trojan Source", CVE-2021-42574): a label could show one name and hold another.
# Right-to-left text itself (Arabic, Hebrew) and the LRM/RLM marks stay allowed.
_BIDI_CONTROL = re.compile("[\u202a-\u202e\u2066-\u2069]")


def _clean_text(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    if _BIDI_CONTROL.search(value):
        raise ValueError("must not contain bidirectional control characters (U+202A-U+202E, U+2066-U+2069)")
    return value


Label = Annotated[str, Field(min_length=1, max_length=200, description="Human name")]
Description = Annotated[str, Field(max_length=2000)]
Ident = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("label", "description", "name", check_fields=False)
    @classmethod
    def _no_control(cls, v: Any) -> Any:
        return _clean_text(v) if isinstance(v, str) else v


# -- schedules ------------------------------------------------------------------------

HHMM = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM, 24 h")]


class QuietHours(Strict):
    start: HHMM
    end: HHMM


class _TZ(Strict):
    timezone: str = Field("UTC", max_length=64, description="IANA time zone, e.g. Europe/Paris")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone name such as Europe/Paris") from None
        return v


class OnceSchedule(Strict):
    type: Literal["once"]
    at: datetime | None = Field(None, description="When to run; now when omitted")


class IntervalSchedule(_TZ):
    type: Literal["interval"]
    every_minutes: int = Field(ge=5, le=10080, description="Minutes between runs (5 min to 7 days)")
    quiet_hours: QuietHours | None = None


class DailySchedule(_TZ):
    type: Literal["daily"]
    at: HHMM
    quiet_hours: QuietHours | None = None


class WeeklySchedule(_TZ):
    type: Literal["weekly"]
    day: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    at: HHMM


Schedule = Annotated[
    OnceSchedule | IntervalSchedule | DailySchedule | WeeklySchedule,
    Field(discriminator="type"),
]


# -- requests ---------------------------------------------------------------------------


class AuthorizationCreate(Strict):
    provider: Ident
    method: Ident
    label: Label
    description: Description = ""
    credentials: dict[str, Any] = Field(description="Fields of the method's credentials_schema")


class AuthorizationPatch(Strict):
    label: Label | None = None
    description: Description | None = None
    version: int | None = Field(None, ge=1, description="Version being edited (or send If-Match)")


class CredentialsPut(Strict):
    credentials: dict[str, Any]
    version: int | None = Field(None, ge=1, description="Version being edited (or send If-Match)")


_EMAIL = r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{2,63}$"


class AlertSettingsPut(Strict):
    emails: list[Annotated[str, Field(pattern=_EMAIL, max_length=254)]] = Field(
        default_factory=list, max_length=10, description="Addresses that get alert e-mails (SNS asks each to confirm)")
    webhooks: list[Annotated[str, Field(pattern=r"^https?://", max_length=2048)]] = Field(
        default_factory=list, max_length=5,
        description="URLs that get signed JSON alerts (https; the signing secret is shown once)")
    version: int = Field(ge=0, description="The version read (0 before the first save)")


class AlertRuleIn(Strict):
    metric: Literal["added", "removed", "omitted"] = Field(description="The job activity metric bounded")
    granularity: Literal["hour", "day", "week"] = Field(description="The bucket the bounds apply to")
    min: int | None = Field(None, ge=0, description="Alert when a bucket is below this")
    max: int | None = Field(None, ge=0, description="Alert when a bucket is above this")
    allowable_violations: int = Field(
        0, ge=0, description="Consecutive violating buckets tolerated before the alert fires")


class InlineAuthorization(Strict):
    method: Ident
    label: Label
    description: Description = ""
    credentials: dict[str, Any]


class JobCreate(Strict):
    provider: Ident
    job_type: Annotated[str, Field(min_length=1, max_length=32)]
    workflow: Ident
    authorization_id: Ident | None = None
    authorization: InlineAuthorization | None = None
    label: Label
    description: Description = ""
    config: dict[str, Any] = Field(default_factory=dict)
    schedule: Schedule | None = None
    start: bool = Field(True, description="False stages the job (paused) instead of starting it")
    failure_window_hours: float = Field(
        10, gt=0, le=168, description="Hours of repeated errors before the job is failed"
    )

    @model_validator(mode="after")
    def _one_authorization(self) -> JobCreate:
        if (self.authorization_id is None) == (self.authorization is None):
            raise ValueError("give either authorization_id or authorization (inline), exactly one")
        return self


class JobPatch(Strict):
    failure_window_hours: float | None = Field(None, gt=0, le=168)
    label: Label | None = None
    description: Description | None = None
    config: dict[str, Any] | None = None
    schedule: Schedule | None = None
    authorization_id: Ident | None = None
    version: int | None = Field(None, ge=1, description="Version being edited (or send If-Match)")


class TokenCreate(Strict):
    label: Label
    user_id: Ident | None = Field(None, description="Whose token; the caller's when omitted")


class OAuthStartQuery(Strict):
    """The start route's query, checked like a body: the label becomes an authorization's."""

    label: Label | None = None


class UserCreate(Strict):
    email: Annotated[str, Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
    name: Label
    role: Role


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
                    "reauthorized", "purged"]
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
    warning: str | None = Field(None, description="Set while the job's authorization is unhealthy")


class AuthRefOut(Out):
    id: str
    label: str
    health: HealthOut | None
    deleted: bool


class JobSummary(JobRow):
    description: str
    config: dict[str, Any]
    schedule: dict[str, Any] | None
    authorization: AuthRefOut
    cost_estimate: CostEstimate
    failure_window_hours: float
    version: int


class JobEditPreview(Out):
    dry_run: Literal[True]
    allowed: bool
    problems: list[str]
    changes: list[str]
    job: JobSummary


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


class WorkflowOut(Out):
    id: str
    name: str
    job_type: Literal["import", "export", "enrichment", "other"]
    description: str
    auth_methods: list[str]
    config_schema: dict[str, Any]
    option_fields: list[str]


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


class UserNameOut(Out):
    """A user as every role of the account sees them (GET /users/names)."""

    id: str
    name: str


class AccountOut(Out):
    id: str
    name: str


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


class AlertSettingsOut(Out):
    emails: list[str]
    webhooks: list[str]
    events: list[str] = Field(description="The alert types delivered")
    updated_at: str | None
    version: int
    signing_secret: str | None = Field(None, description="Only in the answer that added the first webhook")


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
