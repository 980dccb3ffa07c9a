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
import re
import threading
import urllib.request
from typing import Any

from playwright.sync_api import Page, expect

from tests.http_receiver import Answer, Received, Receiver
from tests.test_local_stack import Stack
from tests.web.test_spa import api, page, s3_auth, shot, signed_in  # noqa: F401  (fixtures)
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


def test_the_wizard_offers_real_time_where_it_is_allowed_and_an_edit_keeps_it(page: Page, stack: Stack) -> None:  # noqa: F811
    signed_in(page, stack)
    with Receiver(handler=Entered()) as r:
        aud = api(stack, "POST", "/audiences", {"name": "Wizard live", "filter": PRO})
        api(stack, "POST", "/authorizations", {"provider": "webhook", "method": "none", "label": "Wizard hook",
                                               "credentials": {"url": r.url("/in")}})
        picker = page.locator("fieldset.schedule")

        def configure(provider: str, workflow: str, discard: bool = False) -> None:
            page.goto(f"{stack.base}/#/jobs/new")
            if discard:  # the S3 job left unfinished is offered first
                page.get_by_role("button", name="Discard it").or_(page.get_by_role("link", name="Discard it")).click()
            page.get_by_text(provider, exact=True).click()
            page.get_by_role("button", name="Next").click()
            page.get_by_text(workflow).click()
            page.get_by_role("button", name="Next").click()

        # The catalog says which workflows take a real-time schedule.
        flags = {w["id"]: w["realtime"] for p in api(stack, "GET", "/providers") for w in p["workflows"]}
        assert flags["webhook_audience_export"] and flags["sqs_audience_export"] and flags["kinesis_audience_export"]
        assert not flags["s3_audience_export"] and not flags["mailchimp_audience_export"] and not flags["http_collect"]
        # An S3 export's picker has no real-time choice ...
        s3_auth(stack, "Wizard S3 keys")
        configure("Amazon S3", "S3 audience export")
        page.get_by_role("radio", name=re.compile("Wizard S3 keys")).check()
        page.get_by_role("button", name="Next").click()
        expect(picker.get_by_role("radio", name="Daily")).to_be_visible()
        expect(picker.get_by_role("radio", name="Real-time")).to_have_count(0)
        # ... a webhook export has one (the positive control), and the job is created with it
        configure("Webhook", "Webhook audience export", discard=True)
        page.get_by_role("radio", name=re.compile("Wizard hook")).check()
        page.get_by_role("button", name="Next").click()
        expect(page.get_by_role("heading", name="Configure")).to_be_visible()
        page.get_by_label("Job label *").fill("Wizard live export")
        page.get_by_label("Audience Id *").select_option(label="Wizard live")
        page.get_by_label("Fields", exact=True).fill("email")
        picker.get_by_role("radio", name="Real-time").check()
        expect(page.get_by_test_id("realtime-hint")).to_contain_text("within seconds")
        shot(page, "wizard-realtime")
        page.get_by_role("button", name="Next").click()
        expect(page.locator("dl.meta")).to_contain_text("real-time")
        page.get_by_role("button", name="Create job").click()
        expect(page.get_by_test_id("job-schedule")).to_have_text("real-time")
        job_id = page.url.rsplit("/", 1)[-1]
        assert api(stack, "GET", f"/jobs/{job_id}")["schedule"] == {"type": "realtime"}
        assert api(stack, "GET", f"/jobs/{job_id}")["config"]["audience_id"] == aud["id"]
        # Editing it shows real-time chosen; choosing it again and saving keeps it real-time.
        page.get_by_role("button", name="Edit configuration").click()
        expect(picker.get_by_role("radio", name="Real-time")).to_be_checked()
        picker.get_by_role("radio", name="Daily").check()
        picker.get_by_role("radio", name="Real-time").check()
        page.get_by_role("button", name="Save configuration").click()
        expect(page.get_by_role("button", name="Save configuration")).to_have_count(0)
        assert api(stack, "GET", f"/jobs/{job_id}")["schedule"] == {"type": "realtime"}
        expect(page.get_by_test_id("job-schedule")).to_have_text("real-time")
