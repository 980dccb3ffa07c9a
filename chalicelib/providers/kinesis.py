"""Amazon Kinesis Data Streams: export audiences as enter/exit events, import JSON records.

Speaks the real AWS APIs through boto3: STS GetCallerIdentity / AssumeRole, Kinesis
DescribeStreamSummary / ListStreams (check, options), PutRecords (export,
providers/kinesis_export.py), ListShards / GetShardIterator / GetRecords (import,
providers/kinesis_import.py). Credentials, sessions and the check are the shared AWS ones
(providers/aws_connector.py, providers/aws_auth.py).
Import-time cost: pydantic models only. docs/providers/kinesis.md says how it behaves.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from chalicelib.domain.catalog import JobType, ProviderSpec, Role, StepRef, WorkflowSpec
from chalicelib.providers.aws_auth import METHODS, AwsSession, auth_methods
from chalicelib.providers.aws_connector import AwsConnector, credentials_models
from chalicelib.providers.base import Option, ProviderError
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


AccessKeys, AssumeRole = credentials_models(__name__, "stream_name", StreamName, "a stream")


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
    auth_methods=auth_methods(AccessKeys, AssumeRole),
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


def stream_error(sess: AwsSession, exc: Exception, name: str) -> ProviderError:
    return sess.error(exc, f"stream {name!r}", missing=MISSING, field="stream_name", words=True)


class KinesisProvider(AwsConnector):
    spec = SPEC
    resource = "stream_name"

    def reach(self, sess: AwsSession, name: str) -> str:
        summary = sess.client("kinesis").describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        status = str(summary.get("StreamStatus", ""))
        if status == "DELETING":
            raise ProviderError(f"stream {name!r} is being deleted (StreamStatus DELETING)")
        shards = summary.get("OpenShardCount")
        return f"stream {name!r} ({status}" + (f", {shards} open shards)" if shards is not None else ")")

    def resource_error(self, sess: AwsSession, exc: Exception, name: str) -> ProviderError:
        return stream_error(sess, exc, name)

    def list_options(self, sess: AwsSession, field: str, params: dict[str, str]) -> list[Option]:
        kinesis = sess.client("kinesis")
        names: list[str] = []
        kwargs: dict[str, Any] = {"Limit": STREAM_PAGE_SIZE}
        for _ in range(STREAM_LIST_PAGES):
            page = kinesis.list_streams(**kwargs)
            names += page.get("StreamNames", [])
            if not page.get("HasMoreStreams") or not names:
                break
            kwargs["ExclusiveStartStreamName"] = names[-1]
        return [Option(value=n, label=n) for n in names]

    def options_error(self, sess: AwsSession, exc: Exception, field: str, params: dict[str, str]) -> ProviderError:
        return sess.error(exc, "the stream list", words=True)


PROVIDER = KinesisProvider()
