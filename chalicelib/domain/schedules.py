"""Job schedules: EventBridge Scheduler expressions, when they fire, and quiet hours. Pure.

A job's schedule is the JSON of `chalicelib.api.job_schemas.Schedule`:

    {"type": "once", "at": iso | None}
    {"type": "interval", "every_minutes": N, "timezone": tz, "quiet_hours": {"start", "end"} | None}
    {"type": "daily", "at": "HH:MM", "timezone": tz, "quiet_hours": ... | None}
    {"type": "weekly", "day": "mon".."sun", "at": "HH:MM", "timezone": tz}
    {"type": "cron", "expression": "cron(0 9 ? * MON-FRI *)", "timezone": tz}
    {"type": "realtime"}

No schedule (None) means one run now: nothing to schedule. A real-time schedule (event
exports only, see `REALTIME_PROVIDERS`) has no EventBridge schedule either: audience changes
are delivered as they are recorded (services/realtime.py), never on a timer.

`scheduler_expression` gives what EventBridge Scheduler stores (ScheduleExpression and
ScheduleExpressionTimezone). `next_expression_fire` evaluates such an expression the way
EventBridge Scheduler does (the local event loop fires schedules with it), and `next_fire`
applies it to a job's schedule, skipping quiet hours (runs that would start inside them are
dropped by the runner). Cron expressions are converted from EventBridge's 6-field syntax
(`?`, day-of-week 1-7 = SUN-SAT, a year field) to Vixie syntax and evaluated by cronsim.

Daylight saving time follows EventBridge Scheduler: a wall-clock time that does not exist
(spring forward) is skipped, a wall-clock time that happens twice (fall back) fires once;
rate expressions are fixed durations (a day is 24 hours).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

REALTIME = "realtime"
# Export providers that send one event per change, so a change can go out on its own.
REALTIME_PROVIDERS = frozenset({"amazon_kinesis", "amazon_sqs", "webhook"})
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# EventBridge day-of-week numbers: 1 = SUN ... 7 = SAT.
_EB_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_EB_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_YEARS = (1970, 2199)  # EventBridge's year field range
_MAX_CANDIDATES = 2000  # bound on occurrences examined for one answer (years, quiet hours)
_EPSILON = timedelta(microseconds=1)

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_CRON = re.compile(r"^cron\(\s*(\S+(?:\s+\S+){5})\s*\)$")
_AT = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


class ScheduleError(ValueError):
    """A schedule or schedule expression this module cannot interpret."""


@dataclass(frozen=True)
class SchedulerExpression:
    """What EventBridge Scheduler stores for a schedule."""

    expression: str  # rate(...) | cron(...) | at(...)
    timezone: str  # IANA name: ScheduleExpressionTimezone

    @property
    def one_time(self) -> bool:
        return self.expression.startswith("at(")

    @property
    def is_rate(self) -> bool:
        return self.expression.startswith("rate(")


# ---------------------------------------------------------------------------------------
# Job schedule -> EventBridge Scheduler expression
# ---------------------------------------------------------------------------------------


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown time zone {name!r}") from None


def _tz_name(schedule: Mapping[str, Any]) -> str:
    name = schedule.get("timezone") or "UTC"
    if not isinstance(name, str):
        raise ScheduleError("timezone must be a string")
    _zone(name)
    return name


def _hhmm(value: Any, what: str = "at") -> tuple[int, int]:
    m = _HHMM.match(value) if isinstance(value, str) else None
    if not m:
        raise ScheduleError(f"{what} must be HH:MM (24 h), got {value!r}")
    return int(m.group(1)), int(m.group(2))


def _utc(value: datetime) -> datetime:
    """Aware UTC datetime; a naive one is taken as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def once_at(schedule: Mapping[str, Any]) -> datetime | None:
    """The instant of a one-time schedule (UTC), None for 'now'. A naive time is UTC."""
    raw = schedule.get("at")
    if raw is None:
        return None
    if isinstance(raw, datetime):
        return _utc(raw)
    if not isinstance(raw, str):
        raise ScheduleError("once.at must be an ISO 8601 date-time")
    try:
        return _utc(datetime.fromisoformat(raw))
    except ValueError:
        raise ScheduleError(f"once.at is not an ISO 8601 date-time: {raw!r}") from None


