"""Use-case tests on the in-memory store: any AWS request they make is a test failure,
not a quiet call to moto (a use case reached for a repository that is not faked)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def no_aws() -> Iterator[None]:
    from chalicelib.store import aws

    def refuse(event_name: str = "", **_: Any) -> None:
        raise AssertionError(f"an in-memory use-case test sent an AWS request ({event_name})")

    session = aws.session()
    session.events.register("before-call", refuse, unique_id="memory-tests-no-aws")
    try:
        yield
    finally:
        session.events.unregister("before-call", unique_id="memory-tests-no-aws")
