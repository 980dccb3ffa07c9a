"""What a marketer reads: errors in plain words at the field, names instead of ids ("deleted"
for a deleted authorization, people's names in logs and health history), a wizard that keeps
its place through a refresh and Back and asks before its answers are lost, and OAuth errors
in fixed words whatever the address says. One stack and signed-in page for the module
(fixtures of test_spa.py); each test seeds what it needs through the API."""

from __future__ import annotations

import re
import time

import pytest

from tests.test_local_stack import Stack
from tests.web import test_spa as spa
from tests.web.helpers import wizard_to_credentials
from tests.web.test_spa import Page, api, expect, shot, signed_in  # playwright: skipped there when absent

pytestmark = spa.pytestmark
# The module's own stack and signed-in page, built as test_spa.py builds its own.
mailchimp, google, stack, page = spa.mailchimp, spa.google, spa.stack, spa.page

JARGON = re.compile(r"should|String |Value error|pattern|\^|\$|\{\d|usr_|auth_0|access_keys|s3_file_import|authorization_id")


def test_api_errors_show_in_plain_words_at_the_field(page: Page, stack: Stack) -> None:
    signed_in(page, stack)
    page.goto(f"{stack.base}/#/jobs/new")
    wizard_to_credentials(page)
    page.get_by_label("Authorization label *").fill("Plain words")
    page.get_by_label("Access Key Id *").fill("not-a-key")
    page.get_by_label("Secret Access Key *").fill("short")
    page.get_by_role("button", name="Check and continue").click()
    key_field = page.locator(".field.invalid", has=page.get_by_label("Access Key Id *"))
    expect(key_field).to_contain_text("must be an AWS access key ID: AKIA or ASIA followed by 16 capital letters or digits")
    expect(page.locator(".field.invalid", has=page.get_by_label("Secret Access Key *"))).to_contain_text(
        "must be at least 16 characters")
    box = page.get_by_role("alert").filter(has_text="Check the credentials")
    expect(box).to_contain_text("Access key ID must be an AWS access key ID")
    text = box.inner_text()
    assert not JARGON.search(text) and "credentials." not in text, text
    shot(page, "wizard-plain-errors")
    page.get_by_role("link", name="← Jobs").click()


def test_wizard_keeps_its_place_through_refresh_and_back(page: Page, stack: Stack) -> None:
    signed_in(page, stack)
    page.goto(f"{stack.base}/#/jobs/new")
    auth = spa.s3_auth(stack, "Wizard keys")
    page.get_by_text("Amazon S3", exact=True).click()
    page.get_by_role("button", name="Next").click()
    expect(page).to_have_url(re.compile(r"#/jobs/new\?step=job-type$"))
    page.get_by_text("S3 file import (CSV / JSON Lines)").click()
    page.get_by_role("button", name="Next").click()
    page.get_by_role("radio", name=re.compile("Wizard keys")).check()
    expect(page.get_by_role("radiogroup", name="Authorization")).to_contain_text("AWS access keys")
    page.get_by_role("button", name="Next").click()
    expect(page).to_have_url(re.compile(r"step=configure$"))
    page.get_by_label("Job label *").fill("Survives a refresh")
    page.get_by_label("Bucket *").fill("switchyard-demo")
    # A refresh asks first (the tab could be closing), then comes back to the same step and answers.
    asked: list[str] = []
    page.once("dialog", lambda d: (asked.append(d.type), d.accept()))
    page.reload()
    expect(page.get_by_role("heading", name="Configure")).to_be_visible()
    assert asked == ["beforeunload"]
    expect(page.get_by_label("Job label *")).to_have_value("Survives a refresh")
    expect(page.get_by_label("Bucket *")).to_have_value("switchyard-demo")
    # The browser's Back goes to the previous step, Forward returns, nothing is lost.
    # Sent from the page (history.back/forward), not Playwright's go_back/go_forward: those
    # pick the entry from the browser process's list, which can still show the step before
    # the page's same-document move when the page has already drawn it; on a busy machine
    # Forward then found no next entry and did nothing. From the page, the request reaches
    # the browser after the move it follows.
    page.evaluate("history.back()")
    expect(page).to_have_url(re.compile(r"step=authorization$"))
    expect(page.get_by_role("heading", name="Authorization")).to_be_visible()
    expect(page.get_by_role("radio", name=re.compile("Wizard keys"))).to_be_checked()
    page.evaluate("history.forward()")
    expect(page).to_have_url(re.compile(r"step=configure$"))
    expect(page.get_by_label("Job label *")).to_have_value("Survives a refresh")
    # Leaving for another screen keeps the draft; "Create job" offers it back.
    page.get_by_role("link", name="Jobs", exact=True).click()
    page.get_by_role("link", name="Create job").first.click()
    offer = page.get_by_test_id("draft-offer")
    expect(offer).to_contain_text("“Survives a refresh”")
    shot(page, "wizard-draft-offer")
    offer.get_by_role("button", name="Continue it").click()
    expect(page.get_by_role("heading", name="Review")).to_be_visible()
    review = page.locator("dl.meta")
    expect(review).to_contain_text("Wizard keys")
    expect(review).not_to_contain_text("{")
    page.get_by_text("Stage (create paused, start later)").click()
    page.get_by_role("button", name="Create job").click()
    expect(page.get_by_test_id("job-title")).to_have_text("Survives a refresh")
    # Created: the draft is gone, a new wizard starts empty and offers nothing.
    page.goto(f"{stack.base}/#/jobs/new")
    expect(page.get_by_role("heading", name="Provider")).to_be_visible()
    expect(page.get_by_test_id("draft-offer")).to_have_count(0)
    assert api(stack, "GET", f"/authorizations/{auth['id']}")["usage"]["total"] == 1


