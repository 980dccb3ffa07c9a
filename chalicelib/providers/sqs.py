"""Amazon SQS: export audiences as enter/exit events, one message each.

Speaks the real AWS APIs through boto3: STS GetCallerIdentity / AssumeRole, SQS
GetQueueAttributes / ListQueues (check, options), SendMessageBatch (export). Credentials,
sessions and the check are the shared AWS ones (providers/aws_connector.py,
providers/aws_auth.py). Import-time cost: pydantic models only.

Each change of an export run's plan becomes one event (providers/events.py) and one
message, its body the event's JSON:

* batches of at most 10 messages and 256 KiB of bodies; a message over 256 KiB is not
  sent, it is reported (`skipped`, counted omitted `too_large`). AWS has accepted 1 MiB
  since 2025; 256 KiB is what every queue and every consumer still accepts
  (docs/decisions.md);
* FIFO queues (URL ending in `.fifo`): MessageGroupId = the profile id or the configured
  constant; MessageDeduplicationId = the event id, so a step redelivered within SQS's
  5-minute deduplication interval does not enqueue its messages twice;
* entries SendMessageBatch lists under `Failed` are sent again (only those) with backoff
  and jitter; a failure AWS marks `SenderFault` is a configuration error (no retry helps).

docs/providers/sqs.md says how it behaves.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Annotated, Any

from pydantic import Field

from chalicelib.domain.catalog import JobType, ProviderSpec, Role, StepRef, WorkflowSpec
from chalicelib.providers import aws_auth
from chalicelib.providers.aws_auth import METHODS, AwsSession
from chalicelib.providers.aws_connector import AwsConnector, credentials_models
from chalicelib.providers.base import Option, ProviderError
from chalicelib.providers.event_batches import EventPart, Refused, Retry, event_bytes, pack, send_all
from chalicelib.providers.events import build_events
from chalicelib.providers.models import StrictModel
from chalicelib.providers.roles import StepContext

KIB = 1024
MAX_ENTRIES = 10  # SendMessageBatch: messages per request
MAX_BATCH_BYTES = 256 * KIB  # bodies per request (and so per message)
QUEUE_URL_PATTERN = r"^https?://[A-Za-z0-9.\-:\[\]]+/\d{12}/[A-Za-z0-9_\-]{1,80}(\.fifo)?$"
QueueUrl = Annotated[
    str,
    Field(max_length=300, pattern=QUEUE_URL_PATTERN, description="SQS queue URL",
          examples=["https://sqs.eu-west-1.amazonaws.com/210987654321/cdp-audience-events"]),
]
FieldName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
# Both spellings: the JSON protocol's code, and the query-compatible one botocore reports.
MISSING = ("QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue")
QUEUE_LIST_PAGES = 5  # options: at most 5,000 queues
# Characters SQS accepts in a body (#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000+).
_REFUSED_CHARS = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_REGION_IN_HOST = re.compile(r"^(?:sqs\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?|([a-z0-9-]+)\.queue\.amazonaws\.com)$")


AccessKeys, AssumeRole = credentials_models(__name__, "queue_url", QueueUrl, "a queue")


class SqsExportConfig(StrictModel):
    audience_id: str = Field(min_length=1, max_length=64, description="Audience to export")
    queue_url: QueueUrl
    fields: list[FieldName] = Field(
        default_factory=lambda: ["email"], min_length=1, max_length=200,
        description="Profile fields carried by each event",
    )
    message_group: str = Field(
        "profile_id", min_length=1, max_length=128, pattern=r"^[!-~]+$",
        description="FIFO queues: profile_id (one group per profile, default) or a constant group id",
    )
    include_removals: bool = Field(True, description="Also send an exit event for members who left")
    backfill: bool = Field(
        True, description="The first run sends every member; off: it only records who is a member"
    )


SPEC = ProviderSpec(
    id="amazon_sqs",
    name="Amazon SQS",
    description="Send audience enter/exit events to a queue (standard or FIFO).",
    tags=("aws", "queues", "events"),
    auth_methods=aws_auth.auth_methods(AccessKeys, AssumeRole),
    workflows=(
        WorkflowSpec(
            id="sqs_audience_export",
            name="SQS audience events",
            job_type=JobType.EXPORT,
            step=StepRef(Role.DESTINATION, "chalicelib.providers.sqs:destination"),
            description="Sends one message per member who entered (first run: every member) or left the audience.",
            auth_methods=METHODS,
            config_model=SqsExportConfig,
            resource_fields=("queue_url",),
            option_fields=("queue_url",),
        ),
    ),
)


def queue_name(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def is_fifo(url: str) -> bool:
    return url.endswith(".fifo")


def queue_region(url: str, default: str) -> str:
    """The region in an AWS queue URL (a client must call the queue's region); other hosts
    (a local endpoint) use the credentials' region."""
    host = url.split("//", 1)[-1].split("/", 1)[0].lower()
    found = _REGION_IN_HOST.match(host)
    if found:
        return found.group(1) or found.group(2)
    if host == "queue.amazonaws.com":
        return "us-east-1"
    return default


def _client(sess: AwsSession, url: str) -> Any:
    region = queue_region(url, sess.identity.region or "us-east-1")
    if region != sess.identity.region:
        sess = replace(sess, identity=replace(sess.identity, region=region))
    return sess.client("sqs")


def queue_error(sess: AwsSession, exc: Exception, url: str) -> ProviderError:
    return sess.error(exc, f"queue {queue_name(url)!r}", missing=MISSING, field="queue_url", words=True)


def body(event: dict[str, Any]) -> str:
    """The message body: the event's JSON, escaped to ASCII when it holds a character SQS
    refuses (U+FFFE, U+FFFF...); the same event always gives the same body."""
    text = event_bytes(event).decode()
    if _REFUSED_CHARS.search(text):
        text = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text


class SqsProvider(AwsConnector):
    spec = SPEC
    resource = "queue_url"

    def reach(self, sess: AwsSession, name: str) -> str:
        attrs = _client(sess, name).get_queue_attributes(QueueUrl=name, AttributeNames=["QueueArn"])["Attributes"]
        return f"queue {attrs.get('QueueArn', queue_name(name))}"

    def resource_error(self, sess: AwsSession, exc: Exception, name: str) -> ProviderError:
        return queue_error(sess, exc, name)

    def list_options(self, sess: AwsSession, field: str, params: dict[str, str]) -> list[Option]:
        sqs = sess.client("sqs")
        urls: list[str] = []
        kwargs: dict[str, Any] = {"MaxResults": 1000}
        if params.get("prefix"):
            kwargs["QueueNamePrefix"] = params["prefix"]
        for _ in range(QUEUE_LIST_PAGES):
            page = sqs.list_queues(**kwargs)
            urls += page.get("QueueUrls", [])
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
        return [Option(value=u, label=queue_name(u), kind="fifo" if is_fifo(u) else "standard") for u in urls]

    def options_error(self, sess: AwsSession, exc: Exception, field: str, params: dict[str, str]) -> ProviderError:
        return sess.error(exc, "the queue list", words=True)


class SqsAudienceExport:
    """What the export service needs from SQS: freeze the settings, write parts."""

    def __init__(self, retry: Retry | None = None) -> None:
        self.retry = retry or Retry()

    def freeze(self, config: dict[str, Any]) -> dict[str, Any]:
        """The settings a run keeps from its step 0 (editing the job changes the next run)."""
        try:
            cfg = SqsExportConfig.model_validate(config)
        except ValueError as exc:
            raise ProviderError(f"the export configuration is not valid: {exc}") from None
        return {
            "audience_id": cfg.audience_id,
            "fields": list(cfg.fields),
            "queue_url": cfg.queue_url,
            "message_group": cfg.message_group,
        }

    def write_part(self, ctx: StepContext, frozen: dict[str, Any], part: int,
                   rows: Sequence[tuple[str, str, list[Any]]]) -> EventPart:
        """Send one message per row; returning means SQS accepted every one not skipped."""
        from botocore.exceptions import BotoCoreError, ClientError

        url = str(frozen["queue_url"])
        fifo = is_fifo(url)
        group = str(frozen["message_group"])
        entries: dict[int, dict[str, Any]] = {}
        sizes: list[tuple[int, int]] = []
        skipped: list[int] = []
        for i, event in enumerate(build_events(ctx, frozen, part, rows)):
            text = body(event)
            size = len(text.encode())
            if size > MAX_BATCH_BYTES:
                skipped.append(i)
                continue
            # Ids are unique in a request; the position in the part makes them so.
            entry: dict[str, Any] = {"Id": f"e{i}", "MessageBody": text}
            if fifo:
                entry["MessageGroupId"] = event["profile_id"] if group == "profile_id" else group
                entry["MessageDeduplicationId"] = event["event_id"]
            entries[i] = entry
            sizes.append((i, size))
        sess = aws_auth.session(ctx.method, ctx.credentials, ctx.counter)
        sqs = _client(sess, url)
        name = queue_name(url)

        def send(positions: list[int]) -> Refused:
            try:
                resp = sqs.send_message_batch(QueueUrl=url, Entries=[entries[p] for p in positions])
            except (ClientError, BotoCoreError) as exc:
                raise queue_error(sess, exc, url) from None
            failed = resp.get("Failed", [])
            ours = [f for f in failed if f.get("SenderFault")]
            if ours:
                first = ours[0]
                said = aws_auth.scrub(str(first.get("Message", "")))
                raise ProviderError(f"queue {name!r} refused {len(ours)} messages as invalid "
                                    f"({first.get('Code', '')}{': ' + said if said else ''})", field="queue_url")
            return [(int(str(f["Id"])[1:]), str(f.get("Code", ""))) for f in failed]

        batches = pack(sizes, MAX_ENTRIES, MAX_BATCH_BYTES)
        requests = send_all(batches, send, self.retry, deadline=ctx.deadline, what=f"queue {name!r}")
        return EventPart(key=f"queue {name!r} part {part}", rows=len(rows),
                         bytes=sum(size for _, size in sizes), skipped=tuple(skipped), requests=requests)

    def write_manifest(self, ctx: StepContext, frozen: dict[str, Any], summary: dict[str, Any]) -> str:
        """Nothing to send: every message stands alone (no end-of-run marker in the queue)."""
        return ""


def destination(provider: object) -> SqsAudienceExport:
    """The step of sqs_audience_export (declared in SPEC)."""
    return SqsAudienceExport()


PROVIDER = SqsProvider()
