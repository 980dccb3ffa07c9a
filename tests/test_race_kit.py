"""The race harness (tests/race_kit.py) reports what a race test must not miss: a crash of
any kind, a call that never returns, an imposed order that never came; and it holds an
imposed order however the threads are scheduled."""

from __future__ import annotations

import threading

import pytest

from chalicelib.domain.errors import AppError, Conflict
from tests.race_kit import crashes, race


def test_each_call_returns_its_value_its_refusal_or_its_crash() -> None:
    def refuse() -> None:
        raise Conflict("stale", code="conflict.stale_version")

    def crash() -> None:
        raise KeyError("not an AppError")

    results = race([lambda: 42, refuse, crash])
    assert (results[0].ok, results[0].value) == (True, 42)
    assert not results[1].ok and isinstance(results[1].error, AppError) and results[1].crash is None
    # a crash is never read as a success or a refusal, and says what it was
    assert not results[2].ok and results[2].error is None
    assert crashes(results) == [f"call 2: {results[2].crash}"]
    assert "KeyError('not an AppError')" in (results[2].crash or "")


def test_a_crash_that_is_no_exception_is_reported_too() -> None:
    def exits() -> None:
        raise SystemExit(3)

    [out] = race([exits])
    assert not out.ok and "SystemExit(3)" in (out.crash or "")


def test_a_call_that_never_returns_fails_the_race() -> None:
    never = threading.Event()
    try:
        with pytest.raises(AssertionError, match="still running after 1 s"):
            race([lambda: 1, never.wait], timeout=1)
    finally:
        never.set()  # the stuck thread ends with the test


def test_an_order_that_never_comes_is_a_crash_not_a_go_ahead() -> None:
    never = threading.Event()
    ran: list[str] = []
    try:
        results = race([lambda: ran.append("waited")], waits=[never], timeout=1)
    except AssertionError as exc:  # so loaded a machine that the thread had not got there yet
        reported = str(exc)
    else:
        reported = results[0].crash or ""
    # the call never ran, and the race says why
    assert ran == [] and ("never set" in reported or "still running" in reported), reported


def test_an_imposed_order_holds_however_the_threads_are_scheduled() -> None:
    for _ in range(20):
        order: list[str] = []
        first_done = threading.Event()

        def first(order: list[str] = order, done: threading.Event = first_done) -> None:
            order.append("first")
            done.set()

        # the second call is started first and released together with the first: only the
        # event keeps it behind
        def second(order: list[str] = order) -> None:
            order.append("second")

        results = race([second, first], waits=[first_done, None])
        assert not crashes(results) and order == ["first", "second"]