def test_names_not_ids_for_deleted_authorizations_people_and_methods(page: Page, stack: Stack) -> None:
    signed_in(page, stack)
    auth = spa.s3_auth(stack, "Short-lived keys")
    job = spa.s3_import(stack, auth["id"], "Orphaned import", "imports/")
    other = spa.s3_auth(stack, "Replacement keys")
    api(stack, "PATCH", f"/jobs/{job['id']}", {"label": "Orphaned import (renamed)", "version": job["version"]})
    page.goto(f"{stack.base}/#/jobs/{job['id']}")
    expect(page.get_by_test_id("job-title")).to_have_text("Orphaned import (renamed)")
    logs = page.locator("[aria-labelledby=logs-h]")
    expect(logs).to_contain_text("(you)")
    expect(logs).not_to_contain_text("usr_")
    # Change of authorization: its options and the dry run in words, then a confirmation.
    page.get_by_role("button", name="Change authorization").click()
    box = page.get_by_test_id("change-auth")
    expect(box.get_by_label("New authorization").locator("option", has_text="Replacement keys")).to_have_text(
        "Replacement keys (Amazon S3, AWS access keys)")
    box.get_by_label("New authorization").select_option(value=other["id"])
    box.get_by_role("button", name="Check (dry run)").click()
    expect(box.get_by_test_id("dry-run")).to_contain_text("Would change: authorization")
    expect(box.get_by_test_id("dry-run")).not_to_contain_text("authorization_id")
    box.get_by_role("button", name="Confirm change").click()
    expect(page.get_by_test_id("job-notice")).to_have_text("The job now uses the authorization “Replacement keys”.")
    # The first authorization is free now: it can go, and the pages below name what is left.
    api(stack, "DELETE", f"/authorizations/{auth['id']}")
    page.goto(f"{stack.base}/#/jobs")
    row = page.locator("table.data tbody tr", has_text="Orphaned import (renamed)")
    expect(row).to_contain_text("S3 file import")
    expect(row).not_to_contain_text("s3_file_import")
    page.goto(f"{stack.base}/#/authorizations")
    expect(page.locator("table.data tbody tr", has_text="Replacement keys")).to_contain_text("AWS access keys")
    expect(page.locator("table.data")).not_to_contain_text("access_keys")
    shot(page, "authorizations-methods-named")


def finished(stack: Stack, job_id: str) -> None:
    """Wait until the job's run has ended by itself; the bound only stops a run that never ends
    (pytest's own timeout is 300 s), it is not a speed the machine must reach."""
    end = time.monotonic() + 240
    while (status := api(stack, "GET", f"/jobs/{job_id}")["status"]) not in ("completed", "failed"):
        assert time.monotonic() < end, f"the run never ended (status {status})"
        time.sleep(0.2)


def test_deleted_authorization_is_shown_as_deleted(page: Page, stack: Stack) -> None:
    signed_in(page, stack)
    auth = spa.s3_auth(stack, "Keys to delete")
    job = spa.s3_import(stack, auth["id"], "Outlives its keys", "imports/")
    # Only a failed or completed job lets its authorization go: complete a one-off run.
    out = api(stack, "PATCH", f"/jobs/{job['id']}", {"schedule": {"type": "once"}, "version": job["version"]})
    api(stack, "POST", f"/jobs/{job['id']}/resume")
    finished(stack, job["id"])
    api(stack, "DELETE", f"/authorizations/{auth['id']}")
    assert out["id"] == job["id"]
    page.goto(f"{stack.base}/#/jobs")
    row = page.locator("table.data tbody tr", has_text="Outlives its keys")
    expect(row.get_by_test_id("auth-deleted")).to_have_text("deleted")
    expect(row.locator(f"a[href='#/authorizations/{auth['id']}']")).to_have_count(0)
    expect(row).not_to_contain_text("auth_")
    page.goto(f"{stack.base}/#/jobs/{job['id']}")
    expect(page.get_by_test_id("auth-deleted")).to_contain_text("deleted")
    expect(page.locator("dl.meta").first).not_to_contain_text("unknown")
    shot(page, "job-authorization-deleted")


@pytest.mark.parametrize("code,words", [
    ("oauth.exchange_failed", "refused the authorization code; nothing was created"),
    ("oauth.state_expired", "took longer than 10 minutes"),
    ("made.up", "The connection failed; nothing was created."),
])
def test_oauth_errors_in_the_address_show_fixed_words(page: Page, stack: Stack, code: str, words: str) -> None:
    signed_in(page, stack)
    page.goto(f"{stack.base}/#/authorizations?oauth_error={code}&message=Call+0800+FAKE+to+restore+access")
    box = page.get_by_test_id("oauth-error")
    expect(box).to_contain_text(words)
    expect(box).not_to_contain_text("0800")
    assert "FAKE" not in page.locator("main").inner_text()
