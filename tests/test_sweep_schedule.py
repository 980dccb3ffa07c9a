"""The daily health sweep's schedule is a setting (SWITCHYARD_HEALTH_SWEEP_SCHEDULE), read
when the app is imported (and so packaged), checked, daily 05:00 UTC by default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chalicelib.config import DEFAULT_SWEEP_SCHEDULE, check_sweep_schedule

ROOT = Path(__file__).resolve().parents[1]


def _app_schedule(value: str | None) -> subprocess.CompletedProcess[str]:
    """Import the app in a fresh interpreter with the setting, as `chalice package` does."""
    env = {k: v for k, v in os.environ.items() if k != "SWITCHYARD_HEALTH_SWEEP_SCHEDULE"}
    if value is not None:
        env["SWITCHYARD_HEALTH_SWEEP_SCHEDULE"] = value
    code = ("from app import app\n"
            "from devserver.events import rule_sources\n"
            "print({r.handler: r.expression for r in rule_sources(app)}['health_sweep'])")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


def test_the_app_sweeps_daily_at_5_utc_by_default_and_takes_the_setting() -> None:
    # WHEN the app is imported without the setting THEN its sweep runs daily at 05:00 UTC
    default = _app_schedule(None)
    assert default.returncode == 0, default.stderr
    assert default.stdout.strip() == DEFAULT_SWEEP_SCHEDULE == "cron(0 5 * * ? *)"
    # WHEN the setting names another time THEN the sweep's rule uses it
    custom = _app_schedule("cron(30 2 * * ? *)")
    assert custom.returncode == 0, custom.stderr
    assert custom.stdout.strip() == "cron(30 2 * * ? *)"
    # WHEN it is not a daily expression THEN the import (the package) stops with the reason
    bad = _app_schedule("cron(0 5 ? * MON *)")
    assert bad.returncode != 0
    assert "SWITCHYARD_HEALTH_SWEEP_SCHEDULE" in bad.stderr and "every day" in bad.stderr


@pytest.mark.parametrize("expr", [
    "cron(0 5 * * ? *)", "cron(15 */6 * * ? *)", "cron(0 5,17 ? * * *)", "cron(0 1-3 * * ? *)",
    "cron(0 * * * ? *)", "rate(1 day)", "rate(12 hours)", "rate(60 minutes)", "rate(1 hour)",
])
def test_daily_to_hourly_expressions_are_accepted(expr: str) -> None:
    assert check_sweep_schedule(expr) == expr


@pytest.mark.parametrize(("expr", "why"), [
    ("cron(0 5 ? * MON *)", "every day"),          # weekly: SPEC rule 7 wants daily checks
    ("cron(0 5 1 * ? *)", "every day"),            # monthly
    ("cron(*/5 * * * ? *)", "minutes"),            # every 5 minutes: hammers every provider
    ("cron(0 24 * * ? *)", "hours"),
    ("cron(0 5 * * ?)", "6 fields"),
    ("rate(2 days)", "at least daily"),
    ("rate(30 minutes)", "at most hourly"),
    ("rate(1 days)", "singular"),
    ("rate(daily)", "rate(<number>"),
    ("0 5 * * *", "cron(...) or rate(...)"),
])
def test_other_expressions_are_refused_with_the_reason(expr: str, why: str) -> None:
    with pytest.raises(ValueError) as exc:
        check_sweep_schedule(expr)
    assert why in str(exc.value) and "SWITCHYARD_HEALTH_SWEEP_SCHEDULE" in str(exc.value)
