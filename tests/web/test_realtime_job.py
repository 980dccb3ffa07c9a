"""A real-time export job in the SPA: the jobs list and the job's page say "real-time" as its
schedule, and the page shows the job's lag from GET /jobs/{id}, read again while it is open.

Against the real local stack (`python -m devserver`): a profile pushed through the tracking
API enters the audience while the job is paused, so its change waits and the open page's lag
moves from "caught up" to "… behind" without a reload; resuming drains it, the webhook gets
the enter (the positive control) and the page is caught up again. States are held by the
job's own pause, never by sleeping.
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.request
from typing import Any

from playwright.sync_api import Page, expect

from tests.http_receiver import Answer, Received, Receiver
from tests.test_local_stack import Stack
from tests.web.test_spa import api, browser, page, shot, signed_in  # noqa: F401  (fixtures)
from tests.web.test_write_key_dialog import stack  # noqa: F401  (a plain local stack per module)

PRO = {"all": [{"field": "plan", "op": "equals", "value": "pro"}]}


class Entered:
    """The webhook: the emails whose enter arrived."""

    def __init__(self) -> None:
        self.emails: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, req: Received) -> Answer:
        events = req.json().get("events", [])
        with self.lock:
            self.emails += [str(e["fields"].get("email")) for e in events if e.get("type") == "audience.entered"]
        return Answer(200, {"accepted": len(events)})


def identify(local: Stack, key: str, email: str) -> None:
    body = json.dumps({"batch": [{"type": "identify", "userId": email, "messageId": f"m-{email}",
                                  "traits": {"email": email, "plan": "pro"}}]}).encode()
    req = urllib.request.Request(f"{local.base}/api/v1/batch", data=body, method="POST", headers={
        "Content-Type": "application/json", "Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()})
    with urllib.request.urlopen(req, timeout=15) as resp:
        answer: dict[str, Any] = json.loads(resp.read())
    assert answer["accepted"] == 1, answer


def test_a_real_time_job_shows_real_time_and_a_live_lag(page: Page, stack: Stack) -> None:  # noqa: F811
    signed_in(page, stack)
    hook = Entered()
    with Receiver(handler=hook) as r:
        # GIVEN a real-time webhook export of the pro audience, and a collection job to feed it
        aud = api(stack, "POST", "/audiences", {"name": "Pro (live)", "filter": PRO})
        auth = api(stack, "POST", "/authorizations", {"provider": "webhook", "method": "none", "label": "Live hook",
                                                      "credentials": {"url": r.url("/in")}})
        job = api(stack, "POST", "/jobs", {
            "provider": "webhook", "job_type": "export", "workflow": "webhook_audience_export",
            "authorization_id": auth["id"], "label": "Pro, live", "schedule": {"type": "realtime"},
            "config": {"audience_id": aud["id"], "fields": ["email"], "batch_size": 10}})
        key_auth = api(stack, "POST", "/authorizations", {"provider": "http_api", "method": "write_key",
                                                          "label": "Site", "credentials": {}})
        api(stack, "POST", "/jobs", {"provider": "http_api", "job_type": "import", "workflow": "http_collect",
                                     "authorization_id": key_auth["id"], "label": "Site events", "config": {}})
        # THEN the jobs list says real-time for it, and only for it
        page.goto(f"{stack.base}/#/jobs")
        row = page.locator("table.data tbody tr", has_text="Pro, live")
        expect(row.get_by_test_id("job-realtime")).to_have_text("real-time")
        expect(page.get_by_test_id("job-realtime")).to_have_count(1)
        shot(page, "jobs-realtime")
        # AND its page: schedule real-time, caught up (nothing recorded yet)
        page.goto(f"{stack.base}/#/jobs/{job['id']}")
        expect(page.get_by_test_id("job-schedule")).to_have_text("real-time")
        lag = page.get_by_test_id("job-lag")
        expect(lag).to_have_text("caught up")
        # WHEN the job is paused and a pro profile arrives, its enter waits undelivered
        api(stack, "POST", f"/jobs/{job['id']}/pause")
        identify(stack, key_auth["write_key"], "ann@example.com")
        # THEN the open page's lag grows without a reload (the engine applies the event off
        # the queue and the stream: the same liveness bound as the other local-stack waits)
        expect(lag).to_contain_text("behind", timeout=60_000)
        assert hook.emails == []
        shot(page, "job-realtime-lag")
        # WHEN the job is resumed, THEN the change is delivered and the page is caught up again
        api(stack, "POST", f"/jobs/{job['id']}/resume")
        expect(lag).to_have_text("caught up", timeout=60_000)
        assert hook.emails == ["ann@example.com"]