def pending_start(schedule: Mapping[str, Any] | None, now: datetime) -> datetime | None:
    """The start time of a one-time schedule while it is still ahead of `now`, else None.

    A job with one waits for it: creating or resuming it queues no run (run now still does).
    """
    if schedule is None or _type(schedule) != "once":
        return None
    at = once_at(schedule)
    return at if at is not None and at > _utc(now) else None


def _type(schedule: Mapping[str, Any]) -> str:
    kind = schedule.get("type")
    if kind not in ("once", "interval", "daily", "weekly", "cron", REALTIME):
        raise ScheduleError(f"unknown schedule type {kind!r}")
    return str(kind)


def rate_expression(every_minutes: int) -> str:
    """`rate(N unit)` in the largest whole unit; EventBridge wants the singular for 1."""
    if isinstance(every_minutes, bool) or not isinstance(every_minutes, int) or every_minutes < 1:
        raise ScheduleError("every_minutes must be a positive integer")
    for unit, size in (("day", 1440), ("hour", 60), ("minute", 1)):
        if every_minutes % size == 0:
            n = every_minutes // size
            return f"rate({n} {unit}{'' if n == 1 else 's'})"
    raise AssertionError("unreachable")  # pragma: no cover


def scheduler_expression(schedule: Mapping[str, Any] | None) -> SchedulerExpression | None:
    """The EventBridge Scheduler expression of a job's schedule; None when there is nothing to
    schedule (no schedule, or a one-time run 'now')."""
    if schedule is None:
        return None
    kind = _type(schedule)
    if kind == REALTIME:
        return None
    if kind == "once":
        at = once_at(schedule)
        if at is None:
            return None
        return SchedulerExpression(f"at({at.strftime('%Y-%m-%dT%H:%M:%S')})", "UTC")
    tz = _tz_name(schedule)
    if kind == "interval":
        return SchedulerExpression(rate_expression(schedule.get("every_minutes")), tz)  # type: ignore[arg-type]
    if kind == "cron":
        expression = schedule.get("expression")
        if not isinstance(expression, str) or parse_cron(expression) is None:
            raise ScheduleError("cron.expression must look like cron(minutes hours day-of-month month day-of-week year)")
        return SchedulerExpression(expression.strip(), tz)
    hour, minute = _hhmm(schedule.get("at"))
    if kind == "daily":
        return SchedulerExpression(f"cron({minute} {hour} * * ? *)", tz)
    day = schedule.get("day")
    if day not in WEEKDAYS:
        raise ScheduleError(f"weekly.day must be one of {', '.join(WEEKDAYS)}, got {day!r}")
    return SchedulerExpression(f"cron({minute} {hour} ? * {str(day).upper()} *)", tz)


def wanted_expression(schedule: Mapping[str, Any] | None, active: bool, now: datetime) -> SchedulerExpression | None:
    """The schedule a job calls for at `now`: None when it is not active, has no schedule,
    runs in real time, or runs once 'now' or at a time already past."""
    if not active or schedule is None:
        return None
    expr = scheduler_expression(schedule)
    if expr is None:
        return None
    if expr.one_time:
        at = once_at(schedule)
        if at is None or at <= now:
            return None
    return expr


def allows_realtime(provider: str, job_type: str) -> bool:
    """Whether a workflow of `provider` with `job_type` may take the schedule {"type": "realtime"}."""
    return job_type == "export" and provider in REALTIME_PROVIDERS


def is_realtime(schedule: Mapping[str, Any] | None) -> bool:
    """Changes delivered as they happen: no runs, no EventBridge schedule."""
    return schedule is not None and schedule.get("type") == REALTIME


