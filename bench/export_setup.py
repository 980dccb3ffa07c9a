"""What the export benches (export_requests, export_batch_requests, export_cost) share.

* `fresh_stack`: a counting moto of its own (`awsnet.counting_moto`) with the stage deployed;
* `Wire`: requests by layer and 'service.Operation', from botocore `before-send` hooks;
* `app_clients`: the app's and the providers' clients made again, the app's hook registered
  before any client exists, the app's DynamoDB client with a longer read timeout;
* `BenchAccount`: an account made by the bootstrap, the API behind chalice's test client,
  the engine with its production settings, and the loop that plays Lambda's event source
  for the runs queue (`drain`);
* `people` and `seed`: audience members written through ProfileRepo.upsert_batch.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.awsnet import Emulation, counting_moto  # noqa: E402

S3_KEYS = {"access_key_id": "AKIABENCHABCDEFGHIJK", "secret_access_key": "benchSECRETbench1234567890"}
AUDIENCE = {"all": [{"field": "plan", "op": "in", "value": ["pro", "team"]}]}
# Longer than any step: a step still running must not be delivered again.
VISIBILITY_S = 43_200


@contextmanager
def fresh_stack(stage: str) -> Iterator[Emulation]:
    """moto in a child process (no latency), the stage's stack deployed on it, and this
    process's app settings pointed at it."""
    with counting_moto() as moto:
        from devserver.infra import deploy_stack, use_local_aws

        use_local_aws(moto.endpoint, stage)
        deploy_stack(stage)
        yield moto


@dataclass
class Wire:
    """Requests by layer and 'service.Operation', from botocore before-send hooks; counted
    only while `on`."""

    layers: tuple[str, ...]
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    on: bool = False

    def __post_init__(self) -> None:
        self.counts = {layer: Counter() for layer in self.layers}

    def hook(self, layer: str) -> Callable[..., None]:
        def before_send(event_name: str = "", **_: Any) -> None:
            if self.on:
                _, service, op = [*event_name.split(".", 2), "?", "?"][:3]
                self.counts[layer][f"{service}.{op}"] += 1

        return before_send

    def take(self) -> dict[str, Counter[str]]:
        out = self.counts
        self.counts = {k: Counter() for k in out}
        return out


def app_clients(*, app_hook: Callable[..., None] | None = None, provider_hook: Callable[..., None] | None = None,
                read_timeout: int | None = None) -> None:
    """The app's and the providers' clients made again on this stack. Hooks go on the
    sessions before any client exists (each client copies its session's hooks). moto finds a
    Query's items by walking the whole table or partition, which at the full sizes outlasts
    the app client's 10 s read timeout; AWS does not: `read_timeout` gives the app's DynamoDB
    client a longer wait, nothing else differs."""
    from chalicelib.providers import calls
    from chalicelib.store import aws

    aws.reset()
    calls.reset()
    if app_hook is not None:
        aws.session().events.register("before-send", app_hook)
    if read_timeout is not None:
        aws.use_client("dynamodb", aws.session().client(
            "dynamodb", config=aws.client_config("dynamodb", read_timeout=read_timeout)))
    if provider_hook is not None:
        calls.shared_session().events.register("before-send", provider_hook)


class BenchAccount:
    """One account of the stage, its admin's API client, and the engine."""

    def __init__(self, stage: str, sqs: Any) -> None:
        from chalice.test import Client

        from app import app
        from chalicelib.bootstrap import Deps, use
        from chalicelib.runs.engine import Engine, EngineOptions
        from chalicelib.services.accounts import create_account

        self.d = Deps()
        use(self.d)
        self.account, _, issued = create_account(self.d, "Bench", "admin@bench.example")
        self.id = self.account.id
        self.client = Client(app, stage_name="local", project_dir=str(ROOT))
        self.headers = {"Authorization": f"Bearer {issued.plaintext}", "Content-Type": "application/json"}
        self.engine = Engine(self.d, EngineOptions())
        self.sqs = sqs
        self.runs_url = sqs.get_queue_url(QueueName=f"switchyard-{stage}-runs")["QueueUrl"]

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = self.client.http.post("/api/v1" + path, headers=self.headers, body=json.dumps(body).encode())
        assert r.status_code == 201, r.body
        return dict(json.loads(r.body)["data"])

    def s3_export_job(self, bucket: str, fields: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The bucket, an S3 authorization, the audience "plan is pro or team" and an hourly
        gzip export job of it; returns (audience, job)."""
        import boto3

        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=bucket)
        auth = self.post("/authorizations", {"provider": "amazon_s3", "method": "access_keys", "label": "bench",
                                             "credentials": S3_KEYS})
        audience = self.post("/audiences", {"name": "Pro and team", "filter": AUDIENCE})
        job = self.post("/jobs", {"provider": "amazon_s3", "job_type": "export", "workflow": "s3_audience_export",
                                  "authorization_id": auth["id"], "label": "bench export",
                                  "schedule": {"type": "interval", "every_minutes": 60},
                                  "config": {"audience_id": audience["id"], "bucket": bucket, "fields": fields,
                                             "compression": "gzip"}})
        return audience, job

    def drain(self) -> int:
        """Deliver the runs queue's messages to the engine one at a time, as Lambda's event
        source would, until it is empty; returns the steps. The bench's own SQS requests:
        a receive and a delete per step, and the last, empty receive (2 x steps + 1)."""
        from chalicelib.runs.engine import Delivery

        steps = 0
        while True:
            msgs = self.sqs.receive_message(QueueUrl=self.runs_url, MaxNumberOfMessages=1,
                                            VisibilityTimeout=VISIBILITY_S, WaitTimeSeconds=0).get("Messages", [])
            if not msgs:
                return steps
            m = msgs[0]
            self.engine.handle(Delivery(body=json.loads(m["Body"]), message_id=m["MessageId"],
                                        remaining_ms=lambda: 900_000))
            self.sqs.delete_message(QueueUrl=self.runs_url, ReceiptHandle=m["ReceiptHandle"])
            steps += 1

    def close(self) -> None:
        from chalicelib.bootstrap import use

        use(None)


def people(start: int, n: int, member: bool = True) -> list[Any]:
    """Profiles member.<start>..member.<start+n-1>@example.com; members of the audience
    (plan pro or team) unless `member` is False (plan free)."""
    from chalicelib.domain.profiles import ProfileRecord

    countries = ["FR", "DE", "US", "GB", "JP"]
    return [ProfileRecord(identifiers={"email": f"member.{i}@example.com"},
                          fields={"first_name": f"First{i}", "last_name": f"Last{i % 977}",
                                  "country": countries[i % 5],
                                  "plan": ("pro" if i % 3 else "team") if member else "free"},
                          ref=f"bench#{i}")
            for i in range(start, start + n)]


def seed(repo: Any, account_id: str, records: list[Any], tag: str) -> None:
    """Profiles written the way an import writes them, 1,000 a batch."""
    for n, start in enumerate(range(0, len(records), 1000)):
        repo.upsert_batch(account_id, records[start:start + 1000], step_tag=f"{tag}#{n}")


def report(checks: list[tuple[str, bool, str]], width: int) -> int:
    """The checks, one a line, then the RESULT line; the exit status."""
    print("checks:")
    for label, ok, got in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {label:<{width}} {got}")
    failed = [label for label, ok, _ in checks if not ok]
    print()
    print(f"RESULT {'PASS' if not failed else 'FAIL'} {len(checks) - len(failed)}/{len(checks)} budgets hold"
          + ("" if not failed else ": " + "; ".join(failed)))
    return 0 if not failed else 1
