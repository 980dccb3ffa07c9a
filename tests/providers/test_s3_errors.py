"""How botocore errors become the reasons users read (s3.s3_error), from real error shapes.

The shapes are what botocore parses from AWS: query-protocol STS errors carry a Code and
Message; HeadBucket has no body, so its Code is the bare HTTP status ("404", "403").
"""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from chalicelib.providers.s3 import s3_error

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def client_error(
    code: str, status: int, operation: str = "GetCallerIdentity", message: str = ""
) -> ClientError:
    return ClientError(
        {
            "Error": {"Type": "Sender", "Code": code, "Message": message or f"{code} happened"},
            "ResponseMetadata": {"RequestId": "req-1", "HTTPStatusCode": status, "HTTPHeaders": {}},
        },
        operation,
    )


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("InvalidClientTokenId", 403, "the access key id is not valid (InvalidClientTokenId)"),
        ("InvalidAccessKeyId", 403, "the access key id is not valid (InvalidAccessKeyId)"),
        (
            "SignatureDoesNotMatch",
            403,
            "the secret access key does not match the access key id (SignatureDoesNotMatch)",
        ),
        ("ExpiredToken", 400, "the credentials have expired (ExpiredToken)"),
        ("ExpiredTokenException", 400, "the credentials have expired (ExpiredTokenException)"),
        (
            "UnrecognizedClientException",
            400,
            "the credentials were not recognised (UnrecognizedClientException)",
        ),
    ],
)
def test_credential_errors_say_what_is_wrong(code: str, status: int, expected: str) -> None:
    # WHEN AWS refuses the credentials
    err = s3_error(client_error(code, status), "AWS STS")

    # THEN the user reads what is wrong with them; waiting will not help
    assert err.reason == expected
    assert err.transient is False


@pytest.mark.parametrize(
    ("code", "status", "operation"),
    [("NoSuchBucket", 404, "ListObjectsV2"), ("404", 404, "HeadBucket"), ("NotFound", 404, "HeadBucket")],
)
def test_missing_bucket(code: str, status: int, operation: str) -> None:
    # WHEN S3 says the bucket is not there
    err = s3_error(client_error(code, status, operation), "bucket 'acme-data'")

    # THEN the reason names the bucket, on the bucket field, and is final
    assert err.reason == f"bucket 'acme-data' does not exist ({code})"
    assert err.field == "bucket"
    assert err.transient is False


@pytest.mark.parametrize("code", ["AccessDenied", "403", "Forbidden", "AllAccessDisabled"])
def test_denied_is_a_missing_permission(code: str) -> None:
    # WHEN AWS denies the request
    err = s3_error(client_error(code, 403, "HeadBucket"), "bucket 'acme-data'")

    # THEN the user is told a permission is missing, and on what
    assert err.reason == f"missing permission: access to bucket 'acme-data' was denied ({code})"
    assert err.transient is False


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("Throttling", 400),
        ("ThrottlingException", 400),
        ("SlowDown", 503),
        ("RequestLimitExceeded", 400),
        ("ServiceUnavailable", 503),
        ("InternalError", 500),
        ("RequestTimeout", 400),
        ("", 500),
        ("", 502),
        ("TooManyRequests", 429),
    ],
)
def test_throttling_and_outages_are_transient(code: str, status: int) -> None:
    # WHEN AWS throttles or fails
    err = s3_error(client_error(code, status), "AWS STS")

    # THEN the error is marked transient: retry later
    assert err.transient is True
    assert err.reason.startswith("AWS is unavailable right now")


def test_other_errors_name_the_target_and_code() -> None:
    # WHEN an error nobody mapped comes back
    err = s3_error(client_error("InvalidBucketName", 400, "HeadBucket"), "bucket 'acme-data'")

    # THEN the reason names what was accessed and the AWS code, and is final
    assert err.reason == "bucket 'acme-data': InvalidBucketName"
    assert err.transient is False


def test_the_aws_message_is_never_copied_into_the_reason() -> None:
    # GIVEN an error whose message echoes a credential
    exc = client_error("SignatureDoesNotMatch", 403, message=f"The canonical string ... {SECRET}")

    # WHEN it is classified
    err = s3_error(exc, "AWS STS")

    # THEN only the code reaches the user
    assert SECRET not in err.reason
    assert SECRET not in str(err)


@pytest.mark.parametrize(
    "exc",
    [
        EndpointConnectionError(endpoint_url="https://sts.us-east-1.amazonaws.com/"),
        ReadTimeoutError(endpoint_url="https://s3.amazonaws.com/acme-data"),
    ],
    ids=["endpoint-connection", "read-timeout"],
)
def test_unreachable_is_transient(exc: Exception) -> None:
    err = s3_error(exc, "AWS STS")
    assert err.reason == "unreachable: AWS did not answer in time"
    assert err.transient is True


def test_other_botocore_errors_are_switchyards_own_transient_trouble() -> None:
    # GIVEN an error that is Switchyard's own problem, not the user's (no credentials at all)
    exc = NoCredentialsError()

    # WHEN it is classified
    err = s3_error(exc, "AWS STS")

    # THEN it is transient (nothing is concluded about the user's credentials) and says whose
    assert err.transient is True
    assert "Switchyard" in err.reason and "NoCredentialsError" in err.reason