# ---------------------------------------------------------------------------------------
# Evaluating EventBridge expressions
# ---------------------------------------------------------------------------------------


def parse_rate(expression: str) -> timedelta | None:
    """The period of a `rate(...)` expression, None if it is not one."""
    m = _RATE.match(expression.strip())
    if not m:
        return None
    value = int(m.group(1))
    if value < 1:
        raise ScheduleError(f"rate value must be positive: {expression!r}")
    return timedelta(seconds=value * _UNIT_SECONDS[m.group(2).rstrip("s")])


def _ints(token: str, names: tuple[str, ...], lo: int, hi: int, field: str) -> list[int]:
    """Expand one EventBridge list item (`*`, `a`, `a-b`, `a/s`, `a-b/s`, `*/s`) to numbers."""

    def num(s: str) -> int:
        up = s.upper()
        if up in names:
            return names.index(up) + lo
        if not s.isdigit():
            raise ScheduleError(f"bad {field} value {s!r}")
        v = int(s)
        if not lo <= v <= hi:
            raise ScheduleError(f"{field} value {v} out of range {lo}-{hi}")
        return v

    base, slash, step_s = token.partition("/")
    step = 1
    if slash:
        if not step_s.isdigit() or int(step_s) < 1:
            raise ScheduleError(f"bad {field} step in {token!r}")
        step = int(step_s)
    if base == "*":
        start, end = lo, hi
    elif "-" in base:
        a, _, b = base.partition("-")
        start, end = num(a), num(b)
        if end < start:
            raise ScheduleError(f"bad {field} range {token!r}")
    else:
        start = num(base)
        end = hi if slash else start
    return list(range(start, end + 1, step))


def _dow_to_vixie(field: str) -> str:
    """EventBridge day-of-week (1-7 = SUN-SAT, names, `L`, `#`) -> Vixie (0-6 = SUN-SAT)."""
    if field == "?":
        return "*"
    out: list[str] = []
    for token in field.split(","):
        if token == "*":
            return "*"
        if token.upper() == "L":  # last day of the week: Saturday
            out.append("6")
        elif "#" in token:
            day, _, nth = token.partition("#")
            (n,) = _ints(day, _EB_DAYS, 1, 7, "day-of-week")[:1]
            if not nth.isdigit() or not 1 <= int(nth) <= 5:
                raise ScheduleError(f"bad day-of-week {token!r}")
            out.append(f"{n - 1}#{nth}")
        elif len(token) > 1 and token.upper().endswith("L"):
            (n,) = _ints(token[:-1], _EB_DAYS, 1, 7, "day-of-week")[:1]
            out.append(f"{n - 1}L")
        else:
            out.extend(str(n - 1) for n in _ints(token, _EB_DAYS, 1, 7, "day-of-week"))
    return ",".join(out)


def _dom_to_vixie(field: str) -> str:
    if field == "?":
        return "*"
    if "W" in field.upper().replace("LW", ""):
        raise ScheduleError(f"day-of-month 'nW' (nearest weekday) is not supported: {field!r}")
    for token in field.split(","):
        if token.upper() not in ("L", "LW"):
            _ints(token, (), 1, 31, "day-of-month")
    return field


@dataclass(frozen=True)
class _Cron:
    vixie: str  # 6 fields, seconds first: what cronsim evaluates
    years: frozenset[int] | None  # None: every year


