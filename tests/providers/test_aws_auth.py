"""Shared AWS credentials (chalicelib/providers/aws_auth.py): models composed per provider,
assumed-role sessions cached until shortly before they expire, errors in AWS's words
without credentials. moto in-process (tests/providers/conftest.py)."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from pydantic import Field

from chalicelib.providers import aws_auth
from chalicelib.providers.aws_auth import AccessKeysBase, AssumeRoleBase
from chalicelib.providers.calls import CallCounter
from chalicelib.providers.s3 import PROVIDER as S3
from chalicelib.providers.s3 import AssumeRole

ROLE_ARN = "arn:aws:iam::210987654321:role/SwitchyardAccess"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def role(external_id: str = "sy-ext-5f2c9a71", arn: str = ROLE_ARN) -> AssumeRole:
    return AssumeRole(role_arn=arn, external_id=external_id)


def _bucket() -> str:
    name = f"sy-auth-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=name)
    return name


def test_a_provider_composes_its_credentials_from_the_shared_parts() -> None:
    # GIVEN a provider's own models: the shared fields plus its resource
    class Keys(AccessKeysBase):
        stream_name: str | None = Field(None)

    class Role(AssumeRoleBase):
        stream_name: str | None = Field(None)

    # WHEN their schemas are generated
    keys, role_ = Keys.model_json_schema(), Role.model_json_schema()

    # THEN the shared fields come first, the secret is marked, unknown fields are refused
    assert list(keys["properties"]) == ["access_key_id", "secret_access_key", "region", "stream_name"]
    assert list(role_["properties"]) == ["role_arn", "external_id", "region", "switchyard_account", "stream_name"]
    assert keys["properties"]["secret_access_key"]["x-secret"] is True
    assert role_["properties"]["external_id"]["x-secret"] is True
    assert keys["additionalProperties"] is False and role_["additionalProperties"] is False
    # AND both methods are declared with the provider's models
    methods = aws_auth.auth_methods(Keys, Role)
    assert [(m.id, m.credentials_model) for m in methods] == [("access_keys", Keys), ("assume_role", Role)]


def test_one_assume_role_serves_many_calls(aws: None) -> None:
    # GIVEN a role and a counter shared by 5 calls (options, then steps would do the same)
    counter = CallCounter()
    creds = role(external_id=f"ext-{uuid.uuid4().hex[:8]}")
    _bucket()

    # WHEN the provider lists buckets through the role 5 times
    for _ in range(5):
        S3.options("assume_role", creds, "s3_file_import", "bucket", {}, counter)

    # THEN the role was assumed once, and every call went out
    assert counter.counts == {"sts.AssumeRole": 1, "s3.ListBuckets": 5}


def test_a_check_always_assumes_again(aws: None) -> None:
    # GIVEN a role whose session is cached
    counter = CallCounter()
    creds = role(external_id=f"ext-{uuid.uuid4().hex[:8]}")
    aws_auth.session("assume_role", creds, counter)

    # WHEN it is checked twice
    S3.check("assume_role", creds, {}, counter)
    S3.check("assume_role", creds, {}, counter)

    # THEN each check assumed the role itself (a revoked trust policy must show), and the
    # fresh session replaced the cached one
    assert counter.counts == {"sts.AssumeRole": 3, "sts.GetCallerIdentity": 2}
    aws_auth.session("assume_role", creds, counter)
    assert counter.counts["sts.AssumeRole"] == 3


def test_a_session_is_renewed_shortly_before_it_expires(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a cached role session (moto grants the 1 h asked for)
    counter = CallCounter()
    creds = role(external_id=f"ext-{uuid.uuid4().hex[:8]}")
    first = aws_auth.session("assume_role", creds, counter)
    start = aws_auth.now()

    # WHEN 54 minutes pass THEN it is still used
    monkeypatch.setattr(aws_auth, "now", lambda: start + 54 * 60)
    assert aws_auth.session("assume_role", creds, counter).identity == first.identity
    assert counter.counts["sts.AssumeRole"] == 1

    # WHEN 56 minutes have passed (less than REFRESH_MARGIN left) THEN the role is assumed again
    monkeypatch.setattr(aws_auth, "now", lambda: start + 56 * 60)
    renewed = aws_auth.session("assume_role", creds, counter)
    assert counter.counts["sts.AssumeRole"] == 2
    assert renewed.identity.access_key_id != first.identity.access_key_id


def test_sessions_are_per_role_and_external_id(aws: None) -> None:
    # GIVEN one role with two external ids, and another role
    counter = CallCounter()
    a, b = role("ext-aaaa1111"), role("ext-bbbb2222")
    other = role("ext-aaaa1111", arn="arn:aws:iam::210987654321:role/Other")

    # WHEN sessions are made for each, twice
    ids = {name: aws_auth.session("assume_role", c, counter).identity.access_key_id
           for name, c in (("a", a), ("b", b), ("other", other), ("a2", a))}

    # THEN each distinct (role, external id) assumed once; the same one reuses its session
    assert counter.counts == {"sts.AssumeRole": 3}
    assert ids["a"] == ids["a2"] and len({ids["a"], ids["b"], ids["other"]}) == 3


def test_calls_reset_forgets_cached_sessions(aws: None) -> None:
    from chalicelib.providers import calls

    counter = CallCounter()
    creds = role(external_id=f"ext-{uuid.uuid4().hex[:8]}")
    aws_auth.session("assume_role", creds, counter)
    calls.reset()  # the endpoint moved (tests, the local runner): cached sessions belong to the old one
    aws_auth.session("assume_role", creds, counter)
    assert counter.counts == {"sts.AssumeRole": 2}


def _error(code: str, message: str = "", status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "PutRecords")


def test_an_expired_cached_session_is_forgotten_and_retried_later(aws: None) -> None:
    # GIVEN a cached role session
    counter = CallCounter()
    creds = role(external_id=f"ext-{uuid.uuid4().hex[:8]}")
    sess = aws_auth.session("assume_role", creds, counter)

    # WHEN AWS says its token expired
    err = sess.error(_error("ExpiredTokenException", "The security token included in the request is expired"),
                     "stream 'x'")

    # THEN that is our session's trouble (transient), and the next call assumes again
    assert err.transient is True and "renewed on retry" in err.reason
    aws_auth.session("assume_role", creds, counter)
    assert counter.counts == {"sts.AssumeRole": 2}


def test_access_keys_expired_is_the_customers_problem(aws: None) -> None:
    sess = aws_auth.session("access_keys", _keys())
    err = sess.error(_error("ExpiredTokenException"), "stream 'x'")
    assert err.transient is False and err.reason == "the credentials have expired (ExpiredTokenException)"


def _keys() -> Any:
    from chalicelib.providers.s3 import AccessKeys

    return AccessKeys(access_key_id="AKIAIOSFODNN7EXAMPLE", secret_access_key=SECRET)


def test_aws_words_are_quoted_for_missing_and_denied_without_credentials() -> None:
    # GIVEN AWS messages for a missing stream and a denied call, one echoing a secret
    missing = _error("ResourceNotFoundException", "Stream s under account 123456789012 not found.")
    denied = _error("AccessDeniedException", f"User: arn:aws:iam::123456789012:user/u is not authorized {SECRET}")
    bad_sig = _error("SignatureDoesNotMatch", f"The canonical string ... {SECRET}", 403)

    # WHEN they are classified with words
    m = aws_auth.classify(missing, "stream 's'", missing=("ResourceNotFoundException",),
                          field="stream_name", words=True)
    d = aws_auth.classify(denied, "stream 's'", words=True)
    s = aws_auth.classify(bad_sig, "AWS STS", words=True)

    # THEN the user reads AWS's words, never a credential, and credential errors stay code-only
    assert m.reason == ("stream 's' does not exist (ResourceNotFoundException: Stream s under account "
                        "123456789012 not found.)") and m.field == "stream_name" and not m.transient
    assert d.reason.startswith("missing permission: access to stream 's' was denied (AccessDeniedException: "
                               "User: arn:aws:iam::123456789012:user/u is not authorized")
    assert SECRET not in d.reason
    assert s.reason == "the secret access key does not match the access key id (SignatureDoesNotMatch)"


def test_a_session_scrubs_its_own_secret_from_aws_words(aws: None) -> None:
    sess = aws_auth.session("access_keys", _keys())
    err = sess.error(_error("InvalidArgumentException", f"bad {SECRET[:20]} value"), "stream 's'",
                     words=True, secrets=[SECRET[:20]])
    assert SECRET[:20] not in err.reason and err.reason == "stream 's': InvalidArgumentException: bad … value"


@pytest.mark.parametrize("code", ["ProvisionedThroughputExceededException", "LimitExceededException",
                                  "KMSThrottlingException", "RequestThrottled", "InternalFailure"])
def test_kinesis_and_sqs_throttling_is_transient(code: str) -> None:
    assert aws_auth.classify(_error(code), "stream 's'").transient is True


def test_hint_never_shows_a_secret() -> None:
    assert aws_auth.hint("access_keys", _keys()) == "AKIA…MPLE"
    assert aws_auth.hint("assume_role", role()) == ROLE_ARN


def test_the_session_names_the_switchyard_account_and_tenants_never_share_one(aws: None) -> None:
    # GIVEN the same role and external id used for two Switchyard accounts
    mine = AssumeRole(role_arn=ROLE_ARN, external_id="ext-shared-1", switchyard_account="acct_mine")
    theirs = AssumeRole(role_arn=ROLE_ARN, external_id="ext-shared-1", switchyard_account="acct_theirs")
    counter = CallCounter()
    # WHEN each assumes it
    a = aws_auth.session("assume_role", mine, counter)
    b = aws_auth.session("assume_role", theirs, counter)
    # THEN each session is named by its account (the customer's CloudTrail shows who)
    assert a.client("sts").get_caller_identity()["Arn"].endswith("/switchyard-acct_mine")
    assert b.client("sts").get_caller_identity()["Arn"].endswith("/switchyard-acct_theirs")
    # AND the cache never hands one account's session to the other
    assert counter.counts["sts.AssumeRole"] == 2
    assert a.identity.access_key_id != b.identity.access_key_id
    # AND credentials without an account (built directly) keep the old name
    from chalicelib.domain.ids import role_session_name

    assert role_session_name(None) == "switchyard"
