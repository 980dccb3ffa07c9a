"""Job schedules -> EventBridge Scheduler expressions, when they fire (DST included), quiet hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from chalicelib.domain.schedules import (
    WEEKDAYS,
    ScheduleError,
    SchedulerExpression,
    in_quiet_hours,
    next_expression_fire,
    next_fire,
    parse_at,
    scheduler_expression,
)

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local(tz: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=tz, fold=fold)  # type: ignore[misc]


def fires(schedule: dict, after: datetime, n: int) -> list[datetime]:
    out: list[datetime] = []
    for _ in range(n):
        nxt = next_fire(schedule, after)
        assert nxt is not None
        out.append(nxt)
        after = nxt
    return out


# -- expressions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minutes", "expression"),
    [
        (5, "rate(5 minutes)"),
        (45, "rate(45 minutes)"),
        (60, "rate(1 hour)"),
        (90, "rate(90 minutes)"),
        (120, "rate(2 hours)"),
        (1440, "rate(1 day)"),
        (2880, "rate(2 days)"),
        (10080, "rate(7 days)"),
    ],
)
def test_interval_becomes_a_rate_in_the_largest_whole_unit(minutes, expression):
    # GIVEN an interval schedule
    schedule = {"type": "interval", "every_minutes": minutes, "timezone": "Europe/Paris"}
    # WHEN it is turned into an EventBridge Scheduler expression
    expr = scheduler_expression(schedule)
    # THEN it is a rate with the singular unit for 1, and keeps its time zone
    assert expr == SchedulerExpression(expression, "Europe/Paris")
    assert expr.is_rate and not expr.one_time


def test_daily_becomes_a_six_field_cron_with_question_mark_day_of_week():
    # GIVEN a daily schedule at 09:05 in New York
    schedule = {"type": "daily", "at": "09:05", "timezone": "America/New_York"}
    # WHEN it is turned into an expression
    # THEN minutes and hours come without padding, day-of-week is '?', the year field is there
    assert scheduler_expression(schedule) == SchedulerExpression("cron(5 9 * * ? *)", "America/New_York")


@pytest.mark.parametrize("day", WEEKDAYS)
def test_weekly_becomes_a_cron_on_that_day_name(day):
    # GIVEN a weekly schedule
    schedule = {"type": "weekly", "day": day, "at": "18:30", "timezone": "UTC"}
    # WHEN it is turned into an expression
    expr = scheduler_expression(schedule)
    # THEN day-of-month is '?' and the day is named, not numbered (1 is SUN in EventBridge)
    assert expr == SchedulerExpression(f"cron(30 18 ? * {day.upper()} *)", "UTC")


def test_once_in_the_future_becomes_an_at_expression_in_utc():
    # GIVEN a one-time schedule with an offset
    schedule = {"type": "once", "at": "2026-07-01T10:00:00+02:00"}
    # WHEN it is turned into an expression
    expr = scheduler_expression(schedule)
    # THEN it is at() in UTC, one-time
    assert expr == SchedulerExpression("at(2026-07-01T08:00:00)", "UTC")
    assert expr.one_time


@pytest.mark.parametrize("schedule", [None, {"type": "once", "at": None}, {"type": "once"}])
def test_no_schedule_or_once_now_needs_no_scheduler_expression(schedule):
    # GIVEN a job that runs once, now
    # WHEN asked for its expression
    # THEN there is nothing to schedule
    assert scheduler_expression(schedule) is None


@pytest.mark.parametrize(
    "schedule",
    [
        {"type": "hourly"},
        {"type": "interval", "every_minutes": 0, "timezone": "UTC"},
        {"type": "interval", "every_minutes": "5", "timezone": "UTC"},
        {"type": "daily", "at": "24:00", "timezone": "UTC"},
        {"type": "daily", "at": "9:00", "timezone": "UTC"},
        {"type": "daily", "at": "09:00", "timezone": "Mars/Olympus"},
        {"type": "weekly", "day": "monday", "at": "09:00", "timezone": "UTC"},
        {"type": "once", "at": "next tuesday"},
    ],
)
def test_malformed_schedules_are_refused(schedule):
    # GIVEN a schedule the API would never have accepted
    # WHEN it is turned into an expression
    # THEN a ScheduleError (a ValueError) says why
    with pytest.raises(ScheduleError):
        scheduler_expression(schedule)


def test_every_emitted_expression_is_understood_by_the_evaluator():
    # GIVEN one schedule of each recurring type
    schedules = [
        {"type": "interval", "every_minutes": 30, "timezone": "Asia/Tokyo"},
        {"type": "daily", "at": "00:00", "timezone": "Australia/Sydney"},
        {"type": "weekly", "day": "sun", "at": "23:59", "timezone": "America/Los_Angeles"},
    ]
    for schedule in schedules:
        expr = scheduler_expression(schedule)
        assert expr is not None
        # WHEN its expression is evaluated the way the local event loop does
        nxt = next_expression_fire(expr.expression, expr.timezone, utc(2026, 1, 1), start=utc(2026, 1, 1, 0, 30))
        # THEN it fires within a week
        assert nxt is not None and utc(2026, 1, 1) < nxt <= utc(2026, 1, 8, 12)


# -- next_fire: daily and weekly, across DST -------------------------------------------------


def test_daily_follows_the_wall_clock_across_dst_in_paris():
    # GIVEN a daily 09:00 schedule in Paris (CET +1, CEST +2 from 2026-03-29)
    schedule = {"type": "daily", "at": "09:00", "timezone": "Europe/Paris"}
    # WHEN its runs around the spring change are computed
    runs = fires(schedule, utc(2026, 3, 27, 12), 3)
    # THEN each is at 09:00 in Paris: 08:00 UTC before the change, 07:00 UTC after
    assert runs == [utc(2026, 3, 28, 8), utc(2026, 3, 29, 7), utc(2026, 3, 30, 7)]


def test_a_time_that_does_not_exist_is_skipped_on_spring_forward_in_paris():
    # GIVEN a daily 02:30 schedule in Paris; on 2026-03-29 clocks jump from 02:00 to 03:00
    schedule = {"type": "daily", "at": "02:30", "timezone": "Europe/Paris"}
    # WHEN its runs around that night are computed
    runs = fires(schedule, utc(2026, 3, 27, 12), 2)
    # THEN the 29th has no run (EventBridge Scheduler skips it), the 30th is at 02:30 CEST
    assert runs == [local(PARIS, 2026, 3, 28, 2, 30), local(PARIS, 2026, 3, 30, 2, 30)]
    assert runs[1] == utc(2026, 3, 30, 0, 30)


def test_a_time_that_happens_twice_fires_once_on_fall_back_in_paris():
    # GIVEN a daily 02:30 schedule in Paris; on 2026-10-25 02:00-03:00 happens twice
    schedule = {"type": "daily", "at": "02:30", "timezone": "Europe/Paris"}
    # WHEN its runs around that night are computed
    runs = fires(schedule, utc(2026, 10, 24, 12), 2)
    # THEN the 25th runs once, at the first 02:30 (CEST, 00:30 UTC), and the next run is the 26th
    assert runs == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]


def test_spring_forward_in_new_york():
    # GIVEN a daily 02:30 schedule in New York; on 2026-03-08 clocks jump from 02:00 to 03:00
    schedule = {"type": "daily", "at": "02:30", "timezone": "America/New_York"}
    # WHEN its runs are computed
    runs = fires(schedule, utc(2026, 3, 7, 0), 2)
    # THEN the 7th runs at 02:30 EST (07:30 UTC), the 8th is skipped, the 9th is 02:30 EDT
    assert runs == [utc(2026, 3, 7, 7, 30), utc(2026, 3, 9, 6, 30)]


def test_fall_back_in_new_york_weekly():
    # GIVEN a weekly Sunday 01:30 schedule in New York; on Sunday 2026-11-01 01:00-02:00 repeats
    schedule = {"type": "weekly", "day": "sun", "at": "01:30", "timezone": "America/New_York"}
    # WHEN its runs are computed
    runs = fires(schedule, utc(2026, 10, 31, 0), 2)
    # THEN it runs once that Sunday (01:30 EDT = 05:30 UTC), then a week later (01:30 EST)
    assert runs == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 8, 6, 30)]
    assert runs[1] == local(NEW_YORK, 2026, 11, 8, 1, 30)


@pytest.mark.parametrize("day", WEEKDAYS)
def test_weekly_runs_on_its_own_day_in_its_own_time_zone(day):
    # GIVEN a weekly schedule at 00:15 in Tokyo (UTC+9: the UTC date is the day before)
    schedule = {"type": "weekly", "day": day, "at": "00:15", "timezone": "Asia/Tokyo"}
    # WHEN its next two runs are computed
    first, second = fires(schedule, utc(2026, 6, 1), 2)
    # THEN both are on that weekday at 00:15 in Tokyo, a week apart
    tokyo = first.astimezone(ZoneInfo("Asia/Tokyo"))
    assert tokyo.strftime("%a").lower() == day
    assert (tokyo.hour, tokyo.minute) == (0, 15)
    assert second - first == timedelta(days=7)


def test_next_fire_is_strictly_after():
    # GIVEN a daily 09:00 UTC schedule and a moment that is exactly 09:00
    schedule = {"type": "daily", "at": "09:00", "timezone": "UTC"}
    # WHEN the next run is asked for
    # THEN it is the next day's, not this one
    assert next_fire(schedule, utc(2026, 5, 5, 9)) == utc(2026, 5, 6, 9)


# -- next_fire: intervals and once -----------------------------------------------------------


def test_interval_is_a_fixed_duration_even_across_dst():
    # GIVEN a daily interval (every 1440 minutes) in Paris, counted from noon before the change
    schedule = {"type": "interval", "every_minutes": 1440, "timezone": "Europe/Paris"}
    anchor = local(PARIS, 2026, 3, 28, 12, 0)
    # WHEN the run after the change is computed
    nxt = next_fire(schedule, anchor + timedelta(minutes=1), anchor=anchor)
    # THEN it is 24 elapsed hours later (13:00 on the wall clock), as EventBridge's rate(1 day) does
    assert nxt == anchor.astimezone(UTC) + timedelta(hours=24) == utc(2026, 3, 29, 11)
    assert nxt.astimezone(PARIS).hour == 13


def test_interval_counts_from_its_anchor_or_from_now():
    # GIVEN a 45-minute interval
    schedule = {"type": "interval", "every_minutes": 45, "timezone": "UTC"}
    # WHEN no anchor is given THEN the next run is one interval from `after`
    assert next_fire(schedule, utc(2026, 1, 1, 10, 7)) == utc(2026, 1, 1, 10, 52)
    # WHEN an anchor is given THEN runs fall on anchor + k * 45 min
    assert next_fire(schedule, utc(2026, 1, 1, 10, 7), anchor=utc(2026, 1, 1, 9)) == utc(2026, 1, 1, 10, 30)
    # AND an anchor in the future is itself the next run
    assert next_fire(schedule, utc(2026, 1, 1, 10, 7), anchor=utc(2026, 1, 1, 11)) == utc(2026, 1, 1, 11)


def test_once_in_the_past_never_fires_and_in_the_future_fires_then_stops():
    # GIVEN a one-time schedule
    schedule = {"type": "once", "at": "2026-04-01T12:00:00Z"}
    # WHEN asked before, at and after its time
    # THEN it fires at its time, and never again afterwards
    assert next_fire(schedule, utc(2026, 4, 1, 11)) == utc(2026, 4, 1, 12)
    assert next_fire(schedule, utc(2026, 4, 1, 12)) is None
    assert next_fire(schedule, utc(2026, 5, 1)) is None
    assert next_fire({"type": "once", "at": None}, utc(2026, 1, 1)) is None
    assert next_fire(None, utc(2026, 1, 1)) is None


def test_once_without_offset_is_utc():
    # GIVEN a one-time schedule whose time has no offset
    # WHEN its run is computed
    # THEN the time is read as UTC
    assert next_fire({"type": "once", "at": "2026-04-01T12:00:00"}, utc(2026, 1, 1)) == utc(2026, 4, 1, 12)


# -- quiet hours -----------------------------------------------------------------------------

NIGHT = {"type": "interval", "every_minutes": 60, "timezone": "Europe/Paris",
         "quiet_hours": {"start": "22:00", "end": "06:00"}}


@pytest.mark.parametrize(
    ("hh", "mm", "quiet"),
    [(21, 59, False), (22, 0, True), (23, 59, True), (0, 0, True), (3, 0, True), (5, 59, True),
     (6, 0, False), (12, 0, False)],
)
def test_quiet_hours_wrap_midnight_on_the_schedules_wall_clock(hh, mm, quiet):
    # GIVEN quiet hours 22:00-06:00 in Paris (summer: UTC+2)
    at = local(PARIS, 2026, 7, 10, hh, mm)
    # WHEN a moment is checked (passed in UTC)
    # THEN start is quiet, end is not
    assert in_quiet_hours(NIGHT, at.astimezone(UTC)) is quiet


def test_quiet_hours_are_read_in_the_schedules_time_zone():
    # GIVEN the same quiet hours in Paris and in New York, and 23:00 Paris (17:00 New York)
    ny = dict(NIGHT, timezone="America/New_York")
    moment = local(PARIS, 2026, 1, 10, 23, 0)
    # WHEN checked
    # THEN only the Paris schedule is quiet
    assert in_quiet_hours(NIGHT, moment) and not in_quiet_hours(ny, moment)


def test_quiet_hours_within_a_day_and_empty_windows():
    # GIVEN a lunch-time window, an empty window and no window
    lunch = {"type": "daily", "at": "09:00", "timezone": "UTC", "quiet_hours": {"start": "12:00", "end": "14:00"}}
    empty = dict(lunch, quiet_hours={"start": "12:00", "end": "12:00"})
    # WHEN checked
    # THEN only [12:00, 14:00) is quiet; an empty window and no window silence nothing
    assert [in_quiet_hours(lunch, utc(2026, 1, 1, h, 0)) for h in (11, 12, 13, 14)] == [False, True, True, False]
    assert not in_quiet_hours(empty, utc(2026, 1, 1, 12, 0))
    assert not in_quiet_hours({"type": "weekly", "day": "mon", "at": "12:00", "timezone": "UTC"}, utc(2026, 1, 1, 12))
    assert not in_quiet_hours(None, utc(2026, 1, 1, 12))


def test_next_fire_skips_runs_that_fall_in_quiet_hours():
    # GIVEN an hourly interval with quiet hours 22:00-06:00 in Paris, counted from 20:30 Paris
    start = local(PARIS, 2026, 1, 10, 20, 30)
    # WHEN its next runs are computed
    first = next_fire(NIGHT, start, anchor=start)
    second = next_fire(NIGHT, first, anchor=start)
    # THEN 21:30 runs, and the next is 06:30 the next morning (22:30 ... 05:30 are quiet)
    assert first == local(PARIS, 2026, 1, 10, 21, 30)
    assert second == local(PARIS, 2026, 1, 11, 6, 30)


def test_a_daily_time_inside_its_quiet_hours_never_runs():
    # GIVEN a daily run at 03:00 with quiet hours 22:00-06:00
    schedule = {"type": "daily", "at": "03:00", "timezone": "Europe/Paris",
                "quiet_hours": {"start": "22:00", "end": "06:00"}}
    # WHEN its next run is computed
    # THEN there is none
    assert next_fire(schedule, utc(2026, 1, 1)) is None


# -- the EventBridge expression evaluator (what the local loop reads back from Scheduler) -----


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # day-of-week numbers are 1 = SUN ... 7 = SAT: 2 is Monday 2026-06-01
        ("cron(0 9 ? * 2 *)", utc(2026, 5, 30), utc(2026, 6, 1, 9)),
        ("cron(0 9 ? * 1 *)", utc(2026, 5, 30), utc(2026, 5, 31, 9)),
        ("cron(0 9 ? * 7 *)", utc(2026, 5, 30, 10), utc(2026, 6, 6, 9)),
        # MON-FRI as numbers: Saturday 2026-05-30 -> Monday
        ("cron(0 9 ? * 2-6 *)", utc(2026, 5, 30), utc(2026, 6, 1, 9)),
        # every 15 minutes from 0
        ("cron(0/15 * * * ? *)", utc(2026, 1, 1, 0, 7), utc(2026, 1, 1, 0, 15)),
        # last day of the month
        ("cron(0 0 L * ? *)", utc(2026, 2, 3), utc(2026, 2, 28)),
        # second Tuesday (3#2)
        ("cron(0 12 ? * 3#2 *)", utc(2026, 6, 1), utc(2026, 6, 9, 12)),
        # last Friday (6L)
        ("cron(0 12 ? * 6L *)", utc(2026, 6, 1), utc(2026, 6, 26, 12)),
        # a year field
        ("cron(0 10 1 JAN ? 2028)", utc(2026, 6, 1), utc(2028, 1, 1, 10)),
        ("cron(0 10 1 JAN ? 2025)", utc(2026, 6, 1), None),
        # rate without a start counts from `after`
        ("rate(1 minute)", utc(2026, 1, 1, 0, 0, 30), utc(2026, 1, 1, 0, 1, 30)),
        ("rate(2 hours)", utc(2026, 1, 1), utc(2026, 1, 1, 2)),
    ],
)
def test_eventbridge_cron_and_rate_forms(expression, after, expected):
    # GIVEN an EventBridge expression in UTC
    # WHEN its next occurrence after `after` is computed
    # THEN it is the one EventBridge would pick
    assert next_expression_fire(expression, "UTC", after) == expected


def test_start_and_end_dates_bound_a_schedule():
    # GIVEN rate and cron schedules with StartDate/EndDate
    start, end = utc(2026, 1, 1, 12), utc(2026, 1, 1, 13)
    # WHEN evaluated
    # THEN a rate fires at its start, then every period, and not past its end
    assert next_expression_fire("rate(30 minutes)", "UTC", utc(2026, 1, 1), start=start, end=end) == start
    assert next_expression_fire("rate(30 minutes)", "UTC", utc(2026, 1, 1, 12, 40), start=start, end=end) == end
    assert next_expression_fire("rate(30 minutes)", "UTC", end, start=start, end=end) is None
    # AND a cron fires no earlier than its start
    assert next_expression_fire("cron(0 * * * ? *)", "UTC", utc(2026, 1, 1), start=start) == start


def test_at_expressions_are_read_in_their_time_zone():
    # GIVEN an at() expression stored with Europe/Paris as its time zone (summer, UTC+2)
    # WHEN evaluated
    # THEN it is 08:00 UTC, and it fires once
    assert parse_at("at(2026-07-01T10:00:00)", "Europe/Paris") == utc(2026, 7, 1, 8)
    assert next_expression_fire("at(2026-07-01T10:00:00)", "Europe/Paris", utc(2026, 7, 1)) == utc(2026, 7, 1, 8)
    assert next_expression_fire("at(2026-07-01T10:00:00)", "Europe/Paris", utc(2026, 7, 1, 8)) is None


@pytest.mark.parametrize(
    "expression",
    [
        "cron(0 9 * * * *)",  # neither day field is '?'
        "cron(0 9 ? * ? *)",  # both are
        "cron(0 9 * * MON)",  # five fields
        "cron(60 9 * * ? *)",
        "cron(0 24 * * ? *)",
        "cron(0 9 ? * 8 *)",  # day-of-week goes to 7 (SAT)
        "cron(0 9 ? * 0 *)",
        "cron(0 9 15W * ? *)",  # nearest weekday: not supported
        "cron(0 9 * 13 ? *)",
        "cron(0 9 * * ? 1969)",
        "rate(0 minutes)",
        "rate(5 weeks)",
        "at(2026-02-30T10:00:00)",
        "every day at nine",
    ],
)
def test_expressions_eventbridge_rejects_are_refused(expression):
    # GIVEN an expression EventBridge would refuse (or one we do not evaluate)
    # WHEN evaluated
    # THEN ScheduleError
    with pytest.raises(ScheduleError):
        next_expression_fire(expression, "UTC", utc(2026, 1, 1))


def test_pending_start_is_a_one_time_start_still_ahead():
    from chalicelib.domain.schedules import pending_start

    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    assert pending_start({"type": "once", "at": "2026-06-01T14:00:00+02:00"}, now) is None  # = now
    assert pending_start({"type": "once", "at": "2026-06-01T12:00:01Z"}, now) == datetime(2026, 6, 1, 12, 0, 1, tzinfo=UTC)
    assert pending_start({"type": "once", "at": "2026-06-01T11:59:59Z"}, now) is None
    assert pending_start({"type": "once", "at": None}, now) is None
    assert pending_start({"type": "daily", "at": "13:00", "timezone": "UTC"}, now) is None
    assert pending_start(None, now) is None


# -- cron schedules (power users) -------------------------------------------------------------


def test_a_cron_schedule_is_stored_as_written_and_fires_in_its_time_zone() -> None:
    from chalicelib.domain.schedules import next_fires

    sched = {"type": "cron", "expression": " cron(30 9 ? * MON-FRI *) ", "timezone": "Europe/Paris"}
    assert scheduler_expression(sched) == SchedulerExpression("cron(30 9 ? * MON-FRI *)", "Europe/Paris")
    # Friday 2026-12-04 10:00 Paris: the next three weekday mornings skip the weekend.
    after = local(PARIS, 2026, 12, 4, 10, 0)
    assert next_fires(sched, after, 3) == [local(PARIS, 2026, 12, d, 9, 30).astimezone(UTC) for d in (7, 8, 9)]
    # Across the spring DST change the wall-clock time holds (08:30 UTC, then 07:30 UTC).
    spring = next_fires(sched, local(PARIS, 2027, 3, 25, 10, 0), 2)
    assert [t.hour for t in spring] == [8, 7]


def test_a_cron_schedule_with_a_bad_expression_is_refused() -> None:
    for bad in ("cron(0 9 * * MON *)", "rate(5 minutes)", "cron(61 9 ? * MON *)", None):
        with pytest.raises(ScheduleError):
            scheduler_expression({"type": "cron", "expression": bad, "timezone": "UTC"})


def test_runs_per_month_of_a_cron_schedule_counts_its_fires() -> None:
    from chalicelib.domain.schedules import fires_per_month

    start = utc(2026, 12, 7)  # a Monday
    weekdays = fires_per_month({"type": "cron", "expression": "cron(0 9 ? * MON-FRI *)", "timezone": "UTC"}, start)
    assert weekdays == pytest.approx(5 * 30 / 7)
    every_minute = fires_per_month({"type": "cron", "expression": "cron(* * * * ? *)", "timezone": "UTC"}, start)
    assert every_minute == pytest.approx(30 * 24 * 60)  # counted past the cap, then scaled
