"""chalicelib/workers/events.py: how the worker Lambdas read scheduled events."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from chalicelib.workers.events import scheduled


class Event:
    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw

    def to_dict(self) -> dict[str, Any]:
        return self.raw


RULE_EVENT = {"version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
              "source": "aws.events", "account": "123456789012", "time": "2026-12-05T03:40:00Z",
              "region": "us-east-1", "resources": ["arn:aws:events:us-east-1:123456789012:rule/purge"],
              "detail": {}}


def test_a_scheduled_event_names_itself_in_the_logs() -> None:
    assert scheduled(Event(RULE_EVENT)) == {"scheduled_event_id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
                                            "scheduled_time": "2026-12-05T03:40:00+00:00"}


def test_a_malformed_scheduled_event_is_logged_and_the_work_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN an event missing its id and time (the scheduled work reads nothing from it)
    raw = {k: v for k, v in RULE_EVENT.items() if k not in ("id", "time")}
    with caplog.at_level(logging.WARNING, logger="switchyard.workers"):
        keys = scheduled(Event(raw))
    # THEN no keys, and one warning saying why
    assert keys == {}
    assert [r.getMessage() for r in caplog.records] == ["scheduled event is not an EventBridge event"]
