"""How a job backs off after transient errors and when it gives up (SPEC rule 4)."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta

BASE_SECONDS = 60.0
CAP_SECONDS = 3600.0
DEFAULT_WINDOW_HOURS = 10.0


def backoff_seconds(
    fault_count: int,
    *,
    retry_after: float | None = None,
    base: float = BASE_SECONDS,
    cap: float = CAP_SECONDS,
    rand: Callable[[], float] = random.random,
) -> float:
    """Exponential backoff with equal jitter, never shorter than the provider's Retry-After."""
    ceiling = min(cap, base * (2 ** max(0, fault_count - 1)))
    delay = ceiling / 2 + rand() * ceiling / 2  # "equal jitter": spread, but never near zero
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap * 24))
    return delay


def past_failure_window(first_fault_at: datetime, now: datetime, window_hours: float) -> bool:
    """Errors have kept happening for longer than the job tolerates: stop retrying."""
    return now - first_fault_at >= timedelta(hours=window_hours)


def gives_up(transient: bool, first_fault_at: datetime, now: datetime, window_hours: float) -> bool:
    """No retry can help: a permanent error, or transient ones past the failure window."""
    return not transient or past_failure_window(first_fault_at, now, window_hours)


def why_given_up(transient: bool, window_hours: float) -> str:
    """The reason a job gave up, as its log line says it."""
    if not transient:
        return "a configuration or authorization error: no retry can fix it"
    return f"errors kept happening for {window_hours:g} h (the failure window)"
