"""Per-account throttling through the local gateway, which applies the stage's usage plan
the way API Gateway does (devserver/quota.py): each request of an authorized route counts
against the API key the authorizer names, one per Switchyard account. Time is simulated:
the buckets refill only when the test moves the limiter's clock."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest


@pytest.fixture()
def served(aws_endpoint: str, deps: Any) -> Iterator[tuple[str, Any, list[float]]]:
    from chalicelib.config import settings
    from devserver.quota import UsagePlanLimiter
    from tests.proof.served import serve_app

    now = [1000.0]
    limiter = UsagePlanLimiter(str(settings().usage_plan_id), clock=lambda: now[0])
    with serve_app(limiter) as base:
        yield base + "/api/v1", limiter, now


def _get(url: str, header: str | None) -> tuple[int, dict[str, str], Any]:
    req = urllib.request.Request(url, headers={"Authorization": header} if header else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def _burst(url: str, header: str, n: int) -> list[int]:
    return [_get(url, header)[0] for _ in range(n)]


def test_one_account_is_throttled_with_429_while_another_is_not(served, new_tenant, monkeypatch):
    from chalicelib.services import accounts

    base, limiter, now = served
    a, b = new_tenant("Busy"), new_tenant("Quiet")
    me = base + "/me"
    burst = limiter.burst
    assert burst >= 1 and limiter.rate > 0, (limiter.rate, burst)
    served_by_route: list[str] = []
    real_me = accounts.me

    def counting_me(d: Any, p: Any) -> Any:
        served_by_route.append(p.account_id)
        return real_me(d, p)

    monkeypatch.setattr(accounts, "me", counting_me)
    # GIVEN account A spends its whole bucket (the clock stands still: nothing refills)
    assert _burst(me, f"Bearer {a.admin_token}", burst) == [200] * burst
    assert len(served_by_route) == burst  # positive control: each reached the route
    # WHEN A asks once more
    status, headers, body = _get(me, f"Bearer {a.admin_token}")
    # THEN the gateway answers 429 in the API's envelope, with Retry-After, without the route
    assert status == 429, body
    assert body["error"]["code"] == "api.throttled"
    assert headers["Retry-After"] == "1"
    assert len(served_by_route) == burst
    print(f"rate {limiter.rate}/s, burst {burst}: request {burst + 1} of one account refused")
    # AND account B, at the same instant, gets every request of its own bucket
    assert _burst(me, f"Bearer {b.admin_token}", burst) == [200] * burst
    # positive control: B is throttled too once its own bucket is spent (the limiter is on for B)
    assert _get(me, f"Bearer {b.admin_token}")[0] == 429
    # AND A gets one request back per 1/rate seconds, not more (1.5 of them: one whole
    # request and half of the next)
    now[0] += 1.5 / limiter.rate
    assert _burst(me, f"Bearer {a.admin_token}", 2) == [200, 429]


def test_callers_without_a_valid_token_share_one_key_apart_from_the_accounts(served, new_tenant):
    base, limiter, _ = served
    tenant = new_tenant("Tenant")
    garbage = "Bearer tok_nobody.9Jr2w1cXzP0bLq7KfT3nVh8sYd4mGe6uAoWiRjNkCtE"
    # GIVEN unknown (well-formed) tokens get the route's 401 until their shared bucket is spent
    statuses = _burst(base + "/me", garbage, limiter.burst + 1)
    assert statuses == [401] * limiter.burst + [429]
    # THEN an account is not affected
    assert _get(base + "/me", f"Bearer {tenant.admin_token}")[0] == 200


def test_a_malformed_header_is_refused_before_the_authorizer(served, new_tenant, monkeypatch):
    from chalicelib.api import auth

    base, _, _ = served
    tenant = new_tenant("Shape")
    calls: list[str | None] = []
    real = auth.resolve_header

    def counting(d: Any, header: str | None) -> Any:
        calls.append(header)
        return real(d, header)

    monkeypatch.setattr(auth, "resolve_header", counting)
    # positive control: the canonical header reaches the authorizer
    assert _get(base + "/me", f"Bearer {tenant.admin_token}")[0] == 200
    assert len(calls) == 1
    for header in (f"bearer {tenant.admin_token}", tenant.admin_token, "Bearer garbage", "Basic dXNlcjpwYXNz"):
        status, _, body = _get(base + "/me", header)
        assert status == 401 and body["error"]["code"] == "auth.invalid_token", header
    # THEN none of them cost an authorizer call (nor its DynamoDB reads)
    assert len(calls) == 1


def test_an_account_without_a_key_is_told_so_until_its_key_is_made(served, new_tenant, deps):
    from chalicelib.config import settings
    from chalicelib.domain import quota
    from chalicelib.services.accounts import ensure_usage_key

    base, _, _ = served
    tenant = new_tenant("Old")
    api = boto3.client("apigateway")
    value = quota.usage_key(settings().stage, tenant.account_id)
    [key] = [k for k in api.get_api_keys(nameQuery=value)["items"] if k["name"] == value]
    # GIVEN an account made before keys existed (its key is not in the plan)
    api.delete_usage_plan_key(usagePlanId=settings().usage_plan_id, keyId=key["id"])
    api.delete_api_key(apiKey=key["id"])
    fresh = new_tenant("Fresh")
    assert _get(base + "/me", f"Bearer {fresh.admin_token}")[0] == 200  # positive control
    status, _, body = _get(base + "/me", f"Bearer {tenant.admin_token}")
    assert status == 503 and body["error"]["code"] == "api.account_not_ready"
    # WHEN the operator's backfill gives it a key (twice: it is idempotent)
    ensure_usage_key(deps, tenant.account_id)
    ensure_usage_key(deps, tenant.account_id)
    # THEN its requests go through
    assert _get(base + "/me", f"Bearer {tenant.admin_token}")[0] == 200
