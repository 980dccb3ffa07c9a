"""Use-case tests on the in-memory store: any AWS request they make is a test failure,
not a quiet call to moto (a use case reached for a repository that is not faked), and so is
any repository method the in-memory store leaves out, even when the use case caught it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def no_aws() -> Iterator[None]:
    from chalicelib.store import aws

    sent: list[str] = []

    def refuse(event_name: str = "", **_: Any) -> None:
        sent.append(event_name)
        # pytest.fail is a BaseException: a use case's `except Exception` cannot swallow it.
        pytest.fail(f"an in-memory use-case test sent an AWS request ({event_name})")

    session = aws.session()
    session.events.register("before-call", refuse, unique_id="memory-tests-no-aws")
    try:
        yield
    finally:
        session.events.unregister("before-call", unique_id="memory-tests-no-aws")
    assert sent == [], f"AWS requests from an in-memory test: {sent}"


@pytest.fixture(autouse=True)
def nothing_left_out() -> Iterator[None]:
    from tests.fakes.memory_store import NotFaked

    NotFaked.reached.clear()
    yield
    assert NotFaked.reached == [], f"reached what the in-memory store leaves out: {NotFaked.reached}"
