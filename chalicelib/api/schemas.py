"""Request models: validation of bodies (response models: response_schemas.py).

Imported on the first request that needs them, never at cold start.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from chalicelib.domain.access import Role
from chalicelib.domain.schedules import ScheduleError, parse_cron

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Bidirectional embeddings, overrides and isolates reorder how the text around them is
# displayed ("Trojan Source", CVE-2021-42574): a label could show one name and hold another.
# Right-to-left text itself (Arabic, Hebrew) and the LRM/RLM marks stay allowed.
_BIDI_CONTROL = re.compile("[\u202a-\u202e\u2066-\u2069]")


def clean_text(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    if _BIDI_CONTROL.search(value):
        raise ValueError("must not contain bidirectional control characters (U+202A-U+202E, U+2066-U+2069)")
    return value


Label = Annotated[str, Field(min_length=1, max_length=200, description="Human name")]
Description = Annotated[str, Field(max_length=2000)]
Ident = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]


class Strict(BaseModel):
    # Built on first use: a request validates one body, not every model of the API.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, defer_build=True)

    @field_validator("label", "description", "name", check_fields=False)
    @classmethod
    def _no_control(cls, v: Any) -> Any:
        return clean_text(v) if isinstance(v, str) else v


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


class CronSchedule(_TZ):
    """For power users: an EventBridge cron expression, evaluated in `timezone`."""

    type: Literal["cron"]
    expression: str = Field(min_length=6, max_length=256,
                            description="EventBridge cron, e.g. cron(0 9 ? * MON-FRI *)")

    @field_validator("expression")
    @classmethod
    def _cron(cls, v: str) -> str:
        try:
            parsed = parse_cron(v)
        except ScheduleError as exc:
            raise ValueError(f"must be a valid EventBridge cron expression ({_cron_reason(exc)})") from None
        if parsed is None:
            raise ValueError("must be an EventBridge cron expression: cron(minutes hours day-of-month month "
                             "day-of-week year), e.g. cron(0 9 ? * MON-FRI *)")
        return v.strip()


class RealtimeSchedule(Strict):
    """Kinesis, SQS and webhook exports: audience changes are sent as they happen."""

    type: Literal["realtime"]


def _cron_reason(exc: Exception) -> str:
    # The domain's message quotes the whole expression back; the field is already named.
    return str(exc).split(": '", 1)[0].split(' in "', 1)[0]


Schedule = Annotated[
    OnceSchedule | IntervalSchedule | DailySchedule | WeeklySchedule | CronSchedule | RealtimeSchedule,
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
    webhooks: list[Annotated[str, Field(pattern=r"^(https?://|whk_)", max_length=2048)]] = Field(
        default_factory=list, max_length=5,
        description="The id of each webhook to keep, and the URL of each to add (https; it gets signed "
                    "JSON alerts; its signing secret is shown once)")
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


class UserPatch(Strict):
    role: Role | None = Field(None, description="The new role: every token of the user acts with it")
    disabled: bool | None = Field(None, description="true: the user's tokens are revoked and no new one is issued")
