"""Request models of the job routes: JobCreate, JobPatch and the schedules (a job's schedule
is the JSON of `Schedule`). A module of their own, so the first POST /jobs of a Lambda
loads these and not every request model of the API.

Imported on the first request that needs them, never at cold start.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, StrictBool, field_validator, model_validator

from chalicelib.api.schema_base import Description, Ident, Label, Strict
from chalicelib.domain.schedules import ScheduleError, parse_cron

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


class JobRunRequest(Strict):
    """The optional body of POST /jobs/{id}/run; no body is a plain run now."""

    resync: StrictBool = Field(
        False, description="Export jobs: send every current member of the audience again, as adds (plus the "
                           "usual removes), instead of only what changed since the last run")
