"""Where a secret could end up, and how the leak suite looks there.

`AwsWire` records every request body the app's boto3 session sends (by service), before it
leaves the process; `queued_messages` peeks at every message moto still holds, without
receiving it (a receive would move the receive count, and so DLQ redrives, of other tests'
queues); `Places` counts the hits of a set of needles per place searched.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


class AwsWire:
    """Every AWS request the app sends (its one boto3 session: chalicelib/store/aws.py)."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[str]] = defaultdict(list)

    def _seen(self, request: Any = None, event_name: str = "", **_: Any) -> None:
        service = event_name.split(".")[1] if event_name.count(".") >= 2 else "other"
        service = service.replace("-", "")  # "secrets-manager" -> "secretsmanager"
        body = request.body if request is not None else b""
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
        url = str(getattr(request, "url", ""))
        headers = {k: str(v) for k, v in dict(getattr(request, "headers", {}) or {}).items()}
        self.bodies[service].append(f"{url}\n{json.dumps(headers)}\n{text}")

    def _emitters(self) -> list[Any]:
        from chalicelib.store import aws

        # Each client copies the session's event hooks when it is created: the clients made
        # before this wire was attached need it too.
        return [aws.session().events, *(c.meta.events for c in aws.cached_clients())]

    def __enter__(self) -> AwsWire:
        for emitter in self._emitters():
            emitter.register("before-send", self._seen, unique_id="proof-leaks-wire")
        return self

    def __exit__(self, *exc: Any) -> None:
        for emitter in self._emitters():
            emitter.unregister("before-send", unique_id="proof-leaks-wire")


class BusCapture:
    """Every event on the stage's EventBridge bus, copied to a queue of the test's own by a
    rule of its own (the app's alerts rule and queue are left alone)."""

    def __init__(self, region: str = "us-east-1") -> None:
        import uuid

        import boto3

        self.sqs = boto3.client("sqs", region_name=region)
        self.events = boto3.client("events", region_name=region)
        self.name = f"proof-events-{uuid.uuid4().hex[:8]}"
        self.url = ""
        self.bus = ""

    def __enter__(self) -> BusCapture:
        from chalicelib.config import settings

        self.url = self.sqs.create_queue(QueueName=self.name)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.bus = settings().event_bus_name
        self.events.put_rule(Name=self.name, EventBusName=self.bus,
                             EventPattern=json.dumps({"source": ["switchyard"]}))
        self.events.put_targets(Rule=self.name, EventBusName=self.bus, Targets=[{"Id": "capture", "Arn": arn}])
        return self

    def __exit__(self, *exc: Any) -> None:
        self.events.remove_targets(Rule=self.name, EventBusName=self.bus, Ids=["capture"])
        self.events.delete_rule(Name=self.name, EventBusName=self.bus)
        self.sqs.delete_queue(QueueUrl=self.url)

    def take(self) -> list[str]:
        """The raw events captured since the last take."""
        out: list[str] = []
        while True:
            msgs = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get("Messages", [])
            if not msgs:
                return out
            for m in msgs:
                out.append(m["Body"])
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])


def queued_messages(region: str = "us-east-1") -> dict[str, list[str]]:
    """Body and attributes of every message on every queue (DLQs included), as moto holds
    them, by queue name: read from moto's backend, which runs in this process."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sqs.models import sqs_backends

    out: dict[str, list[str]] = {}
    for name, queue in sqs_backends[DEFAULT_ACCOUNT_ID][region].queues.items():
        with queue._messages_lock:
            msgs = list(queue._messages)
        out[name] = [m.body + json.dumps(m.message_attributes, default=str) for m in msgs]
    return out


def all_items(region: str = "us-east-1") -> dict[str, list[str]]:
    """Every item of every DynamoDB table (a test may Scan; the app never does)."""
    import boto3

    ddb = boto3.client("dynamodb", region_name=region)
    out: dict[str, list[str]] = {}
    for table in ddb.list_tables()["TableNames"]:
        items = []
        for page in ddb.get_paginator("scan").paginate(TableName=table):
            items += [json.dumps(i, default=repr) for i in page["Items"]]
        out[table] = items
    return out


@dataclass
class Places:
    """Needles (the canaries, in every form a leak could take) × places searched."""

    needles: dict[str, list[str]]  # canary name -> its forms
    rows: list[tuple[str, int, dict[str, int]]] = field(default_factory=list)  # place, searched, hits

    def search(self, place: str, texts: Iterable[str]) -> dict[str, int]:
        texts = list(texts)
        hits = {name: sum(1 for t in texts if any(f in t for f in forms)) for name, forms in self.needles.items()}
        self.rows.append((place, len(texts), hits))
        return hits

    def leaks(self) -> list[tuple[str, str, int]]:
        return [(place, name, n) for place, _, hits in self.rows for name, n in hits.items() if n]

    def table(self) -> str:
        names = list(self.needles)
        lines = ["| place searched | texts searched | " + " | ".join(f"hits: {n}" for n in names) + " |",
                 "|---|---|" + "---|" * len(names)]
        for place, searched, hits in self.rows:
            lines.append(f"| {place} | {searched} | " + " | ".join(str(hits[n]) for n in names) + " |")
        return "\n".join(lines)


def forms(secret: str, *, prefix: int = 16) -> list[str]:
    """A secret as it could leak: itself, URL/JSON-escaped (the same for these canaries), in
    an HTTP Basic header, and its first `prefix` characters (a truncated quote)."""
    import base64

    basic = base64.b64encode(f"switchyard:{secret}".encode()).decode()
    return [secret, secret[:prefix], basic]


__all__ = ["AwsWire", "BusCapture", "Places", "all_items", "forms", "queued_messages"]
