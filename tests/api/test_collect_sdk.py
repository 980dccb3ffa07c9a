"""A real Segment SDK (segment-analytics-python 2.4.0, test-only) pointed at the app over
HTTP: what it sends is accepted as it sends it (Basic auth, gzip or not, writeKey in the
body, its own messageIds and context), reaches profiles, and a 429 is retried after its
Retry-After."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests import requires
from tests.collect.helpers import drain, receive


@pytest.fixture()
def base(deps: Any) -> Iterator[str]:
    from tests.proof.served import serve_app

    with serve_app() as url:
        yield url


class HttpApi:
    """What tests/collect/helpers.write_key_job needs, over real HTTP."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base + "/api/v1"
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def post(self, path: str, body: Any = None) -> Any:
        resp = requests.post(self.base + path, data=json.dumps(body or {}), headers=self.headers, timeout=30)
        resp.json = resp.json()  # type: ignore[method-assign]
        return resp


def _client(key: str, base: str, errors: list[Any], **kw: Any) -> Any:
    analytics = requires.module("segment.analytics.client", "pip install -r requirements-dev.txt")
    return analytics.Client(write_key=key, host=base + "/api", on_error=lambda e, batch: errors.append(e),
                            max_retries=3, **kw)


@pytest.mark.parametrize("gzip", [True, False])
def test_the_python_sdk_feeds_profiles(base: str, deps: Any, new_tenant: Any, gzip: bool) -> None:
    from tests.collect.helpers import write_key_job

    tenant = new_tenant("Sdk")
    receive()
    key, job = write_key_job(HttpApi(base, tenant.admin_token))
    errors: list[Any] = []
    sdk = _client(key, base, errors, gzip=gzip, upload_size=50)
    # GIVEN what an app sends: identify with traits, tracks, an alias from an anonymous visitor
    sdk.track(anonymous_id="visitor-1", event="Page Viewed", properties={"path": "/pricing"})
    sdk.alias(previous_id="visitor-1", user_id="user-1")
    sdk.identify("user-1", {"email": "ada@example.com", "plan": "pro"})
    for n in range(3):
        sdk.track("user-1", "Order Completed", {"total": n})
    sdk.page("user-1", name="Home")  # accepted, then omitted: not a profile change
    # WHEN it flushes
    sdk.flush()
    sdk.shutdown()
    # THEN it reported no error, and the engine applies what was handed off
    assert errors == []
    applied = drain(deps)
    assert applied, "nothing was handed off"
    prof = deps.profiles.find(tenant.account_id, "user_id", "user-1")
    assert prof is not None
    assert prof.identifiers["anonymous_id"] == ["visitor-1"] and prof.identifiers["email"] == ["ada@example.com"]
    assert prof.fields["plan"] == "pro"
    assert prof.fields["event_order_completed_count"] == 3
    assert prof.fields["event_page_viewed_count"] == 1
    assert prof.fields["last_seen_at"]
    runs = requests.get(f"{base}/api/v1/jobs/{job['id']}/runs", headers=HttpApi(base, tenant.admin_token).headers,
                        timeout=30).json()["data"]
    assert sum(r["omitted"] for r in runs) == 1 and sum(r["omitted_reasons"].get("unsupported_type", 0) for r in runs) == 1


def test_the_sdk_waits_out_a_429_and_its_retry_is_accepted(base: str, deps: Any, new_tenant: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from segment.analytics import request as sdk_request

    from chalicelib.services import collect
    from tests.collect.helpers import write_key_job

    # The rate's clock stands still but for the wait each 429 asks for: whatever the
    # machine's speed, the second flush finds the bucket full and its retry finds room.
    clock = [collect.clock()]
    monkeypatch.setattr(collect, "clock", lambda: clock[0])
    tenant = new_tenant("Sdk")
    receive()
    # GIVEN a job taking 10 messages a second (a bucket of 100) and a first flush that fills it
    key, _ = write_key_job(HttpApi(base, tenant.admin_token), config={"max_messages_per_second": 10})
    errors: list[Any] = []
    sdk = _client(key, base, errors, upload_size=100)
    for n in range(100):
        sdk.track("user-2", "Clicked", message_id=f"first-{n}")
    sdk.flush()
    # WHEN ten more come at once (the SDK's own HTTP session is watched for what it got back)
    answers: list[tuple[int, str | None]] = []

    def watch(resp: Any, *args: Any, **kwargs: Any) -> None:
        answers.append((resp.status_code, resp.headers.get("Retry-After")))
        if resp.status_code == 429:
            clock[0] += int(resp.headers["Retry-After"])

    sdk_request._session.hooks["response"].append(watch)
    try:
        for n in range(10):
            sdk.track("user-2", "Clicked", message_id=f"second-{n}")
        sdk.flush()
        sdk.shutdown()
    finally:
        sdk_request._session.hooks["response"].remove(watch)
    # THEN the API answered 429 with Retry-After (10 messages at 10 a second: 1 s), the SDK
    # waited and retried, and nothing was lost or doubled
    assert answers == [(429, "1"), (200, None)], answers
    assert errors == []
    drain(deps)
    prof = deps.profiles.find(tenant.account_id, "user_id", "user-2")
    assert prof is not None and prof.fields["event_clicked_count"] == 110