def parse_cron(expression: str) -> _Cron | None:
    """An EventBridge `cron(...)` expression in cronsim's terms, None if it is not one."""
    m = _CRON.match(expression.strip())
    if not m:
        return None
    minutes, hours, dom, month, dow, year = m.group(1).split()
    if (dom == "?") == (dow == "?"):
        raise ScheduleError(
            f"exactly one of day-of-month and day-of-week must be '?': {expression!r}"
        )
    for token in minutes.split(","):
        _ints(token, (), 0, 59, "minutes")
    for token in hours.split(","):
        _ints(token, (), 0, 23, "hours")
    for token in month.split(","):
        _ints(token, _EB_MONTHS, 1, 12, "month")
    years: frozenset[int] | None = None
    if year != "*":
        years = frozenset(y for token in year.split(",") for y in _ints(token, (), *_YEARS, "year"))
    vixie = f"0 {minutes} {hours} {_dom_to_vixie(dom)} {month.upper()} {_dow_to_vixie(dow)}"
    from cronsim import CronSim, CronSimError

    try:
        CronSim(vixie, datetime(2000, 1, 1))
    except CronSimError as exc:
        raise ScheduleError(f"bad cron expression {expression!r}: {exc}") from None
    return _Cron(vixie, years)


def parse_at(expression: str, timezone: str = "UTC") -> datetime | None:
    """The instant (UTC) of an `at(...)` expression in its time zone, None if it is not one."""
    m = _AT.match(expression.strip())
    if not m:
        return None
    try:
        local = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        raise ScheduleError(f"bad date in {expression!r}") from None
    return local.replace(tzinfo=_zone(timezone)).astimezone(UTC)


def _repeated_wall_time(local: datetime) -> bool:
    """True for the second occurrence of a wall-clock time that happens twice (fall back)."""
    return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()


def _next_cron(cron: _Cron, tz: ZoneInfo, after: datetime, end: datetime | None) -> datetime | None:
    from cronsim import CronSim

    it = CronSim(cron.vixie, after.astimezone(tz))
    for _ in range(_MAX_CANDIDATES):
        try:
            local = next(it)
        except StopIteration:
            return None
        found = local.astimezone(UTC)
        if end is not None and found > end:
            return None
        if _repeated_wall_time(local):
            continue  # EventBridge fires a repeated wall-clock time once
        if cron.years is not None:
            if local.year > max(cron.years):
                return None
            if local.year not in cron.years:
                continue
        return found
    return None


