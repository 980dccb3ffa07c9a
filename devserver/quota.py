"""API Gateway's usage-plan throttling for the local gateway.

A deployed stage counts each request of a route that requires an API key against the key the
authorizer names (`usageIdentifierKey`): a key that is not in the stage's usage plan is
refused (INVALID_API_KEY, a 503 in our envelope), and a key whose bucket is empty gets 429
with `Retry-After` (THROTTLED). Here the same plan, read from moto (devserver/infra.py
creates it, the account bootstrap adds keys), drives one token bucket per key: `burst`
requests at once, refilled at `rate` per second.

Time comes from `clock` (monotonic seconds): a test replaces it to hold a bucket empty or
refill it without waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3


@dataclass
class Bucket:
    tokens: float
    at: float


class UsagePlanLimiter:
    def __init__(self, plan_id: str, *, region: str = "us-east-1", clock: Callable[[], float] = time.monotonic):
        self.plan_id = plan_id
        self.clock = clock
        self._api: Any = boto3.client("apigateway", region_name=region)
        throttle = self._api.get_usage_plan(usagePlanId=plan_id).get("throttle", {})
        self.rate = float(throttle.get("rateLimit", 0))
        self.burst = int(throttle.get("burstLimit", 0))
        self._lock = threading.Lock()
        self._buckets: dict[str, Bucket] = {}
        self._known: set[str] = set()  # keys seen in the plan (a key is never removed here)

    def in_plan(self, key: str) -> bool:
        """Whether the usage plan holds a key of this value. Only found keys are remembered:
        an account bootstrapped (or backfilled) after a refusal is let in at once."""
        if key in self._known:
            return True
        items = self._api.get_usage_plan_keys(usagePlanId=self.plan_id, nameQuery=key)["items"]
        if any(k.get("value") == key or k.get("name") == key for k in items):
            self._known.add(key)
            return True
        return False

    def take(self, key: str) -> float:
        """Spend one request of `key`'s bucket: 0.0 when allowed, else the seconds until a
        request would be."""
        if self.rate <= 0 and self.burst <= 0:
            return 0.0  # a plan without a throttle limits nothing
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = Bucket(tokens=float(self.burst), at=now)
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate if self.rate > 0 else float("inf")
