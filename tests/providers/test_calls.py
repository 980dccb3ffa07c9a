"""The provider client layer: request counting and the identity a client is built with."""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError, ParamValidationError

from chalicelib.providers import calls
from chalicelib.providers.calls import AwsIdentity, CallCounter, _operation, aws_client
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


# -- client reuse ------------------------------------------------------------------------------

KEYS_A = AwsIdentity(access_key_id="AKIAAAAAAAAAAAAAAAAA", secret_access_key=SECRET, region="us-east-1")
KEYS_B = AwsIdentity(access_key_id="AKIABBBBBBBBBBBBBBBB", secret_access_key=SECRET + "B",
                     region="us-east-1")


def _built() -> int:
    return calls.built


def test_the_same_credentials_reuse_one_client_and_count_one_build(aws: None) -> None:
    # GIVEN a process with no client yet
    before = _built()

    # WHEN the same keys ask for an S3 client three times (three steps of one run)
    clients = [aws_client(KEYS_A, "s3", CallCounter()) for _ in range(3)]

    # THEN one client was built and every caller got it
    assert _built() - before == 1
    assert clients[0].client is clients[1].client is clients[2].client


def test_different_keys_never_share_a_client(aws: None) -> None:
    # GIVEN two customers' keys, and the same key id with another secret (a rotated or
    # forged secret must not ride on a client signed with the real one)
    same_id_other_secret = AwsIdentity(access_key_id=KEYS_A.access_key_id,
                                       secret_access_key=SECRET + "X", region="us-east-1")
    before = _built()

    # WHEN each asks for an S3 client
    a = aws_client(KEYS_A, "s3", None).client
    b = aws_client(KEYS_B, "s3", None).client
    c = aws_client(same_id_other_secret, "s3", None).client

    # THEN each got its own, signed with its own credentials
    assert _built() - before == 3
    assert len({id(a), id(b), id(c)}) == 3
    assert a._request_signer._credentials.secret_key == SECRET
    assert b._request_signer._credentials.secret_key == SECRET + "B"
    assert c._request_signer._credentials.secret_key == SECRET + "X"


def test_a_region_or_a_service_apart_is_another_client(aws: None) -> None:
    other_region = AwsIdentity(access_key_id=KEYS_A.access_key_id,
                               secret_access_key=SECRET, region="eu-west-1")
    a = aws_client(KEYS_A, "s3", None).client
    assert aws_client(other_region, "s3", None).client is not a
    assert aws_client(KEYS_A, "sqs", None).client is not a
    assert aws_client(KEYS_A, "s3", None).client is a  # positive control


def test_assumed_role_credentials_are_not_reused_past_their_expiry(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a role session expiring in an hour, whose client is cached
    start = 1_000_000.0
    monkeypatch.setattr(calls, "now", lambda: start)
    role = AwsIdentity(access_key_id="ASIAAAAAAAAAAAAAAAAA", secret_access_key=SECRET,
                       session_token=SESSION_TOKEN, region="us-east-1", expires_at=start + 3600)
    first = aws_client(role, "s3", None).client
    assert aws_client(role, "s3", None).client is first  # reused while valid

    # WHEN its expiry has passed
    monkeypatch.setattr(calls, "now", lambda: start + 3600)
    before = _built()
    late = aws_client(role, "s3", None).client

    # THEN the cached client is dropped; one built for expired credentials is never kept
    assert late is not first and _built() - before == 1
    assert aws_client(role, "s3", None).client is not late
    assert not any(c is late or c is first for _, c in calls._clients.values())


def test_the_cache_is_bounded(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calls, "CLIENT_CACHE_SIZE", 3)
    first = aws_client(KEYS_A, "s3", None).client
    for n in range(3):
        aws_client(AwsIdentity(access_key_id=f"AKIA{n:016d}", secret_access_key=SECRET), "s3", None)
    assert len(calls._clients) == 3
    assert aws_client(KEYS_A, "s3", None).client is not first  # the least recently used went


def test_each_caller_counts_its_own_requests_on_a_shared_client(aws: None) -> None:
    # GIVEN two runs of one authorization sharing a client, each with its counter
    run_1, run_2 = CallCounter(), CallCounter()
    s3_1 = aws_client(AwsIdentity(), "s3", run_1)
    s3_2 = aws_client(AwsIdentity(), "s3", run_2)
    assert s3_1.client is s3_2.client
    bucket = f"calls-{uuid.uuid4().hex[:10]}"
    s3_1.create_bucket(Bucket=bucket)
    try:
        for n in range(3):
            s3_1.put_object(Bucket=bucket, Key=f"k{n}", Body=b"x")

        # WHEN the second lists the bucket a page at a time, and asks for a missing key
        pages = list(s3_2.get_paginator("list_objects_v2").paginate(Bucket=bucket, MaxKeys=1))
        with pytest.raises(ClientError):
            s3_2.head_object(Bucket=bucket, Key="missing")
        # and a call without a counter sends a request counted by nobody
        aws_client(AwsIdentity(), "s3", None).list_objects_v2(Bucket=bucket)

        # THEN each counter has exactly its own requests (pages included, the error apart)
        assert run_1.counts == {"s3.CreateBucket": 1, "s3.PutObject": 3}
        assert run_2.counts == {"s3.ListObjectsV2": len(pages), "s3.HeadObject": 1}
        assert len(pages) >= 3
        assert run_2.errors == {"s3.HeadObject": 1} and run_1.error_total == 0
    finally:
        s3 = aws_client(AwsIdentity(), "s3", None)
        for n in range(3):
            s3.delete_object(Bucket=bucket, Key=f"k{n}")
        s3.delete_bucket(Bucket=bucket)


def test_hooks_registered_on_the_shared_session_reach_clients_cached_before(aws: None) -> None:
    # GIVEN a cached client
    cached = aws_client(KEYS_A, "s3", None).client
    seen: list[str] = []

    # WHEN a test hook is registered on the shared session afterwards
    calls.shared_session().events.register("before-parameter-build.s3", lambda **kw: seen.append("s3"))
    s3 = aws_client(KEYS_A, "s3", None)

    # THEN the next caller gets a client that has it
    assert s3.client is not cached
    with pytest.raises(ParamValidationError):
        s3.head_object(Bucket="b")  # Key missing: refused before any request, after the hook
    assert seen == ["s3"]
