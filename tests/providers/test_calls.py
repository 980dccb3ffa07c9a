"""The provider client layer: request counting and the identity a client is built with."""

from __future__ import annotations

import pytest

from chalicelib.providers.calls import AwsIdentity, CallCounter, _operation
from tests.race_kit import crashes, race

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "FwoGZXIvYXdzEXAMPLESESSIONTOKEN"


def test_counter_counts_by_key_and_in_total() -> None:
    # GIVEN a counter
    counter = CallCounter()

    # WHEN requests are added
    counter.add("s3.ListBuckets")
    counter.add("s3.ListBuckets")
    counter.add("sts.GetCallerIdentity")

    # THEN they are counted per operation and in total
    assert counter.counts == {"s3.ListBuckets": 2, "sts.GetCallerIdentity": 1}
    assert counter.total == 3


def test_counter_keeps_errors_apart_and_names_its_authorization() -> None:
    # GIVEN a counter for one authorization
    counter = CallCounter(authorization_id="auth_1")

    # WHEN two attempts are sent and one of them fails
    counter.add("webhook.events.post")
    counter.add("webhook.events.post")
    counter.add_error("webhook.events.post")

    # THEN both are requests, one is an error
    assert counter.total == 2 and counter.error_total == 1
    assert counter.errors == {"webhook.events.post": 1}
    assert counter.authorization_id == "auth_1"


def test_counter_is_safe_across_threads() -> None:
    # GIVEN 8 threads adding 2 000 requests each to one counter
    counter = CallCounter()

    def work() -> None:
        for _ in range(2000):
            counter.add("s3.GetObject")

    results = race([work] * 8)
    assert not crashes(results), crashes(results)

    # THEN none is lost
    assert counter.total == 16_000


@pytest.mark.parametrize(
    ("event_name", "expected"),
    [
        ("before-send.s3.ListBuckets", "ListBuckets"),
        ("before-send.sts.AssumeRole", "AssumeRole"),
        ("", "request"),
    ],
)
def test_operation_name_from_the_event(event_name: str, expected: str) -> None:
    assert _operation({"event_name": event_name}) == expected


def test_identity_repr_hides_the_secret() -> None:
    # GIVEN the identity a customer's client is built with
    identity = AwsIdentity(
        access_key_id="AKIAIOSFODNN7EXAMPLE", secret_access_key=SECRET, session_token=SESSION_TOKEN
    )

    # WHEN it is printed (a log line, a traceback with locals, a debugger)
    text = repr(identity)

    # THEN the secret and the session token are not in it (SPEC rule 12)
    assert SECRET not in text
    assert SESSION_TOKEN not in text
