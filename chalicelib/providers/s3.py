"""Amazon S3: import profiles from CSV / JSON Lines files, export audiences as files.

Speaks the real AWS APIs through boto3: STS GetCallerIdentity / AssumeRole, S3
HeadBucket / ListBuckets / ListObjectsV2. Credentials, sessions and the check are the
shared AWS ones (providers/aws_connector.py, providers/aws_auth.py). Import-time cost:
pydantic models only.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints

from chalicelib.domain.catalog import JobType, ProviderSpec, Role, StepRef, WorkflowSpec
from chalicelib.providers import aws_auth
from chalicelib.providers.aws_auth import METHODS, AwsSession
from chalicelib.providers.aws_connector import AwsConnector, credentials_models
from chalicelib.providers.base import Option, ProviderError
from chalicelib.providers.models import StrictModel

BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$"


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


AccessKeys, AssumeRole = credentials_models(__name__, "bucket", Bucket, "a bucket")


class S3ImportConfig(StrictModel):
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


class S3ExportConfig(StrictModel):
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
    escape_formulas: bool = Field(
        True, description="CSV: start text cells that begin with = + - @ tab or CR with a ' so a "
                          "spreadsheet shows them as text instead of running them"
    )
    max_part_mb: int = Field(
        16, ge=1, le=64, description="Split: a file holds at most this many MB (before compression)"
    )



SPEC = ProviderSpec(
    id="amazon_s3",
    name="Amazon S3",
    description="Import profiles from CSV or JSON Lines files and export audiences as files.",
    tags=("aws", "files"),
    auth_methods=aws_auth.auth_methods(AccessKeys, AssumeRole),
    workflows=(
        WorkflowSpec(
            id="s3_file_import",
            name="S3 file import (CSV / JSON Lines)",
            job_type=JobType.IMPORT,
            step=StepRef(Role.SOURCE, "chalicelib.providers.s3_files:S3FileReader"),
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
            step=StepRef(Role.DESTINATION, "chalicelib.providers.s3_export:S3AudienceExport"),
            description="Writes an audience's members, then who entered and left, as files.",
            auth_methods=METHODS,
            config_model=S3ExportConfig,
            resource_fields=("bucket",),
            option_fields=("bucket", "prefix"),
        ),
    ),
)

_MISSING_BUCKET = ("NoSuchBucket", "404", "NotFound")


def s3_error(exc: Exception, what: str) -> ProviderError:
    """A botocore error as users read it; a missing bucket is on the `bucket` field."""
    return aws_auth.classify(exc, what, missing=_MISSING_BUCKET, field="bucket")


class S3Provider(AwsConnector):
    spec = SPEC
    resource = "bucket"

    def reach(self, sess: AwsSession, name: str) -> str:
        sess.client("s3").head_bucket(Bucket=name)
        return f"bucket {name!r}"

    def resource_error(self, sess: AwsSession, exc: Exception, name: str) -> ProviderError:
        return s3_error(exc, f"bucket {name!r}")

    def list_options(self, sess: AwsSession, field: str, params: dict[str, str]) -> list[Option]:
        s3 = sess.client("s3")
        if field == "bucket":
            buckets = s3.list_buckets().get("Buckets", [])
            return [Option(value=b["Name"], label=b["Name"]) for b in buckets]
        bucket = params.get("bucket")
        if not bucket:
            raise ProviderError("choose a bucket first", field="bucket")
        resp = s3.list_objects_v2(Bucket=bucket, Prefix=params.get("prefix", ""), Delimiter="/", MaxKeys=200)
        out = [Option(value=p["Prefix"], label=p["Prefix"], kind="prefix") for p in resp.get("CommonPrefixes", [])]
        out += [
            Option(value=o["Key"], label=f"{o['Key']} ({o['Size']} bytes)", kind="object")
            for o in resp.get("Contents", [])
        ]
        return out

    def options_error(self, sess: AwsSession, exc: Exception, field: str, params: dict[str, str]) -> ProviderError:
        return s3_error(exc, f"bucket {params.get('bucket')!r}" if field == "prefix" else "the bucket list")


PROVIDER = S3Provider()
