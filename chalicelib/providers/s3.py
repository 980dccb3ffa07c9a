"""Amazon S3: import profiles from CSV / JSON Lines files, export audiences as files.

Speaks the real AWS APIs through boto3: STS GetCallerIdentity / AssumeRole, S3
HeadBucket / ListBuckets / ListObjectsV2. Import-time cost: pydantic models only.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, StringConstraints
from pydantic.config import JsonDict

from chalicelib.domain.catalog import AuthMethodSpec, JobType, ProviderSpec, WorkflowSpec
from chalicelib.domain.models import CheckResult, HealthStatus
from chalicelib.providers.base import ImportStep, Option, ProviderError, mask
from chalicelib.providers.calls import AwsIdentity, CallCounter, aws_client

BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$"
REGION_PATTERN = r"^[a-z]{2}(-[a-z]+)+-\d$"
SECRET: JsonDict = {"x-secret": True}



def _s3_bucket_rules(name: str) -> str:
    # The rules a regex without lookarounds cannot express (S3 bucket naming rules).
    if ".." in name or re.fullmatch(r"\d+(\.\d+){3}", name):
        raise ValueError("not a valid S3 bucket name (no '..', not an IP address)")
    if name.startswith(("xn--", "sthree-")) or name.endswith(("-s3alias", "--ol-s3")):
        raise ValueError("not a valid S3 bucket name (reserved prefix or suffix)")
    return name


Bucket = Annotated[
    str,
    Field(pattern=BUCKET_PATTERN, description="S3 bucket name", examples=["acme-cdp-data"]),
    AfterValidator(_s3_bucket_rules),
]
Prefix = Annotated[str, Field(max_length=512, description="Key prefix (folder)")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class AccessKeys(_Strict):
    """Long-lived IAM access keys of a user in the account that owns the data."""

    access_key_id: str = Field(
        pattern=r"^(AKIA|ASIA)[A-Z0-9]{16}$", description="Access key ID (AKIA...)"
    )
    secret_access_key: SecretStr = Field(
        min_length=16, max_length=128, description="Secret access key", json_schema_extra=SECRET
    )
    region: str = Field("us-east-1", pattern=REGION_PATTERN, description="AWS region")
    bucket: Bucket | None = Field(
        None, description="Optional: a bucket the health check must be able to reach"
    )


class AssumeRole(_Strict):
    """A role in the customer's account that trusts Switchyard's account, with an external id."""

    role_arn: str = Field(
        pattern=r"^arn:aws[a-z\-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_\-/]+$", max_length=2048,
        description="ARN of the role to assume",
    )
    external_id: SecretStr = Field(
        min_length=2,
        max_length=1224,
        description="External ID required by the role's trust policy",
        json_schema_extra=SECRET,
    )
    region: str = Field("us-east-1", pattern=REGION_PATTERN, description="AWS region")
    bucket: Bucket | None = Field(
        None, description="Optional: a bucket the health check must be able to reach"
    )


class S3ImportConfig(_Strict):
    bucket: Bucket
    prefix: Prefix = Field("", description="Import every file under this prefix (or one key)")
    format: Literal["csv", "jsonl"] = Field("csv", description="File format")
    # Not stripped: a tab is a valid delimiter.
    csv_delimiter: Annotated[str, StringConstraints(strip_whitespace=False)] = Field(
        ",", min_length=1, max_length=1, description="CSV delimiter"
    )
    identifier_field: str = Field(
        "email", min_length=1, max_length=128, description="Column that identifies a profile"
    )
    field_mapping: dict[
        Annotated[str, Field(min_length=1, max_length=128)],
        Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")],
    ] = Field(
        default_factory=dict,
        max_length=200,
        description="Source column -> profile field; unmapped columns keep their names",
    )
    compression: Literal["none", "gzip", "auto"] = Field(
        "auto", description="gzip-compressed files; auto = by the .gz suffix of each key"
    )
    incremental: bool = Field(
        True, description="Import only files that are new or changed since the last finished run"
    )


class S3ExportConfig(_Strict):
    audience_id: str = Field(min_length=1, max_length=64, description="Audience to export")
    bucket: Bucket
    prefix: Prefix = Field("switchyard/exports/", description="Where files are written")
    format: Literal["csv", "jsonl"] = Field("csv", description="File format")
    fields: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]] = Field(
        default_factory=lambda: ["email"], min_length=1, max_length=200,
        description="Profile fields written for each member",
    )
    include_removals: bool = Field(True, description="Also write members who left the audience")
    # Export runs (chalicelib/providers/s3_export.py, docs/export.md).
    backfill: bool = Field(
        True, description="The first run writes every member; off: it only records who is a member"
    )
    compression: Literal["none", "gzip"] = Field("none", description="gzip every file (.gz)")
    max_part_mb: int = Field(
        16, ge=1, le=64, description="Split: a file holds at most this many MB (before compression)"
    )


METHODS = ("access_keys", "assume_role")

SPEC = ProviderSpec(
    id="amazon_s3",
    name="Amazon S3",
    description="Import profiles from CSV or JSON Lines files and export audiences as files.",
    tags=("aws", "files"),
    auth_methods=(
        AuthMethodSpec(
            id="access_keys",
            name="AWS access keys",
            description="An IAM user's access key pair.",
            credentials_model=AccessKeys,
        ),
        AuthMethodSpec(
            id="assume_role",
            name="AWS assume role",
            description="Switchyard assumes a role in your account, with an external id.",
            credentials_model=AssumeRole,
        ),
    ),
    workflows=(
        WorkflowSpec(
            id="s3_file_import",
            name="S3 file import (CSV / JSON Lines)",
            job_type=JobType.IMPORT,
            description="Reads files under a prefix and upserts a profile per record.",
            auth_methods=METHODS,
            config_model=S3ImportConfig,
            resource_fields=("bucket",),
            option_fields=("bucket", "prefix"),
        ),
        WorkflowSpec(
            id="s3_audience_export",
            name="S3 audience export",
            job_type=JobType.EXPORT,
            description="Writes an audience's members, then who entered and left, as files.",
            auth_methods=METHODS,
            config_model=S3ExportConfig,
            resource_fields=("bucket",),
            option_fields=("bucket", "prefix"),
        ),
    ),
)

# botocore error codes -> what a user should read, and whether waiting helps.
_AUTH_CODES = {
    "InvalidClientTokenId": "the access key id is not valid",
    "SignatureDoesNotMatch": "the secret access key does not match the access key id",
    "InvalidAccessKeyId": "the access key id is not valid",
    "ExpiredToken": "the credentials have expired",
    "ExpiredTokenException": "the credentials have expired",
    "UnrecognizedClientException": "the credentials were not recognised",
}
_TRANSIENT_CODES = {
    "Throttling",
    "ThrottlingException",
    "SlowDown",
    "RequestLimitExceeded",
    "ServiceUnavailable",
    "InternalError",
    "RequestTimeout",
}


def _classify(exc: Exception, what: str) -> ProviderError:
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _AUTH_CODES:
            return ProviderError(f"{_AUTH_CODES[code]} ({code})", auth=True)
        if code in ("NoSuchBucket", "404", "NotFound"):
            return ProviderError(f"{what} does not exist ({code or status})", field="bucket")
        if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled"):
            return ProviderError(f"missing permission: access to {what} was denied ({code})", auth=True)
        if code in _TRANSIENT_CODES or status >= 500 or status == 429:
            return ProviderError(f"AWS is unavailable right now ({code or status})", transient=True)
        return ProviderError(f"{what}: {code or status}")
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError)):
        return ProviderError("unreachable: AWS did not answer in time", transient=True)
    # Anything else from botocore (no credentials of our own, bad local config) is ours.
    return ProviderError(f"Switchyard could not call AWS ({type(exc).__name__})", transient=True)


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class S3Provider:
    spec = SPEC

    def _session(self, method: str, creds: Any, counter: CallCounter | None) -> AwsIdentity:
        from botocore.exceptions import BotoCoreError, ClientError

        if method == "access_keys":
            return AwsIdentity(
                access_key_id=creds.access_key_id,
                secret_access_key=creds.secret_access_key.get_secret_value(),
                region=creds.region,
            )
        # assume_role: Switchyard's own identity asks STS for short-lived credentials.
        sts = aws_client(AwsIdentity(region=creds.region), "sts", counter)
        try:
            resp = sts.assume_role(
                RoleArn=creds.role_arn,
                RoleSessionName="switchyard",
                ExternalId=creds.external_id.get_secret_value(),
                DurationSeconds=900,
            )
        except (ClientError, BotoCoreError) as exc:
            err = _classify(exc, f"role {creds.role_arn}")
            if _code(exc) in _AUTH_CODES:
                # STS refused *Switchyard's* identity: our outage, not the customer's fault.
                raise ProviderError(
                    f"Switchyard could not authenticate to AWS STS ({_code(exc)})", transient=True
                ) from None
            raise err from None
        c = resp["Credentials"]
        return AwsIdentity(
            access_key_id=c["AccessKeyId"],
            secret_access_key=c["SecretAccessKey"],
            session_token=c["SessionToken"],
            region=creds.region,
        )

    def check(
        self,
        method: str,
        credentials: Any,
        resources: dict[str, str],
        counter: CallCounter | None = None,
    ) -> CheckResult:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            session = self._session(method, credentials, counter)
            identity = aws_client(session, "sts", counter).get_caller_identity()
        except ProviderError as exc:
            if exc.transient:
                raise
            return CheckResult(HealthStatus.UNHEALTHY, exc.reason)
        except (ClientError, BotoCoreError) as exc:
            err = _classify(exc, "AWS STS")
            if err.transient:
                raise err from None
            return CheckResult(HealthStatus.UNHEALTHY, err.reason)
        account = str(identity["Account"])
        bucket = resources.get("bucket") or getattr(credentials, "bucket", None)
        checked: dict[str, str] = {}
        if bucket:
            try:
                aws_client(session, "s3", counter).head_bucket(Bucket=bucket)
            except (ClientError, BotoCoreError) as exc:
                err = _classify(exc, f"bucket {bucket!r}")
                if err.transient:
                    raise err from None
                return CheckResult(HealthStatus.UNHEALTHY, err.reason, provider_account=account)
            checked["bucket"] = bucket
        return CheckResult(
            HealthStatus.HEALTHY,
            f"reaches AWS account {account}" + (f" and bucket {bucket!r}" if bucket else ""),
            provider_account=account,
            resources=checked,
        )

    def options(
        self,
        method: str,
        credentials: Any,
        workflow: str,
        field: str,
        params: dict[str, str],
        counter: CallCounter | None = None,
    ) -> list[Option]:
        from botocore.exceptions import BotoCoreError, ClientError

        session = self._session(method, credentials, counter)
        s3 = aws_client(session, "s3", counter)
        try:
            if field == "bucket":
                buckets = s3.list_buckets().get("Buckets", [])
                return [Option(value=b["Name"], label=b["Name"]) for b in buckets]
            if field == "prefix":
                bucket = params.get("bucket")
                if not bucket:
                    raise ProviderError("choose a bucket first", field="bucket")
                resp = s3.list_objects_v2(
                    Bucket=bucket, Prefix=params.get("prefix", ""), Delimiter="/", MaxKeys=200
                )
                out = [
                    Option(value=p["Prefix"], label=p["Prefix"], kind="prefix")
                    for p in resp.get("CommonPrefixes", [])
                ]
                out += [
                    Option(value=o["Key"], label=f"{o['Key']} ({o['Size']} bytes)", kind="object")
                    for o in resp.get("Contents", [])
                ]
                return out
        except (ClientError, BotoCoreError) as exc:
            what = f"bucket {params.get('bucket')!r}" if field == "prefix" else "the bucket list"
            raise _classify(exc, what) from None
        raise ProviderError(f"field {field!r} has no live options", field="field")

    def import_step(self, workflow_id: str) -> ImportStep:
        """The step reader of an import workflow (the job engine calls its read())."""
        if workflow_id != "s3_file_import":
            raise ProviderError(f"workflow {workflow_id!r} has no import step", field="workflow")
        from chalicelib.providers.s3_files import S3FileReader

        return S3FileReader(self)

    def export_step(self, workflow_id: str) -> Any:
        """The part writer of an export workflow (chalicelib/services/export.py calls it)."""
        if workflow_id != "s3_audience_export":
            raise ProviderError(f"workflow {workflow_id!r} has no export step", field="workflow")
        from chalicelib.providers.s3_export import S3AudienceExport

        return S3AudienceExport(self)

    def credential_hint(self, method: str, credentials: Any) -> str | None:
        if method == "access_keys":
            return mask(credentials.access_key_id)
        return str(credentials.role_arn)


PROVIDER = S3Provider()