def next_expression_fire(
    expression: str,
    timezone: str,
    after: datetime,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> datetime | None:
    """The first time (UTC) strictly after `after` that an EventBridge Scheduler expression
    fires, or None if it never fires again.

    `start`/`end` are the schedule's StartDate/EndDate (inclusive). A rate expression fires at
    `start` and every period after it; without `start` it counts from `after`. Naive
    datetimes are taken as UTC.
    """
    after = _utc(after)
    start = _utc(start) if start is not None else None
    end = _utc(end) if end is not None else None
    tz = _zone(timezone or "UTC")

    period = parse_rate(expression)
    if period is not None:
        anchor = start if start is not None else after
        if anchor > after:
            found = anchor
        else:
            k = math.floor((after - anchor) / period) + 1
            found = anchor + k * period
        return found if end is None or found <= end else None

    cron = parse_cron(expression)
    if cron is not None:
        begin = after if start is None else max(after, start - _EPSILON)
        return _next_cron(cron, tz, begin, end)

    at = parse_at(expression, timezone or "UTC")
    if at is not None:
        if at <= after or (start is not None and at < start) or (end is not None and at > end):
            return None
        return at

    raise ScheduleError(f"not a rate(), cron() or at() expression: {expression!r}")


# ---------------------------------------------------------------------------------------
# A job's schedule: next run and quiet hours
# ---------------------------------------------------------------------------------------


def _quiet(schedule: Mapping[str, Any]) -> tuple[time, time] | None:
    qh = schedule.get("quiet_hours")
    if not qh:
        return None
    sh, sm = _hhmm(qh.get("start"), "quiet_hours.start")
    eh, em = _hhmm(qh.get("end"), "quiet_hours.end")
    start, end = time(sh, sm), time(eh, em)
    return None if start == end else (start, end)  # an empty window silences nothing


def in_quiet_hours(schedule: Mapping[str, Any] | None, at: datetime) -> bool:
    """True when `at` falls in the schedule's quiet hours [start, end), read on the wall clock
    of the schedule's time zone. A window whose end is before its start wraps midnight."""
    if schedule is None:
        return False
    window = _quiet(schedule)
    if window is None:
        return False
    start, end = window
    t = _utc(at).astimezone(_zone(_tz_name(schedule))).time().replace(tzinfo=None)
    if start < end:
        return start <= t < end
    return t >= start or t < end


def _quiet_ends(schedule: Mapping[str, Any], at: datetime) -> datetime:
    """When the quiet window holding `at` ends (UTC)."""
    window = _quiet(schedule)
    assert window is not None
    start, end = window
    tz = _zone(_tz_name(schedule))
    local = at.astimezone(tz)
    day: date = local.date()
    if start > end and local.time().replace(tzinfo=None) >= start:
        day += timedelta(days=1)
    ends = datetime.combine(day, end, tzinfo=tz).astimezone(UTC)
    return ends if ends > at else at + timedelta(minutes=1)


def next_fire(
    schedule: Mapping[str, Any] | None, after: datetime, *, anchor: datetime | None = None
) -> datetime | None:
    """When a job's schedule next starts a run (UTC), strictly after `after`; None when it never
    will (no schedule, a one-time schedule already past or 'now', or every occurrence falls in
    quiet hours).

    For intervals, `anchor` is when the schedule started counting (its StartDate); without it
    the next run is one interval after `after`.
    """
    if schedule is None or is_realtime(schedule):
        return None
    after = _utc(after)
    if _type(schedule) == "once":
        at = once_at(schedule)
        return at if at is not None and at > after else None
    expr = scheduler_expression(schedule)
    assert expr is not None
    start = _utc(anchor) if anchor is not None else (after if expr.is_rate else None)
    cursor = after
    for _ in range(_MAX_CANDIDATES):
        found = next_expression_fire(expr.expression, expr.timezone, cursor, start=start)
        if found is None or not in_quiet_hours(schedule, found):
            return found
        cursor = max(found, _quiet_ends(schedule, found) - _EPSILON)
    return None


def next_fires(schedule: Mapping[str, Any] | None, after: datetime, count: int) -> list[datetime]:
    """The next `count` run starts of a job's schedule (fewer when it stops firing)."""
    out: list[datetime] = []
    cursor = after
    while len(out) < count:
        found = next_fire(schedule, cursor, anchor=after if schedule and _type(schedule) == "interval" else None)
        if found is None:
            break
        out.append(found)
        cursor = found
    return out


def fires_per_month(schedule: Mapping[str, Any], after: datetime) -> float:
    """How often a cron schedule fires in 30 days, counted over the coming week (over the
    coming year when nothing fires in a week) with one cron iterator; at most
    _MAX_CANDIDATES starts are counted, past that the rate seen is scaled up."""
    expr = scheduler_expression(schedule)
    cron = parse_cron(expr.expression) if expr is not None else None
    if expr is None or cron is None:
        raise ScheduleError("fires_per_month counts cron schedules only")
    start = _utc(after)
    for days in (7, 366):
        n, last = _count_cron(cron, _zone(expr.timezone), start, start + timedelta(days=days))
        if n >= _MAX_CANDIDATES:
            return n * (timedelta(days=30) / (last - start))
        if n:
            return n * 30 / days
    return 0.0


def _count_cron(cron: _Cron, tz: ZoneInfo, start: datetime, end: datetime) -> tuple[int, datetime]:
    """Fires in (start, end], stopping at _MAX_CANDIDATES; and the last one counted."""
    from cronsim import CronSim

    n, last = 0, start
    for local in CronSim(cron.vixie, start.astimezone(tz)):
        at = local.astimezone(UTC)
        if at > end or (cron.years is not None and local.year > max(cron.years)):
            break
        if (cron.years is not None and local.year not in cron.years) or _repeated_wall_time(local):
            continue
        n, last = n + 1, at
        if n >= _MAX_CANDIDATES:
            break
    return n, last
