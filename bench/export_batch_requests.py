"""Provider requests per 1,000 exported members at each provider's maximum batch size.

For each audience size, on a fresh in-process moto server: profiles are seeded (every one a
member of the audience), then one audience export job per event/list destination is created
through the API and its backfill run is drained into the engine with its production
settings (5,000 rows a part):

| provider | destination (local)                        | batch request at its maximum            |
|----------|--------------------------------------------|-----------------------------------------|
| mailchimp | tests/fakes/mailchimp.py over HTTP        | batch subscribe, 500 members a call     |
| amazon_kinesis | moto's Kinesis                       | PutRecords, 500 records (and <= 5 MiB)  |
| amazon_sqs | moto's SQS (standard queue)              | SendMessageBatch, 10 messages           |
| webhook  | tests/http_receiver.py + tests/webhook_inbox.py (HMAC verified) | JSON batch, `batch_size` 1000 |

Two counts are kept apart:

* **provider requests**: what the client layer counted for the runs (the runs' own
  `cost.provider_calls`, i.e. chalicelib/providers/calls.CallCounter, the figure the
  authorization's activity chart shows), checked against what the destination saw (requests
  the fake Mailchimp / the webhook receiver got; for Kinesis and SQS, botocore `before-send`
  hooks on the providers' shared session);
* **AWS control-plane requests**: the engine's own (DynamoDB, Secrets Manager, runs-queue
  sends; `before-send` on the app's session) plus the queue poller that plays Lambda's event
  source (ReceiveMessage + DeleteMessage per step).

The theoretical minimum at the maximum batch size is ceil(1000 / batch) requests per 1,000
members. Mailchimp also sets the membership tag of every member; the tag operations of a part
go as ONE `POST /batches` (batch operations) which is then polled until Mailchimp reports it
finished: 2 requests per part on top of the member upserts (more polls while a real
Mailchimp works on a large batch).

Budget (exit status 1 when missed): for every provider and size, provider requests <=
1.1 x ceil(members / batch) + the provider's fixed requests per part (Mailchimp 2, the
others 0) + 1; AWS control-plane requests <= 50 per 1,000 members (the export
budget of 0.05 per member); every member delivered exactly as many times as the destination was sent it (no
loss); the client layer's count equals what the destination saw.

    .venv/bin/python bench/export_batch_requests.py [--members 1000,5000] [--sqs-max 1000]

moto's SendMessageBatch costs it tens of milliseconds per message on this machine (it
recomputes every queue attribute for each message it stores), so SQS is measured at sizes
up to `--sqs-max` (1,000 by default); its count is 1 request per 10 members at any size.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import string
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.awsnet import exit_code  # noqa: E402
from bench.export_setup import AUDIENCE, BenchAccount, Wire, app_clients, fresh_stack, people, report, seed  # noqa: E402

STAGE = "benchbatch"
RATIO = 1.1  # measured provider requests may exceed the minimum by 10 % ...
SLACK = 1  # ... plus one request
AWS_BUDGET = 50.0  # AWS control-plane requests per 1,000 members (0.05 per member)
FIELDS = ["email", "first_name", "last_name", "country", "plan"]
SIGNING = "whsec-bench-" + "7c" * 10


def key_id() -> str:
    return "AKIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))


@dataclass(frozen=True)
class Destination:
    provider: str
    label: str
    batch: int  # the provider's maximum entries per batch request
    per_part: int  # fixed requests per part on top of the batches (Mailchimp: tag batch + poll)
    note: str


DESTINATIONS = [
    Destination("mailchimp", "Mailchimp", 500, 2,
                "batch subscribe of 500 + per part 1 POST /batches (tags) + 1 poll"),
    Destination("amazon_kinesis", "Kinesis", 500, 0, "PutRecords of 500 records (<= 5 MiB)"),
    Destination("amazon_sqs", "SQS", 10, 0, "SendMessageBatch of 10 (<= 256 KiB)"),
    Destination("webhook", "webhook", 1000, 0, "JSON batches of 1,000 events (batch_size max)"),
]


@dataclass
class Figures:
    dest: Destination
    members: int
    steps: int
    parts: int
    provider_requests: int  # the client layer's count (runs' cost.provider_calls)
    seen_by_destination: int  # what the destination (fake / moto hook) saw
    delivered: int  # members the destination holds / received
    aws: Counter[str] = field(default_factory=Counter)  # engine + poller, by service.Operation
    provider_ops: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def minimum(self) -> int:
        return math.ceil(self.members / self.dest.batch)

    @property
    def allowed(self) -> float:
        return RATIO * self.minimum + self.dest.per_part * self.parts + SLACK

    def per_1000(self, n: float) -> float:
        return n * 1000 / self.members


class QueueConsumer:
    """Receives and deletes the customer queue's messages while the run sends them, as a
    consumer would (moto's SendMessageBatch slows down with every message left in a queue).
    Not on a counted session: these are the customer's requests, not Switchyard's."""

    def __init__(self, url: str) -> None:
        import threading

        import boto3

        self.url = url
        self.sqs = boto3.session.Session(region_name="us-east-1").client("sqs")
        self.event_ids: Counter[str] = Counter()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def receive(self) -> int:
        got = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                       VisibilityTimeout=600).get("Messages", [])
        for m in got:
            self.event_ids[json.loads(m["Body"])["event_id"]] += 1
        if got:
            self.sqs.delete_message_batch(QueueUrl=self.url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])
        return len(got)

    def loop(self) -> None:
        while not self.stop.is_set():
            if not self.receive():
                time.sleep(0.05)

    def finish(self) -> int:
        """Stop, take what is left; returns the distinct events received."""
        self.stop.set()
        self.thread.join()
        while self.receive():
            pass
        return len(self.event_ids)


def measure(members: int, sqs: bool) -> list[Figures]:
    with fresh_stack(STAGE):
        return run(members, [d for d in DESTINATIONS if sqs or d.provider != "amazon_sqs"])


def run(members: int, destinations: list[Destination]) -> list[Figures]:
    import boto3

    from chalicelib import config
    from chalicelib.providers import http
    from tests.fakes.mailchimp import FakeMailchimp
    from tests.http_receiver import Receiver
    from tests.webhook_inbox import Inbox

    wire = Wire(("app", "provider", "poller"))
    app_clients(app_hook=wire.hook("app"), provider_hook=wire.hook("provider"))
    poller = boto3.session.Session(region_name="us-east-1")
    poller.events.register("before-send", wire.hook("poller"))

    mailchimp = FakeMailchimp().start()
    inbox = Inbox(secret=SIGNING)
    receiver = Receiver(handler=inbox)
    receiver.__enter__()
    try:
        os.environ.update({"SWITCHYARD_MAILCHIMP_BASE_URL": mailchimp.base_url,
                           "SWITCHYARD_MAILCHIMP_OAUTH_URL": mailchimp.oauth_url,
                           "SWITCHYARD_ALLOW_PRIVATE_URLS": "1"})
        config.reset()
        config.settings()  # read now, outside any chalice.test request (see devserver/infra.py)
        http.reset()

        bench = BenchAccount(STAGE, poller.client("sqs"))
        d, account, post = bench.d, bench.account, bench.post
        t0 = time.perf_counter()
        seed(d.profiles, account.id, people(0, members), "seed")
        print(f"  seeded {members:,} profiles in {time.perf_counter() - t0:.0f} s", flush=True)

        audience = post("/audiences", {"name": "Pro and team", "filter": AUDIENCE})["id"]

        def drain() -> int:
            wire.on = True
            steps = bench.drain()
            wire.on = False
            return steps

        # -- one job per destination --------------------------------------------------------
        kinesis = boto3.client("kinesis", region_name="us-east-1")
        # moto's backends live in the process: names unique per size
        stream = f"bench-audience-events-{members}"
        kinesis.create_stream(StreamName=stream, ShardCount=2)
        queue_url = boto3.client("sqs", region_name="us-east-1").create_queue(
            QueueName=f"bench-audience-events-{members}")["QueueUrl"]
        mailchimp.add_list("L1", "Bench", [("FNAME", "First", "text"), ("LNAME", "Last", "text"),
                                           ("COUNTRY", "Country", "text"), ("PLAN", "Plan", "text")])

        def job(dest: Destination) -> dict[str, Any]:
            cfg: dict[str, Any]
            if dest.provider == "mailchimp":
                creds: dict[str, Any] = {"api_key": mailchimp.new_api_key()}
                method, cfg = "api_key", {"list_id": "L1", "fields": {
                    "first_name": "FNAME", "last_name": "LNAME", "country": "COUNTRY", "plan": "PLAN"}}
            elif dest.provider == "amazon_kinesis":
                creds = {"access_key_id": key_id(), "secret_access_key": "bench-secret-" + "k" * 20,
                         "stream_name": stream}
                method, cfg = "access_keys", {"stream_name": stream, "fields": FIELDS}
            elif dest.provider == "amazon_sqs":
                creds = {"access_key_id": key_id(), "secret_access_key": "bench-secret-" + "q" * 20,
                         "queue_url": queue_url}
                method, cfg = "access_keys", {"queue_url": queue_url, "fields": FIELDS}
            else:
                creds = {"url": receiver.url("/hooks/switchyard"), "signing_secret": SIGNING}
                method, cfg = "hmac", {"fields": FIELDS, "batch_size": dest.batch}
            auth = post("/authorizations", {"provider": dest.provider, "method": method,
                                            "label": dest.label, "credentials": creds})
            assert auth["health"]["status"] == "healthy", auth["health"]
            return post("/jobs", {"provider": dest.provider, "job_type": "export",
                                  "workflow": f"{dest.provider.removeprefix('amazon_')}_audience_export",
                                  "authorization_id": auth["id"], "label": f"bench {dest.label}",
                                  "config": {"audience_id": audience, **cfg}})

        def delivered(dest: Destination) -> int:
            if dest.provider == "mailchimp":
                return sum(1 for m in mailchimp.lists["L1"].members.values() if "switchyard" in m.tags)
            if dest.provider == "amazon_kinesis":
                n = 0
                for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
                    it = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                                    ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
                    while it:
                        got = kinesis.get_records(ShardIterator=it, Limit=10_000)
                        n += len(got["Records"])
                        it = got.get("NextShardIterator") if got["Records"] else None
                return n
            if dest.provider == "amazon_sqs":
                return consumer.finish()
            return len(inbox.events)

        out: list[Figures] = []
        consumer = QueueConsumer(queue_url)
        for dest in destinations:
            made = job(dest)
            before_fake = len(mailchimp.requests) if dest.provider == "mailchimp" else len(receiver.requests)
            wire.take()
            t = time.perf_counter()
            steps = drain()
            secs = time.perf_counter() - t
            counts = wire.take()
            [r] = d.runs.page(account.id, made["id"], limit=5, cursor=None).items
            assert r.status == "succeeded" and r.added == members, (dest.provider, r)
            if dest.provider == "mailchimp":
                seen = len(mailchimp.requests) - before_fake
            elif dest.provider == "webhook":
                seen = len(receiver.requests) - before_fake
            else:
                seen = sum(counts["provider"].values())
            provider_ops: Counter[str] = Counter(counts["provider"])
            if dest.provider == "mailchimp":
                provider_ops = Counter()  # this run's requests only (the create-time checks came before)
                for req in mailchimp.requests[before_fake:]:
                    shape = "/batches/{id}" if req.path.count("/batches/") else req.path.split("/3.0")[-1]
                    provider_ops[f"{req.method} {shape}"] += 1
            elif dest.provider == "webhook":
                provider_ops = Counter({"POST events": seen})
            fig = Figures(dest=dest, members=members, steps=steps, parts=steps - 1,  # step 0 plans
                          provider_requests=int(r.cost.get("provider_calls", 0)), seen_by_destination=seen,
                          delivered=delivered(dest), aws=counts["app"] + counts["poller"],
                          provider_ops=provider_ops, seconds=secs)
            print(f"  {dest.label}: {fig.provider_requests} provider requests, {sum(fig.aws.values())} AWS, "
                  f"{steps} steps, {secs:.1f} s", flush=True)
            out.append(fig)
        bench.close()
        return out
    finally:
        receiver.__exit__(None, None, None)
        mailchimp.stop()
        for name in ("SWITCHYARD_MAILCHIMP_BASE_URL", "SWITCHYARD_MAILCHIMP_OAUTH_URL"):
            os.environ.pop(name, None)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", default="1000" if os.environ.get("BENCH_QUICK", "") not in ("", "0") else "1000,5000", help="comma-separated audience sizes")
    parser.add_argument("--sqs-max", type=int, default=1000,
                        help="measure SQS only at sizes up to this (moto's SendMessageBatch is slow)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.members.split(",")]
    results: list[Figures] = []
    for n in sizes:
        print(f"audience of {n:,} members (a moto server of its own):", flush=True)
        results += measure(n, sqs=n <= args.sqs_max)
    print()
    head = (f"{'provider':<10}{'members':>8}{'parts':>6}{'provider req':>13}{'per 1,000':>10}"
            f"{'minimum/1,000':>14}{'ratio':>7}{'AWS per 1,000':>14}  provider requests by operation")
    print(head)
    print("-" * (len(head) + 30))
    checks: list[tuple[str, bool, str]] = []
    for f in results:
        per = f.per_1000(f.provider_requests)
        low = math.ceil(1000 / f.dest.batch)
        aws_per = f.per_1000(sum(f.aws.values()))
        print(f"{f.dest.label:<10}{f.members:>8,}{f.parts:>6}{f.provider_requests:>13,}{per:>10.2f}"
              f"{low:>14}{per / low:>7.2f}{aws_per:>14.2f}  "
              + ", ".join(f"{op} {n}" for op, n in sorted(f.provider_ops.items())))
        tag = f"{f.dest.label}, {f.members:,} members"
        checks.append((f"{tag}: provider requests <= {RATIO} x {f.minimum} + {f.dest.per_part} x {f.parts} parts"
                       f" + {SLACK}", f.provider_requests <= f.allowed, f"{f.provider_requests}"))
        checks.append((f"{tag}: counted = seen by the destination", f.provider_requests == f.seen_by_destination,
                       f"{f.provider_requests} / {f.seen_by_destination}"))
        checks.append((f"{tag}: every member delivered once", f.delivered == f.members, f"{f.delivered:,}"))
        checks.append((f"{tag}: AWS control plane <= {AWS_BUDGET:g} per 1,000", aws_per <= AWS_BUDGET,
                       f"{aws_per:.2f}"))
    print()
    print("AWS control-plane requests by operation (engine + poller):")
    for f in results:
        print(f"  {f.dest.label:<9}{f.members:>7,}: "
              + ", ".join(f"{op} {n}" for op, n in sorted(f.aws.items())))
    print()
    return report(checks, 78)


if __name__ == "__main__":
    sys.exit(exit_code(main()))
