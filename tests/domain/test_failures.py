"""When a job gives up after errors, and what its log line says why (domain/failures.py):
the run settling and the real-time delivery both decide with these."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chalicelib.domain.failures import gives_up, past_failure_window, why_given_up

FIRST = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_a_permanent_error_gives_up_at_once_and_a_transient_one_only_past_the_window() -> None:
    assert gives_up(False, FIRST, FIRST, 10.0)  # config or auth: at the first fault
    assert not gives_up(True, FIRST, FIRST + timedelta(hours=9, minutes=59), 10.0)
    assert gives_up(True, FIRST, FIRST + timedelta(hours=10), 10.0)
    assert past_failure_window(FIRST, FIRST + timedelta(hours=10), 10.0)


def test_the_reason_names_the_kind_of_error_or_the_window() -> None:
    assert why_given_up(False, 10.0) == "a configuration or authorization error: no retry can fix it"
    assert why_given_up(True, 2.5) == "errors kept happening for 2.5 h (the failure window)"
    assert why_given_up(True, 10.0) == "errors kept happening for 10 h (the failure window)"
