"""Amazon Kinesis Data Streams: export audiences as enter/exit events, import JSON records.

Speaks the real AWS APIs through boto3: STS GetCallerIdentity / AssumeRole, Kinesis
DescribeStreamSummary / ListStreams (check, options), PutRecords (export,
providers/kinesis_export.py), ListShards / GetShardIterator / GetRecords (import,
providers/kinesis_import.py). Credentials are the shared AWS ones (providers/aws_auth.py).
Import-time cost: pydantic models only. docs/providers/kinesis.md says how it behaves.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from chalicelib.domain.catalog import JobType, ProviderSpec, Role, StepRef, WorkflowSpec
from chalicelib.domain.models import CheckResult, HealthStatus
from chalicelib.providers import aws_auth
from chalicelib.providers.aws_auth import METHODS, AccessKeysBase, AssumeRoleBase
from chalicelib.providers.base import Option, ProviderError
from chalicelib.providers.calls import CallCounter
from chalicelib.providers.models import StrictModel

FIELD_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
StreamName = Annotated[
    str,
    Field(min_length=1, max_length=128, pattern=r"^[a-zA-Z0-9_.\-]+$",
          description="Kinesis data stream name", examples=["cdp-audience-events"]),
]
FieldName = Annotated[str, Field(pattern=FIELD_PATTERN)]
# Kinesis' own codes for a stream that is not there (the stream name is the field to fix).
MISSING = ("ResourceNotFoundException",)
STREAM_PAGE_SIZE = 100  # ListStreams answers at most 100 names a page
STREAM_LIST_PAGES = 10  # options: at most 1,000 streams


class AccessKeys(AccessKeysBase):
    """IAM access keys (aws_auth), and a stream the health check may verify."""

    stream_name: StreamName | None = Field(
        None, description="Optional: a stream the health check must be able to reach"
    )


class AssumeRole(AssumeRoleBase):
    """A role to assume (aws_auth), and a stream the health check may verify."""

    stream_name: StreamName | None = Field(
        None, description="Optional: a stream the health check must be able to reach"
    )


class KinesisExportConfig(StrictModel):
    audience_id: str = Field(min_length=1, max_length=64, description="Audience to export")
    stream_name: StreamName
    fields: list[FieldName] = Field(
        default_factory=lambda: ["email"], min_length=1, max_length=200,
        description="Profile fields carried by each event",
    )
    partition_key: str = Field(
        "profile_id", max_length=64,
        description="profile_id (default), or one of `fields`: the events of one value go to one shard, in order",
    )
    include_removals: bool = Field(True, description="Also send an exit event for members who left")
    backfill: bool = Field(
        True, description="The first run sends every member; off: it only records who is a member"
    )

    @field_validator("partition_key")
    @classmethod
    def _one_of_fields(cls, value: str, info: ValidationInfo) -> str:
        fields = info.data.get("fields") or []
        if value != "profile_id" and value not in fields:
            raise ValueError("use profile_id or one of the exported fields")
        return value


class KinesisImportConfig(StrictModel):
    stream_name: StreamName
    starting_position: Literal["TRIM_HORIZON", "LATEST"] = Field(
        "TRIM_HORIZON",
        description="First run: every record the stream still holds (TRIM_HORIZON), or only those "
                    "that arrive after it starts (LATEST)",
    )
    identifier_field: str = Field(
        "email", min_length=1, max_length=128, description="Key of a record that identifies a profile"
    )
    field_mapping: dict[
        Annotated[str, Field(min_length=1, max_length=128)], FieldName
    ] = Field(
        default_factory=dict, max_length=200,
        description="Record key -> profile field; unmapped keys keep their names",
    )


SPEC = ProviderSpec(
    id="amazon_kinesis",
    name="Amazon Kinesis",
    description="Send audience enter/exit events to a data stream, and import profiles from JSON records.",
    tags=("aws", "streaming", "events"),
    auth_methods=aws_auth.auth_methods(AccessKeys, AssumeRole),
    workflows=(
        WorkflowSpec(
            id="kinesis_audience_export",
            name="Kinesis audience events",
            job_type=JobType.EXPORT,
            step=StepRef(Role.DESTINATION, "chalicelib.providers.kinesis_export:destination"),
            description="Puts one event per member who entered (first run: every member) or left the audience.",
            auth_methods=METHODS,
            config_model=KinesisExportConfig,
            resource_fields=("stream_name",),
            option_fields=("stream_name",),
        ),
        WorkflowSpec(
            id="kinesis_import",
            name="Kinesis JSON import",
            job_type=JobType.IMPORT,
            step=StepRef(Role.SOURCE, "chalicelib.providers.kinesis_import:source"),
            description="Reads JSON records from every shard and upserts a profile per record; "
                        "later runs read what arrived since.",
            auth_methods=METHODS,
            config_model=KinesisImportConfig,
            resource_fields=("stream_name",),
            option_fields=("stream_name",),
        ),
    ),
)


def stream_error(sess: aws_auth.AwsSession, exc: Exception, name: str) -> ProviderError:
    return sess.error(exc, f"stream {name!r}", missing=MISSING, field="stream_name", words=True)


class KinesisProvider:
    spec = SPEC

    def check(
        self,
        method: str,
        credentials: Any,
        resources: dict[str, str],
        counter: CallCounter | None = None,
    ) -> CheckResult:
        from botocore.exceptions import BotoCoreError, ClientError

        verified = aws_auth.verify(method, credentials, counter)
        if isinstance(verified, CheckResult):
            return verified
        sess, account = verified
        name = resources.get("stream_name") or getattr(credentials, "stream_name", None)
        if not name:
            return CheckResult(HealthStatus.HEALTHY, f"reaches AWS account {account}", provider_account=account)
        try:
            summary = sess.client("kinesis").describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        except (ClientError, BotoCoreError) as exc:
            err = stream_error(sess, exc, name)
            if err.transient:
                raise err from None
            return CheckResult(HealthStatus.UNHEALTHY, err.reason, provider_account=account, resource="stream_name")
        status = str(summary.get("StreamStatus", ""))
        if status == "DELETING":
            return CheckResult(HealthStatus.UNHEALTHY, f"stream {name!r} is being deleted (StreamStatus DELETING)",
                               provider_account=account)
        shards = summary.get("OpenShardCount")
        return CheckResult(
            HealthStatus.HEALTHY,
            f"reaches AWS account {account} and stream {name!r} ({status}"
            + (f", {shards} open shards)" if shards is not None else ")"),
            provider_account=account,
            resources={"stream_name": name},
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

        if field != "stream_name":
            raise ProviderError(f"field {field!r} has no live options", field="field")
        sess = aws_auth.session(method, credentials, counter)
        kinesis = sess.client("kinesis")
        names: list[str] = []
        try:
            kwargs: dict[str, Any] = {"Limit": STREAM_PAGE_SIZE}
            for _ in range(STREAM_LIST_PAGES):
                page = kinesis.list_streams(**kwargs)
                names += page.get("StreamNames", [])
                if not page.get("HasMoreStreams") or not names:
                    break
                kwargs["ExclusiveStartStreamName"] = names[-1]
        except (ClientError, BotoCoreError) as exc:
            raise sess.error(exc, "the stream list", words=True) from None
        return [Option(value=n, label=n) for n in names]

    def credential_hint(self, method: str, credentials: Any) -> str | None:
        return aws_auth.hint(method, credentials)


PROVIDER = KinesisProvider()
