"""The Amazon S3 provider against moto, in-process (no server, no AWS_ENDPOINT_URL).

moto's in-process backends are the very ones the session-wide ThreadedMotoServer of
tests/conftest.py serves. `mock_aws()` resets them on start and on stop by default, which
would wipe the stack other test packages deployed into it, so the fixture starts it with
reset=False / remove_data=False, names every bucket and user uniquely, and each test
deletes what it created.

Provider clients come from one shared boto3 session (chalicelib.providers.calls), which
caches Switchyard's own credentials once resolved: the fixture resets it on the way in and
out, and a test that changes Switchyard's identity resets it again.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core import enable_iam_authentication, set_initial_no_auth_action_count
from pydantic import BaseModel, ValidationError

from chalicelib import config
from chalicelib.domain.catalog import JobType
from chalicelib.domain.models import CheckResult, HealthStatus
from chalicelib.providers import calls
from chalicelib.providers.base import ProviderError
from chalicelib.providers.calls import CallCounter
from chalicelib.providers.s3 import (
    PROVIDER,
    SPEC,
    AccessKeys,
    AssumeRole,
    S3ExportConfig,
    S3ImportConfig,
)

KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
ROLE_ACCOUNT = "210987654321"
ROLE_ARN = f"arn:aws:iam::{ROLE_ACCOUNT}:role/SwitchyardAccess"
EXTERNAL_ID = "sy-ext-5f2c9a71"
# The account moto answers for access keys it does not know (and for its own IAM users).
MOTO_ACCOUNT = "123456789012"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in (
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL_STS",
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    config.reset()
    calls.reset()
    mock = mock_aws()
    mock.start(reset=False)
    try:
        yield
    finally:
        mock.stop(remove_data=False)
        config.reset()
        calls.reset()


@pytest.fixture
def s3(aws: None) -> Any:
    return boto3.client("s3", region_name="us-east-1")


@pytest.fixture
def make_bucket(s3: Any) -> Iterator[Callable[..., str]]:
    made: list[str] = []

    def make(*keys: str) -> str:
        name = f"sy-test-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=name)
        made.append(name)
        for key in keys:
            s3.put_object(Bucket=name, Key=key, Body=b"" if key.endswith("/") else b"email\na@example.com\n")
        return name

    yield make
    for name in made:
        for obj in s3.list_objects_v2(Bucket=name).get("Contents", []):
            s3.delete_object(Bucket=name, Key=obj["Key"])
        s3.delete_bucket(Bucket=name)


@pytest.fixture
def make_iam_user(aws: None) -> Iterator[Callable[..., dict[str, str]]]:
    """An IAM user in moto's account, allowed the given actions; returns its access key."""
    iam = boto3.client("iam", region_name="us-east-1")
    made: list[tuple[str, str, bool]] = []

    def make(*allow: str) -> dict[str, str]:
        name = f"sy-test-{uuid.uuid4().hex[:8]}"
        iam.create_user(UserName=name)
        if allow:
            policy = {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": list(allow), "Resource": "*"}],
            }
            iam.put_user_policy(UserName=name, PolicyName="allow", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        made.append((name, key["AccessKeyId"], bool(allow)))
        return {"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}

    yield make
    for name, key_id, has_policy in made:
        iam.delete_access_key(UserName=name, AccessKeyId=key_id)
        if has_policy:
            iam.delete_user_policy(UserName=name, PolicyName="allow")
        iam.delete_user(UserName=name)


def keys(key_id: str = KEY_ID, secret: str = SECRET, **kw: Any) -> AccessKeys:
    return AccessKeys(access_key_id=key_id, secret_access_key=secret, **kw)


def role(**kw: Any) -> AssumeRole:
    return AssumeRole(role_arn=ROLE_ARN, external_id=EXTERNAL_ID, **kw)


def act_as(monkeypatch: pytest.MonkeyPatch, key: dict[str, str]) -> None:
    """Make `key` Switchyard's own identity (the one that calls sts:AssumeRole)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["secret"])
    calls.reset()


def assert_no_secret(result: CheckResult | ProviderError, *secrets: str) -> None:
    text = repr(result) + str(getattr(result, "reason", ""))
    for secret in secrets:
        assert secret not in text


# --- spec ------------------------------------------------------------------------------


def test_spec_offers_both_auth_methods() -> None:
    # THEN access keys and assume role, each with its own credentials model
    assert [(m.id, m.credentials_model) for m in SPEC.auth_methods] == [
        ("access_keys", AccessKeys),
        ("assume_role", AssumeRole),
    ]
    assert all(m.verifiable for m in SPEC.auth_methods)


@pytest.mark.parametrize(
    ("workflow_id", "job_type", "config_model"),
    [
        ("s3_file_import", JobType.IMPORT, S3ImportConfig),
        ("s3_audience_export", JobType.EXPORT, S3ExportConfig),
    ],
)
def test_workflows_are_enabled_by_both_methods(
    workflow_id: str, job_type: JobType, config_model: type[BaseModel]
) -> None:
    # WHEN the workflow is looked up
    wf = SPEC.workflow(workflow_id)

    # THEN it has its job type and config model, and both methods enable it
    assert wf.job_type is job_type
    assert wf.config_model is config_model
    assert set(wf.auth_methods) == {"access_keys", "assume_role"}
    assert "bucket" in wf.resource_fields


def test_provider_offers_import_and_export() -> None:
    assert SPEC.job_types == [JobType.IMPORT, JobType.EXPORT]


@pytest.mark.parametrize(
    ("model", "secret_field", "plain_fields"),
    [
        (AccessKeys, "secret_access_key", ("access_key_id", "region", "bucket")),
        (AssumeRole, "external_id", ("role_arn", "region", "bucket")),
    ],
)
def test_credentials_schema_marks_the_secret(
    model: type[BaseModel], secret_field: str, plain_fields: tuple[str, ...]
) -> None:
    # WHEN the credentials JSON schema is generated
    props = model.model_json_schema()["properties"]

    # THEN the secret is marked x-secret and write-only, and nothing else is
    assert props[secret_field]["x-secret"] is True
    assert props[secret_field]["writeOnly"] is True
    assert props[secret_field]["format"] == "password"
    for name in plain_fields:
        assert "x-secret" not in props[name]
        assert "writeOnly" not in props[name]


def test_secret_is_masked_in_repr_and_dumps() -> None:
    # GIVEN parsed access keys
    creds = keys()

    # THEN the secret appears neither in repr nor in a JSON dump, only through get_secret_value
    assert SECRET not in repr(creds)
    assert SECRET not in creds.model_dump_json()
    assert creds.secret_access_key.get_secret_value() == SECRET


@pytest.mark.parametrize(
    ("model", "field", "value"),
    [
        (AccessKeys, "access_key_id", "akiaiosfodnn7example"),
        (AccessKeys, "secret_access_key", "short"),
        (AccessKeys, "region", "Mars"),
        (AssumeRole, "role_arn", "arn:aws:iam::2109:role/X"),
        (AssumeRole, "role_arn", "arn:aws:iam::210987654321:user/X"),
        (AssumeRole, "external_id", "x"),
    ],
)
def test_credentials_reject_bad_values_naming_the_field(
    model: type[BaseModel], field: str, value: str
) -> None:
    # GIVEN otherwise valid credentials with one bad value
    good = (
        {"access_key_id": KEY_ID, "secret_access_key": SECRET}
        if model is AccessKeys
        else {"role_arn": ROLE_ARN, "external_id": EXTERNAL_ID}
    )

    # WHEN they are parsed
    with pytest.raises(ValidationError) as caught:
        model(**{**good, field: value})

    # THEN the error is on that field
    assert [e["loc"] for e in caught.value.errors()] == [(field,)]


IMPORT_OK = {"bucket": "acme-cdp-data"}
EXPORT_OK = {"bucket": "acme-cdp-data", "audience_id": "aud_1"}


@pytest.mark.parametrize(("model", "good"), [(S3ImportConfig, IMPORT_OK), (S3ExportConfig, EXPORT_OK)])
def test_config_rejects_unknown_fields(model: type[BaseModel], good: dict[str, Any]) -> None:
    # GIVEN a config with a field the workflow does not have
    # WHEN it is parsed
    with pytest.raises(ValidationError) as caught:
        model(**good, bucket_region="us-east-1")

    # THEN it is refused on that field, and the schema says so too
    assert [(e["type"], e["loc"]) for e in caught.value.errors()] == [("extra_forbidden", ("bucket_region",))]
    assert model.model_json_schema()["additionalProperties"] is False


@pytest.mark.parametrize("model", [S3ImportConfig, S3ExportConfig, AccessKeys])
@pytest.mark.parametrize(
    "bucket", ["Acme-Data", "ab", "acme_data", "-acme", "acme-", "a" * 64, "acme data", ""]
)
def test_config_rejects_bad_bucket_names(model: type[BaseModel], bucket: str) -> None:
    # GIVEN a bucket name S3 would never accept
    base: dict[str, Any] = {
        AccessKeys: {"access_key_id": KEY_ID, "secret_access_key": SECRET},
        S3ImportConfig: {},
        S3ExportConfig: {"audience_id": "aud_1"},
    }[model]

    # WHEN it is parsed
    with pytest.raises(ValidationError) as caught:
        model(**base, bucket=bucket)

    # THEN the error is on the bucket field
    assert {e["loc"][0] for e in caught.value.errors()} == {"bucket"}


@pytest.mark.parametrize("bucket", ["abc", "acme-cdp-data", "acme.cdp.data", "a" * 63, "123bucket"])
def test_config_accepts_good_bucket_names(bucket: str) -> None:
    assert S3ImportConfig(bucket=bucket).bucket == bucket


@pytest.mark.parametrize("bucket", ["acme..data", "192.168.5.4"])
def test_config_rejects_bucket_names_s3_forbids(bucket: str) -> None:
    with pytest.raises(ValidationError):
        S3ImportConfig(bucket=bucket)


# --- check: access keys ----------------------------------------------------------------


def test_check_access_keys_is_healthy(aws: None) -> None:
    # GIVEN access keys moto does not know (it accepts any key when auth is not enforced)
    # WHEN they are checked
    result = PROVIDER.check("access_keys", keys(), {})

    # THEN they are healthy and reach moto's account
    assert result.status is HealthStatus.HEALTHY
    assert result.provider_account == MOTO_ACCOUNT
    assert result.resources == {}
    assert_no_secret(result, SECRET)


def test_check_with_the_credentials_bucket(make_bucket: Callable[..., str]) -> None:
    # GIVEN access keys that name an existing bucket
    bucket = make_bucket()

    # WHEN they are checked
    result = PROVIDER.check("access_keys", keys(bucket=bucket), {})

    # THEN the bucket is among the verified resources
    assert result.status is HealthStatus.HEALTHY
    assert result.resources == {"bucket": bucket}
    assert bucket in (result.reason or "")


def test_check_with_the_jobs_bucket(make_bucket: Callable[..., str]) -> None:
    # GIVEN a job's configured bucket passed as a resource (the change-authorization check)
    bucket = make_bucket()

    # WHEN credentials without a bucket of their own are checked against it
    result = PROVIDER.check("access_keys", keys(), {"bucket": bucket})

    # THEN that bucket is verified
    assert result.status is HealthStatus.HEALTHY
    assert result.resources == {"bucket": bucket}


def test_check_with_a_missing_bucket_is_unhealthy(aws: None) -> None:
    # GIVEN a bucket that does not exist
    bucket = f"sy-test-missing-{uuid.uuid4().hex[:8]}"

    # WHEN the credentials are checked against it
    result = PROVIDER.check("access_keys", keys(), {"bucket": bucket})

    # THEN the result is unhealthy, naming the bucket, but still says which account was reached
    assert result.status is HealthStatus.UNHEALTHY
    assert bucket in (result.reason or "")
    assert "does not exist" in (result.reason or "")
    assert result.provider_account == MOTO_ACCOUNT
    assert result.resources == {}


# --- check: assume role ----------------------------------------------------------------


def test_check_assume_role_reaches_the_roles_account(aws: None) -> None:
    # GIVEN a role in another account (moto needs no such role to exist, nor a trust policy)
    counter = CallCounter()

    # WHEN it is checked
    result = PROVIDER.check("assume_role", role(), {}, counter)

    # THEN the caller identity behind the assumed credentials is the role's account
    assert result.status is HealthStatus.HEALTHY
    assert result.provider_account == ROLE_ACCOUNT
    assert counter.counts == {"sts.AssumeRole": 1, "sts.GetCallerIdentity": 1}
    assert_no_secret(result, EXTERNAL_ID)


# --- check: credentials refused (moto enforcing IAM auth in-process) --------------------


def test_check_unknown_access_key_is_unhealthy(aws: None) -> None:
    # GIVEN moto enforcing IAM authentication from the first request on
    @set_initial_no_auth_action_count(0)
    def check_with_auth_enforced() -> CheckResult:
        return PROVIDER.check("access_keys", keys(), {})

    # WHEN access keys IAM does not know are checked
    result = check_with_auth_enforced()

    # THEN they are unhealthy because the key id is not valid, and the secret is nowhere
    assert result.status is HealthStatus.UNHEALTHY
    assert result.reason == "the access key id is not valid (InvalidClientTokenId)"
    assert result.provider_account is None
    assert_no_secret(result, SECRET)


def test_check_wrong_secret_is_unhealthy(make_iam_user: Callable[..., dict[str, str]]) -> None:
    # GIVEN a real IAM access key, presented with the wrong secret
    key = make_iam_user()
    wrong = "x" * 40

    # WHEN it is checked with IAM auth enforced
    with enable_iam_authentication():
        result = PROVIDER.check("access_keys", keys(key["id"], wrong), {})

    # THEN the signature does not match, and neither secret appears
    assert result.status is HealthStatus.UNHEALTHY
    assert "secret access key does not match" in (result.reason or "")
    assert "SignatureDoesNotMatch" in (result.reason or "")
    assert_no_secret(result, wrong, key["secret"])


def test_check_valid_key_without_permissions(
    make_iam_user: Callable[..., dict[str, str]], make_bucket: Callable[..., str]
) -> None:
    # GIVEN a valid IAM key with no policy at all, and an existing bucket
    key = make_iam_user()
    bucket = make_bucket()

    # WHEN it is checked with IAM auth enforced, without and with the bucket
    with enable_iam_authentication():
        bare = PROVIDER.check("access_keys", keys(key["id"], key["secret"]), {})
        with_bucket = PROVIDER.check("access_keys", keys(key["id"], key["secret"]), {"bucket": bucket})

    # THEN the identity verifies (GetCallerIdentity needs no permission) but the bucket is denied
    assert bare.status is HealthStatus.HEALTHY
    assert bare.provider_account == MOTO_ACCOUNT
    assert with_bucket.status is HealthStatus.UNHEALTHY
    assert "missing permission" in (with_bucket.reason or "")
    assert bucket in (with_bucket.reason or "")


def test_check_valid_key_with_bucket_permission(
    make_iam_user: Callable[..., dict[str, str]], make_bucket: Callable[..., str]
) -> None:
    # GIVEN a valid IAM key allowed to reach the bucket. Real AWS authorises HeadBucket with
    # s3:ListBucket; moto checks an action named after the operation, s3:HeadBucket.
    key = make_iam_user("s3:ListBucket", "s3:HeadBucket")
    bucket = make_bucket()

    # WHEN it is checked with IAM auth enforced
    with enable_iam_authentication():
        result = PROVIDER.check("access_keys", keys(key["id"], key["secret"], bucket=bucket), {})

    # THEN it is healthy and the bucket is verified
    assert result.status is HealthStatus.HEALTHY
    assert result.resources == {"bucket": bucket}


def test_check_assume_role_denied_to_switchyard(
    make_iam_user: Callable[..., dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN Switchyard's own identity is a user without sts:AssumeRole
    own = make_iam_user()
    act_as(monkeypatch, own)

    # WHEN a role is checked with IAM auth enforced
    with enable_iam_authentication():
        result = PROVIDER.check("assume_role", role(), {})

    # THEN it is unhealthy: access to the role was denied (what AWS says for a bad trust policy too)
    assert result.status is HealthStatus.UNHEALTHY
    assert "missing permission" in (result.reason or "")
    assert ROLE_ARN in (result.reason or "")
    assert_no_secret(result, EXTERNAL_ID, own["secret"])


def test_check_assume_role_allowed_to_switchyard(
    make_iam_user: Callable[..., dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN Switchyard's own identity may assume roles
    own = make_iam_user("sts:AssumeRole")
    act_as(monkeypatch, own)

    # WHEN a role is checked with IAM auth enforced
    with enable_iam_authentication():
        result = PROVIDER.check("assume_role", role(), {})

    # THEN the assumed credentials verify and reach the role's account
    assert result.status is HealthStatus.HEALTHY
    assert result.provider_account == ROLE_ACCOUNT


def test_check_assume_role_does_not_blame_the_customer_for_switchyards_identity(aws: None) -> None:
    # GIVEN IAM auth enforced and Switchyard's own credentials unknown to IAM
    # WHEN a customer's role is checked
    with enable_iam_authentication(), pytest.raises(ProviderError) as caught:
        PROVIDER.check("assume_role", role(), {})

    # THEN nothing is concluded about the customer's role: a transient error on our side,
    # never an "unhealthy" verdict about an access key the customer never gave
    assert caught.value.transient is True
    assert "Switchyard" in caught.value.reason and "access key" not in caught.value.reason


# --- options ---------------------------------------------------------------------------


def test_bucket_options_list_the_buckets(make_bucket: Callable[..., str]) -> None:
    # GIVEN two buckets
    first, second = make_bucket(), make_bucket()

    # WHEN the bucket options are read through access keys
    options = PROVIDER.options("access_keys", keys(), "s3_file_import", "bucket", {})

    # THEN both are offered, labelled by name
    by_value = {o.value: o for o in options}
    assert {first, second} <= set(by_value)
    assert by_value[first].label == first
    assert by_value[first].kind is None


def test_bucket_options_through_a_role_are_the_roles_account(make_bucket: Callable[..., str]) -> None:
    # GIVEN a bucket in moto's default account
    bucket = make_bucket()

    # WHEN bucket options are read through a role in another account
    options = PROVIDER.options("assume_role", role(), "s3_file_import", "bucket", {})

    # THEN that bucket is not listed: the assumed credentials, not Switchyard's, were used
    assert bucket not in {o.value for o in options}


def test_prefix_options_at_the_root(make_bucket: Callable[..., str]) -> None:
    # GIVEN a bucket with imports/a.csv, imports/b.csv and an empty exports/ folder
    bucket = make_bucket("imports/a.csv", "imports/b.csv", "exports/")

    # WHEN the prefix options at the root are read
    options = PROVIDER.options("access_keys", keys(), "s3_file_import", "prefix", {"bucket": bucket})

    # THEN the two folders are offered as prefixes, and no object sits at the root
    assert [(o.value, o.kind) for o in options] == [("exports/", "prefix"), ("imports/", "prefix")]


def test_prefix_options_inside_a_folder(make_bucket: Callable[..., str]) -> None:
    # GIVEN the same bucket layout
    bucket = make_bucket("imports/a.csv", "imports/b.csv", "exports/")

    # WHEN the prefix options under imports/ are read
    options = PROVIDER.options(
        "access_keys", keys(), "s3_file_import", "prefix", {"bucket": bucket, "prefix": "imports/"}
    )

    # THEN both files are offered as objects, with their size in the label
    assert [(o.value, o.kind) for o in options] == [("imports/a.csv", "object"), ("imports/b.csv", "object")]
    assert options[0].label == "imports/a.csv (20 bytes)"


def test_prefix_options_need_a_bucket(aws: None) -> None:
    # WHEN prefix options are asked for without a bucket
    with pytest.raises(ProviderError) as caught:
        PROVIDER.options("access_keys", keys(), "s3_file_import", "prefix", {})

    # THEN the user is told to choose a bucket first
    assert caught.value.field == "bucket"
    assert "bucket" in caught.value.reason


def test_prefix_options_of_a_missing_bucket(aws: None) -> None:
    # GIVEN a bucket that does not exist
    bucket = f"sy-test-missing-{uuid.uuid4().hex[:8]}"

    # WHEN its prefix options are read
    with pytest.raises(ProviderError) as caught:
        PROVIDER.options("access_keys", keys(), "s3_file_import", "prefix", {"bucket": bucket})

    # THEN the error names the bucket, says it does not exist, and is not worth retrying
    err = caught.value
    assert bucket in err.reason
    assert "does not exist" in err.reason
    assert err.field == "bucket"
    assert err.transient is False


def test_options_of_a_field_without_live_options(aws: None) -> None:
    with pytest.raises(ProviderError) as caught:
        PROVIDER.options("access_keys", keys(), "s3_file_import", "format", {})
    assert caught.value.field == "field"
    assert "'format'" in caught.value.reason


def test_options_with_refused_credentials(aws: None) -> None:
    # GIVEN IAM auth enforced and access keys IAM does not know
    # WHEN bucket options are read
    with enable_iam_authentication(), pytest.raises(ProviderError) as caught:
        PROVIDER.options("access_keys", keys(), "s3_file_import", "bucket", {})

    # THEN the provider's reason is given, without the secret
    assert "not valid" in caught.value.reason
    assert caught.value.transient is False
    assert SECRET not in caught.value.reason


# --- request counting ------------------------------------------------------------------


def test_check_counts_its_requests(make_bucket: Callable[..., str]) -> None:
    # GIVEN a counter for one authorization
    counter = CallCounter()
    bucket = make_bucket()

    # WHEN a check with a bucket runs
    PROVIDER.check("access_keys", keys(), {"bucket": bucket}, counter)

    # THEN one GetCallerIdentity and one HeadBucket were sent, neither failed
    assert counter.counts == {"sts.GetCallerIdentity": 1, "s3.HeadBucket": 1}
    assert counter.total == 2 and counter.error_total == 0


def test_options_count_their_requests(make_bucket: Callable[..., str]) -> None:
    # GIVEN a counter and a bucket
    counter = CallCounter()
    bucket = make_bucket("imports/a.csv")

    # WHEN bucket and prefix options are read
    PROVIDER.options("access_keys", keys(), "s3_file_import", "bucket", {}, counter)
    PROVIDER.options("access_keys", keys(), "s3_file_import", "prefix", {"bucket": bucket}, counter)

    # THEN each request is counted by service and operation
    assert counter.counts == {"s3.ListBuckets": 1, "s3.ListObjectsV2": 1}


def test_a_failed_request_is_counted_too(aws: None) -> None:
    # GIVEN a counter
    counter = CallCounter()

    # WHEN a check fails on a missing bucket
    PROVIDER.check("access_keys", keys(), {"bucket": f"sy-test-missing-{uuid.uuid4().hex[:8]}"}, counter)

    # THEN the failed HeadBucket is counted (AWS bills it) and not retried (a 404 is final)
    assert counter.counts == {"sts.GetCallerIdentity": 1, "s3.HeadBucket": 1}
    # AND it is the one error (the authorization's activity shows errors apart)
    assert counter.errors == {"s3.HeadBucket": 1}


# --- credential hint -------------------------------------------------------------------


def test_credential_hint_masks_the_access_key_id() -> None:
    # WHEN the hint of access keys is made
    hint = PROVIDER.credential_hint("access_keys", keys())

    # THEN it shows only the ends of the key id, never the secret
    assert hint == "AKIA…MPLE"
    assert KEY_ID not in (hint or "")
    assert SECRET not in (hint or "")


def test_credential_hint_of_a_role_is_its_arn() -> None:
    # WHEN the hint of an assume-role authorization is made
    hint = PROVIDER.credential_hint("assume_role", role())

    # THEN it is the role ARN (not secret), never the external id
    assert hint == ROLE_ARN
    assert EXTERNAL_ID not in (hint or "")


# -- CSV cells a spreadsheet would run ----------------------------------------------------------


def _csv_rows(frozen: dict[str, Any], values: list[Any]) -> list[list[str]]:
    import csv
    import io

    from chalicelib.providers.s3_export import S3AudienceExport

    body, taken = S3AudienceExport(PROVIDER).encode(frozen, [("add", "prof_1", values)])
    assert taken == 1
    return list(csv.reader(io.StringIO(body.decode(), newline="")))


FORMULAS = ["=HYPERLINK(\"https://evil.example\",\"x\")", "+1+cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0",
            "@SUM(A1)", "\tindented", "\rreturn"]
NUMBERS = ["+1 415 555 0100", "-12.5", "+33 (0)1 23-45-67-89"]  # phone numbers and signed numbers


def test_csv_export_neutralises_cells_a_spreadsheet_would_read_as_formulas_by_default() -> None:
    from chalicelib.providers.s3_export import S3AudienceExport

    fields = [f"f{i}" for i in range(len(FORMULAS) + 3 + len(NUMBERS))]
    # GIVEN an export job configured without mentioning the option
    frozen = S3AudienceExport(PROVIDER).freeze(
        {"audience_id": "aud_1", "bucket": "bkt-exports", "fields": fields})
    assert frozen["escape_formulas"] is True
    # WHEN values starting with = + - @ tab or CR are written, next to plain ones and typed ones
    header, row = _csv_rows(frozen, [*FORMULAS, "plain", -12.5, ["=a", "b"], *NUMBERS])
    # THEN each such cell starts with a quote (a spreadsheet shows it as text), the rest unchanged,
    # phone numbers and signed numbers as text included (they call no function)
    assert header == ["_action", "_profile_id", *fields]
    assert row[2:2 + len(FORMULAS)] == ["'" + v for v in FORMULAS]
    assert row[2 + len(FORMULAS):] == ["plain", "-12.5", '["=a","b"]', *NUMBERS]


def test_csv_export_writes_values_as_stored_when_the_option_is_off() -> None:
    from chalicelib.providers.s3_export import S3AudienceExport

    export = S3AudienceExport(PROVIDER)
    fields = [f"f{i}" for i in range(len(FORMULAS))]
    frozen = export.freeze({"audience_id": "aud_1", "bucket": "bkt-exports", "fields": fields,
                            "escape_formulas": False})
    assert _csv_rows(frozen, FORMULAS)[1][2:] == FORMULAS
    # AND a run frozen before the option existed keeps writing the bytes it wrote (redelivery)
    old = {k: v for k, v in export.freeze({"audience_id": "aud_1", "bucket": "bkt-exports",
                                           "fields": fields}).items() if k != "escape_formulas"}
    assert _csv_rows(old, FORMULAS)[1][2:] == FORMULAS
