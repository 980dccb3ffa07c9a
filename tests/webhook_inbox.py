"""A webhook receiver written from docs/providers/webhook.md (not from the provider's code):
it checks the credentials, verifies signatures with a 5-minute tolerance, and keeps each
batch once (by Switchyard-Event-Batch-Id), as a well-behaved receiver does."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from tests.http_receiver import Answer, Received

TOLERANCE = 300


def verify(secret: str, header: str | None, body: bytes, *, now: float | None = None) -> bool:
    if not header:
        return False
    fields = dict(item.strip().split("=", 1) for item in header.split(",") if "=" in item)
    try:
        t = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - t) > TOLERANCE:
        return False
    expected = hmac.new(secret.encode(), str(t).encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields.get("v1", ""))


class Inbox:
    """Use as a Receiver handler. `events` holds the audience events of every batch kept,
    in arrival order; `pings` the pings; `repeats` the batch ids received more than once."""

    def __init__(self, *, token: str | None = None, basic: tuple[str, str] | None = None,
                 secret: str | None = None) -> None:
        self.token, self.basic, self.secret = token, basic, secret
        self.batches: dict[str, bytes] = {}
        self.events: list[dict[str, Any]] = []
        self.pings: list[dict[str, Any]] = []
        self.repeats: list[str] = []
        self.refused = 0
        self.delay = 0.0  # seconds each accepted batch takes (a slow receiver)

    def __call__(self, req: Received) -> Answer:
        auth = req.headers.get("authorization")
        if self.token is not None and auth != f"Bearer {self.token}":
            self.refused += 1
            return Answer(401, {"error": "invalid token"})
        if self.basic is not None:
            want = "Basic " + base64.b64encode(f"{self.basic[0]}:{self.basic[1]}".encode()).decode()
            if auth != want:
                self.refused += 1
                return Answer(401, {"error": "bad user or password"})
        if self.secret is not None and not verify(self.secret, req.headers.get("switchyard-signature"), req.body):
            self.refused += 1
            return Answer(401, {"message": "bad signature"})
        if req.headers.get("content-type") != "application/json":
            return Answer(415, {"message": "send JSON"})
        batch = req.headers.get("switchyard-event-batch-id", "")
        if not batch:
            return Answer(400, {"message": "no batch id"})
        if batch in self.batches:
            # A repeat must be the very same batch: same id, same events.
            assert self.batches[batch] == req.body, "a batch id was reused for other events"
            self.repeats.append(batch)
            return Answer(200, {"duplicate": True}, delay=self.delay)
        self.batches[batch] = req.body
        events = req.json()["events"]
        for e in events:
            (self.pings if e["type"] == "switchyard.ping" else self.events).append(e)
        return Answer(200, {"accepted": len(events)}, delay=self.delay)
