"""Re-send everything in the SPA: an export job's page offers it, its confirm dialog says
what it does at the destination, Cancel sends nothing, Confirm runs a re-send that the run
history marks; an import job has no such action.

Against the real local stack (`python -m devserver`): profiles arrive through the tracking
API, a batch webhook export sends them, then re-sends them. The waits are the local stack's
liveness bound (the engine works off its queues), never a sleep that holds a state.
"""

from __future__ import annotations

import time

from playwright.sync_api import Page, expect

from tests.http_receiver import Receiver
from tests.test_local_stack import Stack
from tests.web import axe
from tests.web.test_realtime_job import PRO, Entered, identify
from tests.web.test_spa import api, page, signed_in  # noqa: F401  (fixtures)
from tests.web.test_write_key_dialog import stack  # noqa: F401  (a plain local stack per module)


def pro_profile(local: Stack, email: str) -> bool:
    found = api(local, "GET", f"/profiles?identifier=email:{email}")
    return any(p["fields"].get("plan") == "pro" for p in found)


def test_an_export_job_re_sends_everything_after_a_confirm(page: Page, stack: Stack) -> None:  # noqa: F811
    signed_in(page, stack)
    hook = Entered()  # adds arrive as enter events
    with Receiver(handler=hook) as r:
        # GIVEN two pro profiles pushed through a collection job, and an hourly webhook export
        # of the pro audience whose first run sent them
        key_auth = api(stack, "POST", "/authorizations", {"provider": "http_api", "method": "write_key",
                                                          "label": "Site", "credentials": {}})
        collect = api(stack, "POST", "/jobs", {"provider": "http_api", "job_type": "import",
                                               "workflow": "http_collect", "authorization_id": key_auth["id"],
                                               "label": "Site events", "config": {}})
        for email in ("ann@example.com", "bob@example.com"):
            identify(stack, key_auth["write_key"], email)
        aud = api(stack, "POST", "/audiences", {"name": "Pro (resend)", "filter": PRO})
        auth = api(stack, "POST", "/authorizations", {"provider": "webhook", "method": "none", "label": "Batch hook",
                                                      "credentials": {"url": r.url("/in")}})
        # (the engine applies the pushed events off its queue: wait for the profiles, bounded;
        # not for the audience's size, which is an estimate kept a minute)
        give_up = time.monotonic() + 60
        while not all(pro_profile(stack, e) for e in ("ann@example.com", "bob@example.com")):
            assert time.monotonic() < give_up, "the pushed profiles never arrived"
            page.wait_for_timeout(300)
        job = api(stack, "POST", "/jobs", {
            "provider": "webhook", "job_type": "export", "workflow": "webhook_audience_export",
            "authorization_id": auth["id"], "label": "Pro, hourly", "schedule": {"type": "interval", "every_minutes": 60},
            "config": {"audience_id": aud["id"], "fields": ["email"], "batch_size": 10}})
        page.goto(f"{stack.base}/#/jobs/{job['id']}")
        runs = page.get_by_test_id("runs").locator("tbody tr")
        expect(runs.first).to_contain_text("succeeded", timeout=60_000)
        first = sorted(hook.emails)
        button = page.get_by_role("button", name="Re-send everything")
        # WHEN the user opens the action and cancels
        button.click()
        dialog = page.get_by_role("dialog")
        expect(dialog.get_by_role("heading")).to_have_text("Re-send every member of “Pro (resend)”?")
        expect(page.get_by_test_id("resync-what")).to_contain_text("add event")
        expect(page.get_by_test_id("resync-what")).to_contain_text("reads every profile")
        axe.check(page, "resync-dialog")
        dialog.get_by_role("button", name="Cancel").click()
        # THEN nothing was asked: no pending re-send, one run still
        expect(page.get_by_role("dialog")).to_have_count(0)
        expect(page.get_by_test_id("resync-status")).to_have_count(0)
        assert api(stack, "GET", f"/jobs/{job['id']}")["resync_requested"] is None
        expect(runs).to_have_count(1)
        # WHEN the user confirms
        button.click()
        page.get_by_role("dialog").get_by_role("button", name="Re-send all members").click()
        # THEN the page says so, and a run marked as a re-send sends every member again
        expect(page.get_by_test_id("job-notice")).to_have_text("Re-sending every member: a run starts now.")
        resent = runs.filter(has=page.get_by_test_id("run-resync"))
        expect(resent).to_have_count(1, timeout=60_000)
        expect(resent).to_contain_text("succeeded", timeout=60_000)
        expect(page.get_by_test_id("resync-status")).to_have_count(0, timeout=10_000)
        assert first == ["ann@example.com", "bob@example.com"]
        assert sorted(hook.emails) == sorted(first * 2)
        # AND an import job offers no re-send (the action is for exports only)
        page.goto(f"{stack.base}/#/jobs/{collect['id']}")
        expect(page.get_by_test_id("job-title")).to_have_text("Site events")
        expect(page.get_by_role("button", name="Delete")).to_be_visible()
        expect(page.get_by_role("button", name="Re-send everything")).to_have_count(0)
