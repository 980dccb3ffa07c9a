"""The dashboard SPA in a real browser (Debian's chromium through Playwright) against the
real local stack: `python -m devserver` on free ports with its own state directory, as
`make run` starts it, serving the built web/dist at / and the API at /api/v1.

The tests run in file order and share one stack and one signed-in admin page: sign in,
the wizard with an inline S3 authorization on the seeded demo bucket, a run watched to
completion, job actions, change of authorization refused and accepted, delete refused then
allowed, and an observer who sees no edit buttons. Then OAuth connections (Mailchimp from
the authorizations screen, Google Tag Manager inline in the wizard, both in a popup, and
the full-page redirect when popups are blocked) against the fake Mailchimp and Google
(tests/fakes/) the stack is pointed at, a schedule with its time zone and quiet hours kept
through an edit, the audience filter builder with its size preview, alert settings,
tokens, and an accessibility pass (names of form controls, text contrast). Last, flows
that seed their own data through the API: the jobs dashboard's filters and cursor paging,
the wizard's audience picker and field mapping, a long import's progress bar, cost,
activity per hour/day/week and log levels, an authorization's health history, requests
chart and rotation, and the audit log's filters. Each main screen is saved under
docs/screenshots/.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devserver.seed import profiles_csv
from tests.fakes.google import FakeGoogle
from tests.fakes.mailchimp import FakeMailchimp
from tests.test_local_stack import TOKEN, Stack
from tests.web import helpers
from tests.web.helpers import (  # skips this module when Playwright, chromium or web/dist is missing
    Browser,
    Page,
    api,
    choose_provider,
    expect,
    shot,
    sign_in,
    signed_in,
    signed_in_as,
    to_new_authorization,
)

# The module's signed-in page (each module that uses it gets its own), on the worker's browser.
page = helpers.page
ACCESS_KEYS = {"access_key_id": "AKIAIOSFODNN7EXAMPLE",
               "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}

pytestmark = pytest.mark.smoke


# devserver seeds these dummy OAuth client credentials (devserver/seed.py: seed_oauth_apps);
# the fakes accept them so the flows complete locally.
LOCAL_CLIENT = ("local-dummy-client-id", "local-dummy-client-secret")

# Assertions wait up to 15 s (Playwright's default is 5): CI may run this beside another
# suite on two cores, and a screen waits on moto in the server's process.
expect.set_options(timeout=15_000)


class FakedStack(Stack):
    """The local stack with Mailchimp and Google pointed at the fakes (as tests/conftest.py
    does in-process)."""

    def __init__(self, state_dir: Path, log: Path, extra: dict[str, str]) -> None:
        super().__init__(state_dir, log)
        self.extra = extra

    def env(self) -> dict[str, str]:
        return {**super().env(), **self.extra}


@pytest.fixture(scope="module")
def mailchimp() -> Iterator[FakeMailchimp]:
    with FakeMailchimp() as fake:
        fake.client_id, fake.client_secret = LOCAL_CLIENT
        fake.add_list("list0001", "Newsletter")
        yield fake


@pytest.fixture(scope="module")
def google() -> Iterator[FakeGoogle]:
    with FakeGoogle() as fake:
        fake.client_id, fake.client_secret = LOCAL_CLIENT
        fake.add_account("6001", "Acme marketing")
        fake.add_container("6001", "7001", "acme.example")
        yield fake


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mailchimp: FakeMailchimp, google: FakeGoogle) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("spa")
    s = FakedStack(tmp / "state", tmp / "devserver.log", {
        "SWITCHYARD_MAILCHIMP_BASE_URL": mailchimp.base_url, "SWITCHYARD_MAILCHIMP_OAUTH_URL": mailchimp.oauth_url,
        "SWITCHYARD_GTM_BASE_URL": google.gtm_url, "SWITCHYARD_GOOGLE_OAUTH_URL": google.oauth_url,
        "SWITCHYARD_GOOGLE_AUTHORIZE_URL": google.authorize_url,
        "OAUTHLIB_INSECURE_TRANSPORT": "1",  # the fakes speak http; oauthlib refuses it otherwise
        "SWITCHYARD_DEV_CONTROL": "1",  # /__devserver/holds: runs held while a test looks at them
        "SWITCHYARD_DEV_GTM_RATE": "1000",  # as in-process tests; tests/engine/test_gtm_quota.py has Google's
    })
    s.start()
    try:
        yield s
    finally:
        s.stop()


STATE: dict[str, str] = {}


def test_sign_in_shows_account_and_an_empty_dashboard(page: Page, stack: Stack) -> None:
    page.goto(stack.base + "/")
    expect(page.get_by_role("heading", name="Switchyard")).to_be_visible()
    shot(page, "sign-in")
    assert_accessible(page)
    sign_in(page, stack.base, "tok_wrong.bm90LWEtdmFsaWQtdG9rZW4tYXQtYWxsLW5vcGU")
    expect(page.get_by_role("alert")).to_contain_text("not valid")
    sign_in(page, stack.base, TOKEN)
    who = page.get_by_test_id("who")
    expect(who).to_contain_text("Demo")
    expect(who).to_contain_text("admin@demo.example")
    expect(page.get_by_text("No jobs yet")).to_be_visible()
    # The token is in session storage, never in the page.
    assert TOKEN not in page.content()


def test_wizard_creates_a_job_with_an_inline_s3_authorization(page: Page, stack: Stack) -> None:
    page.locator(".empty").get_by_role("link", name="Create job").click()
    page.get_by_text("Amazon S3", exact=True).click()
    shot(page, "wizard-provider")
    page.get_by_role("button", name="Next").click()
    to_new_authorization(page, "S3 file import (CSV / JSON Lines)", "AWS access keys")
    page.get_by_label("Authorization label *").fill("Demo bucket keys")
    page.get_by_label("Access Key Id *").fill(ACCESS_KEYS["access_key_id"])
    page.get_by_label("Secret Access Key *").fill("too-short")
    page.get_by_role("button", name="Check and continue").click()
    # The API's field error is shown at the field.
    expect(page.locator(".field.invalid")).to_contain_text("Secret Access Key")
    page.get_by_label("Secret Access Key *").fill(ACCESS_KEYS["secret_access_key"])
    page.get_by_label("Bucket", exact=True).fill("switchyard-demo")
    page.get_by_role("button", name="Check and continue").click()
    expect(page.get_by_role("heading", name="Configure")).to_be_visible()
    page.get_by_label("Job label *").fill("Demo profiles import")
    page.get_by_label("Bucket *").fill("switchyard-demo")
    # Live choices come through the new authorization.
    prefix_row = page.locator(".field", has=page.get_by_label("Prefix"))
    prefix_row.get_by_role("button", name="Load choices").click()
    # The choices show as a select (not a hidden list behind an empty box).
    expect(prefix_row).to_contain_text("1 choice")
    expect(page.get_by_role("combobox", name="Prefix")).to_be_visible()
    page.get_by_label("Prefix").select_option("imports/")
    page.get_by_text("Every N minutes").click()
    page.get_by_label("Every (minutes)").fill("60")
    page.get_by_label("Every (minutes)").blur()
    shot(page, "wizard-configure")
    # Back and forward keep what was typed.
    page.get_by_role("button", name="Back").click()
    expect(page.get_by_role("heading", name="Authorization")).to_be_visible()
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_label("Job label *")).to_have_value("Demo profiles import")
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("heading", name="Review")).to_be_visible()
    page.get_by_role("button", name="Create job").click()
    expect(page.get_by_test_id("job-title")).to_have_text("Demo profiles import")
    STATE["job"] = page.url.rsplit("/", 1)[-1]
    # The first run completes: the history shows its counts and the chart its data.
    expect(page.get_by_test_id("runs")).to_contain_text("succeeded", timeout=60_000)
    expect(page.get_by_test_id("runs")).to_contain_text("200")
    expect(page.get_by_test_id("chart-totals")).to_contain_text("added: 200", timeout=10_000)
    assert ACCESS_KEYS["secret_access_key"] not in page.content()
    shot(page, "job-summary")
    assert_accessible(page)


def test_job_actions_and_inline_edit(page: Page, stack: Stack) -> None:
    badge = page.locator("h1 + .badge")
    expect(badge).to_contain_text("sleeping")
    page.get_by_role("button", name="Pause").click()
    expect(badge).to_contain_text("paused")
    # Resume says first what it does (this job has no start time: it runs at once).
    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_test_id("resume-what")).to_contain_text("A run starts as soon as you resume")
    page.get_by_role("dialog").get_by_role("button", name="Resume job").click()
    expect(badge).to_contain_text(re.compile("sleeping|running"))
    # Resume queues a run; a run now while it runs would be ignored (logged), so wait for it.
    runs = page.get_by_test_id("runs").locator("tbody tr")

    def trigger(name: str) -> Any:
        return runs.filter(has=page.locator("td:nth-child(2)", has_text=re.compile(f"^{name}$")))

    expect(trigger("resume")).to_contain_text("succeeded", timeout=60_000)
    expect(badge).to_contain_text("sleeping")
    page.get_by_role("button", name="Run now").click()
    run_now = trigger("run")
    expect(run_now).to_have_count(1, timeout=60_000)
    expect(run_now).to_contain_text("succeeded", timeout=60_000)
    page.get_by_role("button", name="Edit label").click()
    page.get_by_label("Label").fill("Demo import (renamed)")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_test_id("job-title")).to_have_text("Demo import (renamed)")
    # Config edit: the API's error shows at the field, then a valid change is saved.
    page.get_by_role("button", name="Edit configuration").click()
    page.get_by_label("Bucket *").fill("Not A Bucket")
    page.get_by_role("button", name="Save configuration").click()
    expect(page.locator(".field.invalid")).to_contain_text("Bucket")
    page.get_by_label("Bucket *").fill("switchyard-demo")
    page.get_by_label("Csv Delimiter").fill(";")
    page.get_by_role("button", name="Save configuration").click()
    expect(page.get_by_role("button", name="Save configuration")).to_have_count(0)
    expect(page.locator("dl.meta").nth(1)).to_contain_text(";")
    page.get_by_role("link", name="← Jobs").click()
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible()
    expect(page.locator("table.data")).to_contain_text("Demo import (renamed)")
    shot(page, "jobs-dashboard")


def test_change_of_authorization_refused_then_accepted(page: Page, stack: Stack) -> None:
    queue = api(stack, "POST", "/authorizations", {"provider": "amazon_sqs", "method": "access_keys",
                                          "label": "Queue keys", "credentials": ACCESS_KEYS})
    other = api(stack, "POST", "/authorizations", {
        "provider": "amazon_s3", "method": "access_keys", "label": "Second bucket keys",
        "credentials": {**ACCESS_KEYS, "bucket": "switchyard-demo"}})
    page.goto(f"{stack.base}/#/jobs/{STATE['job']}")
    page.get_by_role("button", name="Change authorization").click()
    box = page.get_by_test_id("change-auth")
    box.get_by_label("New authorization").select_option(value=queue["id"])
    box.get_by_role("button", name="Check (dry run)").click()
    expect(box.get_by_test_id("dry-run")).to_contain_text("refused")
    expect(box.get_by_test_id("dry-run")).to_contain_text("amazon_sqs")
    expect(box.get_by_role("button", name="Confirm change")).to_have_count(0)
    shot(page, "change-authorization-refused")
    box.get_by_label("New authorization").select_option(value=other["id"])
    box.get_by_role("button", name="Check (dry run)").click()
    expect(box.get_by_test_id("dry-run")).to_contain_text("allowed")
    box.get_by_role("button", name="Confirm change").click()
    expect(page.locator("dl.meta.panel")).to_contain_text("Second bucket keys")
    STATE["auth"] = other["id"]


def test_delete_authorization_refused_then_allowed(page: Page, stack: Stack) -> None:
    page.goto(f"{stack.base}/#/authorizations")
    expect(page.locator("table.data")).to_contain_text("Second bucket keys")
    shot(page, "authorizations-dashboard")
    page.goto(f"{stack.base}/#/authorizations/{STATE['auth']}")
    expect(page.get_by_test_id("delete-blocked")).to_contain_text("Demo import (renamed)")
    expect(page.get_by_role("button", name="Delete")).to_be_disabled()
    page.get_by_role("button", name="Check now").click()
    expect(page.get_by_test_id("health-badge").first).to_have_text("healthy")
    shot(page, "authorization-summary")
    assert_accessible(page)
    # Delete the job (with confirmation), then the authorization can go.
    page.get_by_test_id("delete-blocked").get_by_role("link").click()
    page.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete job").click()
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    page.goto(f"{stack.base}/#/authorizations/{STATE['auth']}")
    page.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete authorization").click()
    expect(page.get_by_role("heading", name="Authorizations")).to_be_visible()
    expect(page.locator("main")).not_to_contain_text("Second bucket keys")
    page.goto(f"{stack.base}/#/audit")
    expect(page.locator("table.data")).to_contain_text("deleted")
    shot(page, "audit-log")


def test_an_observer_sees_no_edit_buttons(browser: Browser, stack: Stack) -> None:
    user = api(stack, "POST", "/users", {"email": "viewer@demo.example", "name": "Viewer", "role": "observer"})
    token = api(stack, "POST", "/tokens", {"label": "viewer", "user_id": user["id"]})["token"]
    job = api(stack, "POST", "/jobs", {
        "provider": "amazon_s3", "job_type": "import", "workflow": "s3_file_import", "label": "Observed job",
        "authorization": {"method": "access_keys", "label": "Observed keys", "credentials": ACCESS_KEYS},
        "config": {"bucket": "switchyard-demo", "prefix": "imports/"}, "start": False})
    with signed_in_as(browser, stack, token, "observer") as pg:
        expect(pg.locator("table.data")).to_contain_text("Observed job")
        expect(pg.get_by_role("link", name="Create job")).to_have_count(0)
        expect(pg.get_by_role("link", name="Tokens")).to_have_count(0)
        pg.goto(f"{stack.base}/#/jobs/{job['id']}")
        expect(pg.get_by_test_id("job-title")).to_have_text("Observed job")
        # The owner (the admin) by name, read through GET /users/names; never an e-mail.
        admin = api(stack, "GET", "/me")["user"]
        expect(pg.locator("dl.meta", has_text="Owner")).to_contain_text(f"Owner{admin['name']}")
        assert admin["email"] not in pg.locator("dl.meta", has_text="Owner").inner_text()
        for name in ("Pause", "Resume", "Run now", "Delete", "Change authorization", "Edit label"):
            expect(pg.get_by_role("button", name=name)).to_have_count(0)
        pg.goto(f"{stack.base}/#/authorizations/{job['authorization_id']}")
        expect(pg.get_by_role("heading", name="Observed keys")).to_be_visible()
        for name in ("Check now", "Rotate credentials", "Delete"):
            expect(pg.get_by_role("button", name=name)).to_have_count(0)
        shot(pg, "observer-authorization")


# Every form control has an accessible name, and text meets WCAG AA contrast (4.5:1, or
# 3:1 for large text) against the first opaque background behind it. Disabled controls
# are exempt (WCAG 1.4.3), as is text the user cannot see.
A11Y_JS = """() => {
  const out = [];
  for (const el of document.querySelectorAll('input, select, textarea, button')) {
    if (el.type === 'hidden' || el.closest('datalist')) continue;
    const named = (el.labels && el.labels.length) || el.getAttribute('aria-label')
      || el.getAttribute('aria-labelledby') || (el.tagName === 'BUTTON' && el.textContent.trim());
    if (!named) out.push('no accessible name: ' + el.outerHTML.slice(0, 100));
  }
  const rgb = (s) => (s.match(/[\\d.]+/g) || ['0', '0', '0']).map(Number);
  const lum = (c) => c.slice(0, 3).map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
    .reduce((a, v, i) => a + v * [0.2126, 0.7152, 0.0722][i], 0);
  const bg = (el) => { for (; el; el = el.parentElement) { const c = rgb(getComputedStyle(el).backgroundColor);
    if (c.length < 4 || c[3] > 0) return c; } return [255, 255, 255]; };
  for (const el of document.querySelectorAll('body *')) {
    if (![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
    if (!el.getClientRects().length || el.closest(':disabled, .sr, .skip, option, datalist')) continue;
    const st = getComputedStyle(el);
    const a = lum(rgb(st.color)), b = lum(bg(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const size = parseFloat(st.fontSize), large = size >= 24 || (size >= 18.66 && Number(st.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) out.push(`contrast ${ratio.toFixed(2)}: <${el.tagName.toLowerCase()} class="${el.className}"> ${el.textContent.trim().slice(0, 40)}`);
  }
  return out;
}"""


def assert_accessible(page: Page) -> None:
    problems = page.evaluate(A11Y_JS)
    assert not problems, "\n".join(problems)


def assert_closes(popup: Page) -> None:
    """The SPA closes the popup; the browser tells Playwright a moment later, so wait for it."""
    if not popup.is_closed():
        popup.wait_for_event("close", timeout=10_000)  # raises if the popup stays open
    assert popup.is_closed()


def test_oauth_connects_mailchimp_in_a_popup(page: Page, stack: Stack, mailchimp: FakeMailchimp) -> None:
    signed_in(page, stack)  # also when it runs alone
    page.goto(f"{stack.base}/#/authorizations/new")
    page.get_by_label("Provider").select_option(value="mailchimp")
    page.get_by_label("Method").select_option(value="oauth")
    page.get_by_label("Label", exact=True).fill("Newsletter (OAuth)")
    assert_accessible(page)
    # GIVEN Mailchimp refuses the code exchange: the callback's error shows here, nothing is created.
    mailchimp.client_secret = "rotated-elsewhere"
    with page.expect_popup() as refused:
        page.get_by_role("button", name="Connect with Mailchimp").click()
    expect(page.locator(".error")).to_contain_text("Mailchimp refused the authorization code")
    assert_closes(refused.value)
    assert not [a for a in api(stack, "GET", "/authorizations?provider=mailchimp")]
    # WHEN the user consents (the fake grants at once) THEN the new authorization opens.
    mailchimp.client_secret = LOCAL_CLIENT[1]
    with page.expect_popup() as granted:
        page.get_by_role("button", name="Connect with Mailchimp").click()
    expect(page.get_by_role("heading", name="Newsletter (OAuth)")).to_be_visible()
    assert_closes(granted.value)
    expect(page.get_by_test_id("health-badge").first).to_have_text("healthy")
    expect(page.locator("dl.meta")).to_contain_text("OAuth 2.0")
    assert mailchimp.oauth_token not in page.content()
    shot(page, "oauth-authorization")


def test_wizard_connects_gtm_inline_and_keeps_the_schedule(page: Page, stack: Stack, google: FakeGoogle) -> None:
    signed_in(page, stack)  # also when it runs alone
    page.goto(f"{stack.base}/#/jobs/new")
    choose_provider(page, "Google Tag Manager", keyboard=True)
    to_new_authorization(page, "Install the Switchyard web tag", "OAuth 2.0")
    page.get_by_label("Authorization label").fill("Acme GTM")
    with page.expect_popup():
        page.get_by_role("button", name="Connect with Google Tag Manager").click()
    expect(page.get_by_role("heading", name="Configure")).to_be_visible()
    page.get_by_label("Job label *").fill("Install web tag")
    # Live choices through the new authorization, the container's narrowed by the account.
    for field, value in (("account_id", "6001"), ("container_id", "7001")):
        row = page.locator(".field", has=page.locator(f"#cfg-{field}"))
        row.get_by_role("button", name="Load choices").click()
        expect(row).to_contain_text("1 choice")
        page.locator(f"#cfg-{field}").select_option(value)
    page.locator("#cfg-workspace_id").fill("1")
    page.get_by_text("Daily", exact=True).click()
    page.get_by_label("At", exact=True).fill("07:30")
    # The time zone is a searchable select of IANA zones: typing narrows it, nothing else can be chosen.
    page.get_by_label("Search time zones").fill("paris")
    expect(page.get_by_role("combobox", name="Time zone").locator("option")).to_have_count(1)
    expect(page.get_by_label("Time zone", exact=True)).to_have_value("Europe/Paris")
    page.get_by_label("Quiet hours (no run starts)").check()
    page.get_by_label("Quiet from").fill("22:00")
    page.get_by_label("Quiet until").fill("06:00")
    assert_accessible(page)
    page.get_by_role("button", name="Next").click()
    described = "daily at 07:30 (Europe/Paris), quiet 22:00–06:00"
    expect(page.locator("dl.meta")).to_contain_text(described)
    page.get_by_text("Stage (create paused, start later)").click()
    page.get_by_role("button", name="Create job").click()
    expect(page.get_by_test_id("job-title")).to_have_text("Install web tag")
    expect(page.get_by_test_id("job-schedule")).to_have_text(described)
    job_id = page.url.rsplit("/", 1)[-1]
    # An edit of the configuration alone keeps the time zone and quiet hours ...
    page.get_by_role("button", name="Edit configuration").click()
    expect(page.get_by_label("Time zone", exact=True)).to_have_value("Europe/Paris")
    expect(page.get_by_label("Quiet from")).to_have_value("22:00")
    page.get_by_label("Tag Name").fill("Switchyard tag v2")
    page.get_by_role("button", name="Save configuration").click()
    expect(page.get_by_test_id("job-config")).to_contain_text("Switchyard tag v2")
    expect(page.get_by_test_id("job-schedule")).to_have_text(described)
    # ... and a schedule edit changes only what was changed.
    page.get_by_role("button", name="Edit configuration").click()
    page.get_by_label("Time zone", exact=True).select_option("America/New_York")
    page.get_by_role("button", name="Save configuration").click()
    expect(page.get_by_test_id("job-schedule")).to_have_text("daily at 07:30 (America/New_York), quiet 22:00–06:00")
    schedule = api(stack, "GET", f"/jobs/{job_id}")["schedule"]
    assert schedule["timezone"] == "America/New_York" and schedule["quiet_hours"] == {"start": "22:00", "end": "06:00"}
    # A metric threshold rule: the API's refusal is shown, then a valid rule is listed.
    page.get_by_role("button", name="Add alert rule").click()
    page.get_by_label("Min", exact=True).fill("50")
    page.get_by_label("Max", exact=True).fill("10")
    page.get_by_role("button", name="Save rule").click()
    expect(page.locator("[aria-labelledby=rules-h] .error")).to_contain_text("min")
    page.get_by_label("Max", exact=True).fill("")
    page.get_by_role("button", name="Save rule").click()
    expect(page.get_by_test_id("alert-rules")).to_contain_text("added")
    assert [(r["metric"], r["min"], r["max"]) for r in api(stack, "GET", f"/jobs/{job_id}/alert-rules")] == [("added", 50, None)]
    shot(page, "job-schedule")


def test_oauth_falls_back_to_a_redirect_when_popups_are_blocked(browser: Browser, stack: Stack,
                                                                 mailchimp: FakeMailchimp) -> None:
    popup_blocker = "window.open = () => null;"
    with signed_in_as(browser, stack, TOKEN, "admin", init_script=popup_blocker) as pg:
        # GIVEN Mailchimp refuses the code exchange: the callback sends the page back to the
        # SPA with the error (not the API's JSON), nothing is created.
        mailchimp.client_secret = "rotated-elsewhere"
        pg.goto(f"{stack.base}/#/authorizations/new")
        pg.get_by_label("Provider").select_option(value="mailchimp")
        pg.get_by_label("Method").select_option(value="oauth")
        pg.get_by_label("Label", exact=True).fill("Refused (redirect)")
        pg.get_by_role("button", name="Connect with Mailchimp").click()
        expect(pg.get_by_test_id("oauth-error")).to_contain_text("Mailchimp refused the authorization code")
        assert pg.url.startswith(f"{stack.base}/#/authorizations?oauth_error=oauth.exchange_failed")
        assert LOCAL_CLIENT[1] not in pg.url and "rotated-elsewhere" not in pg.url
        assert not [a for a in api(stack, "GET", "/authorizations?provider=mailchimp") if "redirect" in a["label"]]
        assert_accessible(pg)
        shot(pg, "oauth-redirect-error")
        pg.get_by_role("button", name="Dismiss").click()
        expect(pg.get_by_test_id("oauth-error")).to_have_count(0)
        pg.goto(f"{stack.base}/#/jobs/new")
        choose_provider(pg, "Mailchimp")
        to_new_authorization(pg, "Mailchimp list import", "OAuth 2.0")
        pg.get_by_label("Authorization label").fill("Newsletter (redirect)")
        # A refusal in the wizard: back at the same step, answers kept, the error shown.
        pg.get_by_role("button", name="Connect with Mailchimp").click()
        expect(pg.locator(".error")).to_contain_text("Mailchimp refused the authorization code")
        expect(pg.get_by_label("Authorization label")).to_have_value("Newsletter (redirect)")
        mailchimp.client_secret = LOCAL_CLIENT[1]
        pg.get_by_role("button", name="Connect with Mailchimp").click()
        # The whole page went to Mailchimp and came back: the wizard goes on where it was,
        # with the new authorization (live choices are read through it).
        expect(pg.get_by_role("heading", name="Configure")).to_be_visible()
        row = pg.locator(".field", has=pg.locator("#cfg-list_id"))
        row.get_by_role("button", name="Load choices").click()
        expect(row).to_contain_text("1 choice")
        expect(pg.locator("#cfg-list_id")).to_have_js_property("tagName", "SELECT")
        pg.get_by_role("button", name="Back").click()
        expect(pg.get_by_role("radio", name=re.compile("Newsletter \\(redirect\\)"))).to_be_checked()


def test_audience_filter_builder_with_size_preview(page: Page, stack: Stack) -> None:
    rows = list(csv.DictReader(io.StringIO(profiles_csv().decode())))
    expected = sum(r["plan"] in ("pro", "enterprise") and r["country"] in ("FR", "DE") for r in rows)
    assert 0 < expected < len(rows)
    page.goto(f"{stack.base}/#/audiences")
    page.get_by_role("button", name="New audience").click()
    page.get_by_label("Name *").fill("Pro customers in France or Germany")
    page.get_by_role("button", name="Add condition").click()
    # The field box suggests the fields the import wrote (plan, country), not only the usual ones.
    for imported in ("plan", "country", "first_name"):
        expect(page.locator(f"#fb-fields option[value='{imported}']")).to_have_count(1)
    expect(page.locator("#fb-filter-all-0-field")).to_have_attribute("list", "fb-fields")
    page.locator("#fb-filter-all-0-op").select_option("in")
    page.locator("#fb-filter-all-0-value").fill("pro, enterprise")
    # An incomplete condition: the API's error is shown at it.
    page.get_by_role("button", name="Preview size").click()
    expect(page.locator(".fb-cond.invalid")).to_contain_text("field")
    page.locator("#fb-filter-all-0-field").fill("plan")
    page.get_by_role("button", name="Add group").click()
    page.locator("#fb-filter-all-1-any-0-field").fill("country")
    page.locator("#fb-filter-all-1-any-0-value").fill("FR")
    page.locator(".fb-group.depth-2").get_by_role("button", name="Add condition").click()
    page.locator("#fb-filter-all-1-any-1-field").fill("country")
    page.locator("#fb-filter-all-1-any-1-value").fill("DE")
    page.get_by_role("button", name="Preview size").click()
    expect(page.get_by_test_id("audience-size")).to_contain_text(f"{expected} profiles match")
    assert_accessible(page)
    shot(page, "audience-builder")
    page.get_by_role("button", name="Create audience").click()
    table = page.locator("table.data")
    expect(table).to_contain_text("Pro customers in France or Germany")
    # The list says the filter in words and how many profiles it selects now.
    row = table.locator("tbody tr", has_text="Pro customers in France or Germany")
    expect(row.get_by_test_id("audience-filter")).to_have_text(
        "plan is one of pro, enterprise and (country is FR or country is DE)")
    expect(row.get_by_test_id("audience-size-cell")).to_have_text(f"{expected:,}")
    expect(table.locator("th", has_text="Size")).to_have_count(1)
    saved = api(stack, "GET", "/audiences")[0]["filter"]
    assert saved == {"all": [{"field": "plan", "op": "in", "value": ["pro", "enterprise"]},
                             {"any": [{"field": "country", "op": "equals", "value": "FR"},
                                      {"field": "country", "op": "equals", "value": "DE"}]}]}
    # Editing opens the saved filter in the builder; the raw JSON view is one click away.
    page.get_by_role("button", name="Edit Pro customers in France or Germany").click()
    expect(page.locator("#fb-filter-all-1-any-1-value")).to_have_value("DE")
    page.get_by_label("Edit as JSON").check()
    expect(page.get_by_label("Filter (JSON)")).to_have_value(re.compile('"enterprise"'))
    page.get_by_role("button", name="Cancel").click()


def test_alert_settings_webhooks_emails_and_a_test_alert(page: Page, stack: Stack) -> None:
    page.goto(f"{stack.base}/#/alerts")
    page.get_by_label("Add an address").fill("ops@demo.example")
    page.get_by_label("Add an address").press("Enter")
    expect(page.get_by_role("status")).to_contain_text("Added ops@demo.example")
    page.get_by_label("Add a webhook URL").fill("http://127.0.0.1:9/switchyard-alerts")
    page.get_by_label("Add a webhook URL").press("Enter")
    # The signing secret is shown once, in the answer that added the first webhook ...
    secret_box = page.get_by_test_id("signing-secret")
    expect(secret_box).to_be_visible()
    secret = secret_box.locator("code").first.inner_text()
    assert len(secret) >= 16
    assert_accessible(page)
    # ... and never again.
    page.reload()
    # the webhook is shown by host: its URL (which may carry a token) is kept secret
    expect(page.get_by_text("127.0.0.1", exact=True)).to_be_visible()
    assert "switchyard-alerts" not in page.content()
    expect(page.get_by_test_id("signing-secret")).to_have_count(0)
    assert secret not in page.content()
    shot(page, "alerts")  # without the secret: screenshots are committed
    page.get_by_role("button", name="Send test alert").click()
    expect(page.get_by_role("status")).to_contain_text("Test alert sent")
    page.get_by_role("button", name="Remove webhook 127.0.0.1").click()
    expect(page.get_by_role("status")).to_contain_text("Webhook removed")
    assert api(stack, "GET", "/alerts")["webhooks"] == []
    assert api(stack, "GET", "/alerts")["emails"] == ["ops@demo.example"]


def test_admin_issues_and_revokes_a_token(page: Page, stack: Stack) -> None:
    page.goto(f"{stack.base}/#/tokens")
    # Both lists above the form have their answers before its button is clicked
    expect(page.get_by_role("region", name="Users").locator("tbody tr", has_text="admin@demo.example")).to_be_visible()
    expect(page.locator("table.data").first.locator("tbody tr").first).to_be_visible()
    page.get_by_label("E-mail *").fill("analyst@demo.example")
    page.get_by_label("Name *").fill("Ana Lyst")
    page.get_by_label("Role", exact=True).select_option("data_manager")
    page.get_by_role("button", name="Add user").click()
    expect(page.get_by_label("For user")).to_have_value(re.compile(".+"))
    page.get_by_label("Label *").fill("CI script")
    page.get_by_role("button", name="Issue token").click()
    issued = page.get_by_test_id("issued-token").locator("code").inner_text()
    status, _ = stack.call("GET", "/api/v1/me", token=issued)
    assert status == 200
    row = page.locator("tr", has_text="CI script")
    expect(row).to_contain_text("Ana Lyst")
    expect(row).to_contain_text("data_manager")
    assert_accessible(page)
    page.get_by_role("button", name="I copied it").click()
    assert issued not in page.content()
    shot(page, "tokens")  # without the token: screenshots are committed
    page.get_by_role("button", name="Revoke CI script").click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke token").click()
    expect(page.locator("tr", has_text="CI script")).to_have_count(0)
    status, _ = stack.call("GET", "/api/v1/me", token=issued)
    assert status == 401


def test_jobs_search_sort_and_a_laptop_screen(page: Page, stack: Stack) -> None:
    # A small laptop screen: no screen scrolls sideways (wide tables scroll in their box).
    page.set_viewport_size({"width": 1024, "height": 700})
    try:
        page.goto(f"{stack.base}/#/jobs")
        rows = page.locator("table.data tbody tr")
        expect(rows.first).to_be_visible()
        assert rows.count() >= 2
        page.get_by_label("Search by label").fill("WEB TAG")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("Install web tag")
        page.get_by_label("Search by label").fill("")
        page.get_by_role("button", name="Label", exact=True).click()
        expect(page.locator("th[aria-sort=ascending]")).to_have_text("Label")
        labels = rows.locator("td:first-child").all_inner_texts()
        assert labels == sorted(labels) and len(labels) >= 2
        # Each screen is measured once its data is shown: a hash route is the same document, so
        # Playwright's "networkidle" would be the first load's, not this screen's.
        loaded = {"#/jobs": "table.data tbody tr", "#/authorizations": "table.data tbody tr",
                  "#/audiences": "table.data tbody tr", "#/audit": "[data-testid=audit] tbody tr",
                  "#/jobs/new": "[role=radiogroup] label.tile"}
        for route, shown in loaded.items():
            page.goto(f"{stack.base}/{route}")
            expect(page.locator("main h1")).to_be_visible()
            expect(page.locator(shown).first).to_be_visible()
            expect(page.locator(".loading")).to_have_count(0)
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), route
            assert_accessible(page)
    finally:
        page.set_viewport_size({"width": 1366, "height": 900})


# ---- Dashboards, wizard fields, job and authorization summaries, audit filters ----------
# These flows seed what they need through the API (unique labels, their own authorizations),
# so they pass after the tests above or alone.

def aws_client(stack: Stack, service: str) -> Any:
    """A boto3 client on the stack's moto server (a test's side door to seed S3 and SQS)."""
    import boto3

    return boto3.client(service, endpoint_url=f"http://127.0.0.1:{stack.aws_port}", region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def s3_auth(stack: Stack, label: str, bucket: str = "switchyard-demo", keys: dict[str, str] = ACCESS_KEYS) -> Any:
    return api(stack, "POST", "/authorizations", {"provider": "amazon_s3", "method": "access_keys", "label": label,
                                                  "credentials": {**keys, "bucket": bucket}})


def s3_import(stack: Stack, auth_id: str, label: str, prefix: str, start: bool = False, bucket: str = "switchyard-demo") -> Any:
    return api(stack, "POST", "/jobs", {"provider": "amazon_s3", "job_type": "import", "workflow": "s3_file_import",
                                        "label": label, "authorization_id": auth_id, "start": start,
                                        "config": {"bucket": bucket, "prefix": prefix}})


def settled(page: Page) -> None:
    """The jobs list shows the answer to the current filters and page (not the last one's)."""
    expect(page.get_by_test_id("jobs-list")).to_have_attribute("aria-busy", "false")


def labels(page: Page) -> list[str]:
    return page.locator("table.data tbody tr td:first-child").all_inner_texts()


def test_jobs_dashboard_filters_cursor_paging_and_provider_marks(page: Page, stack: Stack) -> None:
    from concurrent.futures import ThreadPoolExecutor

    signed_in(page, stack)
    # GIVEN 27 jobs on one authorization (25 staged imports, one run once, a staged
    # export), and an SQS export on another
    auth = s3_auth(stack, "Paging keys")
    audience = api(stack, "POST", "/audiences", {"name": "Paging audience", "filter": {"all": [{"field": "plan", "op": "equals", "value": "pro"}]}})
    sqs = aws_client(stack, "sqs")
    queue_url = sqs.create_queue(QueueName="spa-paging")["QueueUrl"]
    queue_auth = api(stack, "POST", "/authorizations", {"provider": "amazon_sqs", "method": "access_keys",
                                                        "label": "Paging queue keys", "credentials": ACCESS_KEYS})
    ran = s3_import(stack, auth["id"], "Paging import 01", "spa-nothing-here/")
    ran_steps = RunHold(stack, ran["id"])  # let go at once: it only counts the run's deliveries
    ran_steps.let_go()
    api(stack, "POST", f"/jobs/{ran['id']}/resume")  # runs meanwhile
    # Two at a time: moto's transactions take no lock, so many concurrent creates on one
    # authorization can fail in moto in ways DynamoDB does not (tests/README.md).
    with ThreadPoolExecutor(2) as pool:
        staged = list(pool.map(lambda i: s3_import(stack, auth["id"], f"Paging import {i:02}", "imports/"), range(2, 27)))
    export = api(stack, "POST", "/jobs", {"provider": "amazon_s3", "job_type": "export", "workflow": "s3_audience_export",
                                          "label": "Paging export", "authorization_id": auth["id"], "start": False,
                                          "config": {"bucket": "switchyard-demo", "audience_id": audience["id"]}})
    api(stack, "POST", "/jobs", {"provider": "amazon_sqs", "job_type": "export", "workflow": "sqs_audience_export",
                                 "label": "Paging queue export", "authorization_id": queue_auth["id"], "start": False,
                                 "config": {"queue_url": queue_url, "audience_id": audience["id"]}})
    # (no schedule: after its one run, one step over an empty prefix, it is completed)
    ran_steps.delivered(1)
    assert api(stack, "GET", f"/jobs/{ran['id']}")["status"] == "completed"
    ours = {j["label"] for j in staged} | {ran["label"], export["label"]}
    assert len(ours) == 27
    page.goto(f"{stack.base}/#/jobs")
    rows = page.locator("table.data tbody tr")
    expect(rows.first).to_be_visible()
    # WHEN filtered by the authorization THEN its jobs page by 25 (the API's cursor): the
    # next page holds the other 2, and Previous comes back to the first.
    page.get_by_role("combobox", name="Authorization", exact=True).select_option(label="Paging keys")
    settled(page)
    expect(rows).to_have_count(25)
    first = labels(page)
    next_btn, prev_btn = page.get_by_role("button", name="Next page"), page.get_by_role("button", name="Previous page")
    expect(prev_btn).to_be_disabled()
    next_btn.click()
    settled(page)
    expect(rows).to_have_count(2)
    second = labels(page)
    assert set(first) | set(second) == ours and not set(first) & set(second)
    expect(next_btn).to_be_disabled()
    prev_btn.click()
    settled(page)
    expect(rows).to_have_count(25)
    assert labels(page) == first
    # Each row shows its provider: its initials as a logo, then its name.
    mark = rows.first.locator(".provider")
    expect(mark.locator(".logo")).to_have_text("S3")
    expect(mark.locator(".logo")).to_have_attribute("aria-hidden", "true")
    expect(mark).to_contain_text("Amazon S3")
    # Type: exports only.
    page.get_by_role("combobox", name="Type", exact=True).select_option("export")
    settled(page)
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Paging export")
    page.get_by_role("combobox", name="Type", exact=True).select_option("")
    settled(page)
    # Status: the one that ran is completed, the others are staged (paused).
    page.get_by_role("combobox", name="Status", exact=True).select_option("completed")
    settled(page)
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Paging import 01")
    page.get_by_role("combobox", name="Status", exact=True).select_option("paused")
    settled(page)
    expect(rows).to_have_count(25)
    expect(page.locator("table.data")).not_to_contain_text("Paging import 01")
    expect(rows.locator("[data-testid=status-badge]").filter(has_not_text="paused")).to_have_count(0)
    page.get_by_role("combobox", name="Status", exact=True).select_option("")
    settled(page)
    # Provider (any authorization): only Amazon SQS jobs, with their own mark.
    page.get_by_role("combobox", name="Authorization", exact=True).select_option("")
    settled(page)
    page.get_by_role("combobox", name="Provider", exact=True).select_option(label="Amazon SQS")
    settled(page)
    expect(page.locator("table.data")).to_contain_text("Paging queue export")
    expected = {j["label"] for j in api(stack, "GET", "/jobs?provider=amazon_sqs&limit=200")}
    assert set(labels(page)) == expected
    expect(rows.locator(".provider .logo").filter(has_not_text="SQ")).to_have_count(0)
    # With filters that match nothing, the page says so.
    page.get_by_role("combobox", name="Status", exact=True).select_option("failed")
    settled(page)
    expect(page.get_by_text("No job matches these filters.")).to_be_visible()
    page.get_by_role("combobox", name="Provider", exact=True).select_option("")
    settled(page)
    page.get_by_role("combobox", name="Status", exact=True).select_option("")
    settled(page)
    # The authorizations dashboard shows what uses each: jobs by status, with the same marks.
    page.goto(f"{stack.base}/#/authorizations")
    row = page.locator("table.data tbody tr", has=page.get_by_role("link", name="Paging keys", exact=True))
    expect(row.locator("td").nth(4)).to_have_text(re.compile(r"^27 jobs \((?=.*26 paused)(?=.*1 completed).*\)$"))
    expect(row.locator(".provider .logo")).to_have_text("S3")


def test_wizard_audience_picker_and_field_mapping(page: Page, stack: Stack) -> None:
    signed_in(page, stack)
    auth = s3_auth(stack, "Wizard fields keys")
    audience = api(stack, "POST", "/audiences", {"name": "Wizard picker audience", "filter": {"all": [{"field": "plan", "op": "equals", "value": "enterprise"}]}})

    def start(workflow: str) -> None:
        page.goto(f"{stack.base}/#/jobs/new")
        page.get_by_text("Amazon S3", exact=True).click()
        page.get_by_role("button", name="Next").click()
        page.get_by_text(workflow).click()
        page.get_by_role("button", name="Next").click()
        page.get_by_role("radio", name=re.compile("Wizard fields keys")).check()
        page.get_by_role("button", name="Next").click()
        expect(page.get_by_role("heading", name="Configure")).to_be_visible()

    def stage() -> str:
        page.get_by_role("button", name="Next").click()
        page.get_by_text("Stage (create paused, start later)").click()
        page.get_by_role("button", name="Create job").click()
        expect(page.get_by_test_id("job-title")).to_be_visible()
        return page.url.rsplit("/", 1)[-1]

    # Export: the audience is picked by name; the job keeps its id. Fields are typed key by
    # key (a comma typed in a list field stays).
    start("S3 audience export")
    page.get_by_label("Job label *").fill("Picked audience export")
    picker = page.get_by_label("Audience Id *")
    expect(picker.locator("option", has_text="Wizard picker audience")).to_have_count(1)
    picker.select_option(label="Wizard picker audience")
    page.get_by_label("Bucket *").fill("switchyard-demo")
    page.get_by_label("Fields", exact=True).fill("")
    page.get_by_label("Fields", exact=True).press_sequentially("email, first_name")
    expect(page.get_by_label("Fields", exact=True)).to_have_value("email, first_name")
    shot(page, "wizard-export-audience")
    export_id = stage()
    config = api(stack, "GET", f"/jobs/{export_id}")["config"]
    assert config["audience_id"] == audience["id"] and config["fields"] == ["email", "first_name"]
    # The job page: the audience by name, the fields as a list in words.
    expect(page.get_by_test_id("config-audience_id")).to_have_text("Wizard picker audience")
    expect(page.get_by_test_id("config-fields")).to_have_text("email, first_name")
    # Edit configuration picks the audience by name too (no free-text id box).
    page.get_by_role("button", name="Edit configuration").click()
    edit_picker = page.locator("#edit-cfg-audience_id")
    expect(edit_picker).to_have_js_property("tagName", "SELECT")
    expect(edit_picker.locator("option:checked")).to_have_text("Wizard picker audience")
    page.get_by_role("button", name="Cancel").click()
    assert api(stack, "GET", "/jobs?authorization_id=" + auth["id"])[0]["label"] == "Picked audience export"
    # Import: the field mapping, typed line by line, is the job's field_mapping.
    start("S3 file import (CSV / JSON Lines)")
    page.get_by_label("Job label *").fill("Mapped import")
    page.get_by_label("Bucket *").fill("switchyard-demo")
    mapping = page.get_by_label("Field Mapping")
    mapping.press_sequentially("Nom=last_name\nVille=city")
    expect(mapping).to_have_value("Nom=last_name\nVille=city")
    shot(page, "wizard-field-mapping")
    job_id = stage()
    assert api(stack, "GET", f"/jobs/{job_id}")["config"]["field_mapping"] == {"Nom": "last_name", "Ville": "city"}
    # The job page says the configuration in words: no JSON.
    expect(page.get_by_test_id("config-field_mapping")).to_have_text("Nom → last_name; Ville → city")
    assert "{" not in page.get_by_test_id("job-config").inner_text()
    # Edit configuration loads live choices through the job's authorization, as a select.
    page.get_by_role("button", name="Edit configuration").click()
    row = page.locator(".field", has=page.locator("#edit-cfg-prefix"))
    row.get_by_role("button", name="Load choices").click()
    expect(page.locator("#edit-cfg-prefix")).to_have_js_property("tagName", "SELECT")
    page.locator("#edit-cfg-prefix").select_option("imports/")
    page.get_by_role("button", name="Save configuration").click()
    expect(page.get_by_test_id("config-prefix")).to_have_text("imports/")


def slow_csv(rows: int, valid_every: int) -> bytes:
    """Rows most of which are cheap to skip (no e-mail; a malformed line every 1,000), so a
    run takes several 5,000-record steps without writing many profiles."""
    out = ["email,first_name,plan"]
    for i in range(rows):
        out.append(f"slow{i}@progress.example,P{i},pro" if i % valid_every == 0
                   else "malformed" if i % 1000 == 1 else f",P{i},free")
    return ("\n".join(out) + "\n").encode()


# The run's <progress> value every 100 ms, as the user would see it (test-side, not an app hook).
WATCH_PROGRESS = """() => { window.__progress = []; window.__watch = setInterval(() => {
  const p = document.querySelector('[data-testid=runs] progress'); if (p) window.__progress.push(p.value); }, 100); }"""


class RunHold:
    """Parks one job's run steps in the stack's event loop (devserver/holds.py) until released."""

    WAIT = 120  # seconds the devserver waits for a state that the held run reaches by itself

    def __init__(self, stack: Stack, job_id: str) -> None:
        from chalicelib.config import RUNS_QUEUE

        self.stack = stack
        self.id = self._call("POST", "/holds", {"queue": RUNS_QUEUE, "match": {"job_id": job_id}})["id"]

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        import json
        import urllib.error
        import urllib.request

        req = urllib.request.Request(f"{self.stack.base}/__devserver{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.WAIT + 30) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path}: {exc.code} {exc.read().decode()}") from None
        return json.loads(raw)["data"] if raw else None

    def release(self, count: int) -> None:
        self._call("POST", f"/holds/{self.id}/release", {"count": count})

    def release_all(self) -> None:
        self._call("DELETE", f"/holds/{self.id}")

    def let_go(self) -> None:
        """Hold nothing from now on, but keep counting the deliveries (see `delivered`)."""
        self._call("POST", f"/holds/{self.id}/release", {"all": True})

    def delivered(self, count: int) -> Any:
        """Once `count` released steps were handled (committed) and none is in flight."""
        return self._call("GET", f"/holds/{self.id}?until=delivered&count={count}&timeout={self.WAIT}")

    def parked(self) -> Any:
        """Once the run's next step waits here and nothing released is in flight."""
        return self._call("GET", f"/holds/{self.id}?until=parked&timeout={self.WAIT}")


def shown_percent(run: dict[str, Any]) -> int:
    """What the page's bar shows for the API's run (web/src/jobs.tsx: RunRow, Math.round)."""
    p = run["progress"]
    return min(100, math.floor(100 * p["read"] / p["total"] + 0.5))


def test_job_summary_progress_cost_activity_granularity_and_log_levels(page: Page, stack: Stack) -> None:
    from datetime import datetime, timedelta

    signed_in(page, stack)
    # GIVEN a 20,000-row file (4 steps, 2,000 valid rows, 20 malformed ones), and a staged
    # job whose run steps the event loop holds until this test lets each go
    aws_client(stack, "s3").put_object(Bucket="switchyard-demo", Key="spa-slow/profiles.csv", Body=slow_csv(20_000, 10))
    auth = s3_auth(stack, "Progress keys")
    job = s3_import(stack, auth["id"], "Slow import", "spa-slow/")
    hold = RunHold(stack, job["id"])
    api(stack, "POST", f"/jobs/{job['id']}/resume")
    # WHEN the user watches the job's page while it runs
    page.goto(f"{stack.base}/#/jobs/{job['id']}")
    expect(page.get_by_test_id("job-title")).to_have_text("Slow import")
    page.evaluate(WATCH_PROGRESS)
    runs = page.get_by_test_id("runs").locator("tbody tr")
    bar = runs.first.locator("progress")
    # ... and the run starts and commits its first step, its next one held
    hold.release(1)
    hold.delivered(1)
    shown: list[int] = []
    while True:
        run = api(stack, "GET", f"/jobs/{job['id']}/runs")[0]
        assert run["status"] == "running", run
        hold.parked()
        # THEN the bar shows the committed share, strictly between 0 and its max, never less than before
        percent = shown_percent(run)
        expect(bar).to_have_js_property("value", percent)
        assert bar.evaluate("p => p.max") == 100 and 0 < percent < 100, (percent, run["progress"])
        assert not shown or percent > shown[-1], (shown, percent)
        shown.append(percent)
        if len(shown) == 1:
            shot(page, "job-run-progress")
        if len(shown) == 2:
            break
        # WHEN one more step is let go
        hold.release(1)
        hold.delivered(len(shown) + 1)
    # WHEN the rest of the run is let go THEN it completes on its own (the page refreshes)
    hold.release_all()
    expect(runs.first).to_contain_text("succeeded", timeout=60_000)
    seen = page.evaluate("clearInterval(window.__watch), window.__progress")
    # (sampled every 100 ms by the page's own timer: whatever it caught only went up)
    assert seen == sorted(seen), seen
    expect(bar).to_have_count(0)
    run = api(stack, "GET", f"/jobs/{job['id']}/runs")[0]
    assert run["added"] == 2000 and run["status"] == "succeeded"
    expect(runs.first.locator("td").nth(3)).to_have_text("2000")
    # Per-run cost: the run's estimate, its parts on hover.
    assert run["cost_usd"] > 0
    cost = runs.first.locator("td").nth(7)
    expect(cost).to_have_text(f"${run['cost_usd']:.6f}")
    expect(cost).to_have_attribute("title", re.compile(r"steps: 4"))
    # Activity: the same 2,000 per hour, day and week, in periods of that size.
    activity = page.locator("section[aria-labelledby=activity-h]")
    expect(activity.get_by_test_id("chart-totals")).to_contain_text("added: 2000")
    activity.get_by_text("Show the numbers").click()
    table = activity.get_by_test_id("chart-table")
    stamps = {datetime.strptime(run[k], "%Y-%m-%dT%H:%M:%SZ") for k in ("started_at", "finished_at")}

    def periods(header: str, caption: re.Pattern[str], expected: set[str]) -> None:
        expect(table.locator("thead th").first).to_have_text(header)
        expect(table.locator("caption")).to_have_text(caption)
        expect(table.locator("tbody tr").first).to_be_visible()
        got = set(table.locator("tbody th").all_inner_texts())
        assert got and got <= expected, (got, expected)
        added = sum(int(t) for t in table.locator("tbody tr td:nth-of-type(1)").all_inner_texts())
        assert added == 2000

    periods("Hour (UTC)", re.compile(r"48 hours"), {f"{t:%Y-%m-%d %H}:00 UTC" for t in stamps})
    activity.get_by_role("button", name="day").click()
    periods("Day (UTC)", re.compile(r"30 days"), {f"{t:%Y-%m-%d}" for t in stamps})
    activity.get_by_role("button", name="week").click()
    periods("Week (from Monday, UTC)", re.compile(r"1[23] weeks"),
            {f"week of {t - timedelta(days=t.weekday()):%Y-%m-%d}" for t in stamps})
    expect(activity.get_by_role("button", name="week")).to_have_attribute("aria-pressed", "true")
    # Logs: a minimum level keeps the lines at or above it.
    logs = page.locator("section[aria-labelledby=logs-h]")
    level = logs.get_by_role("combobox", name="Minimum level")
    lines = logs.locator("tbody tr")
    expect(lines.filter(has_text="run.started")).to_have_count(1)
    expect(lines.filter(has_text="record.invalid")).to_have_count(20)
    everything = lines.count()
    level.select_option("warning")
    expect(lines).to_have_count(20)
    assert set(lines.locator("td:nth-child(2)").all_inner_texts()) == {"warning"}
    expect(lines.first).to_contain_text("expected 3 fields, found 1")
    level.select_option("error")
    expect(lines).to_have_count(0)
    level.select_option("")
    expect(lines).to_have_count(everything)
    shot(page, "job-activity-logs")


def test_authorization_health_history_rotation_and_api_requests(page: Page, stack: Stack) -> None:
    signed_in(page, stack)
    s3 = aws_client(stack, "s3")
    s3.create_bucket(Bucket="spa-rotation")
    auth = s3_auth(stack, "Rotation keys", bucket="spa-rotation")
    old_hint = auth["credential_hint"]
    page.goto(f"{stack.base}/#/authorizations/{auth['id']}")
    expect(page.get_by_role("heading", name="Rotation keys")).to_be_visible()
    history = page.locator("xpath=//h3[.='Health history']/following-sibling::*[1]")
    expect(history).to_have_text("No transitions recorded.")
    requests = page.locator("section[aria-labelledby=req-h]")
    totals = requests.get_by_test_id("chart-totals")

    def made() -> int:
        text = totals.inner_text()
        return sum(int(n) for n in re.findall(r":\s*(\d+)", text))

    expect(totals).to_contain_text("API requests")
    before, before_text = made(), totals.inner_text()
    # GIVEN its bucket is gone WHEN "Check now" THEN it turns unhealthy, a history row says
    # why, and the check's requests are in the chart (this hour's row of its data table).
    s3.delete_bucket(Bucket="spa-rotation")
    page.get_by_role("button", name="Check now").click()
    expect(page.get_by_test_id("health-badge").first).to_have_text("unhealthy")
    expect(history.locator("li")).to_have_count(1)
    expect(history.locator("li").first).to_contain_text("healthy → unhealthy")
    reason = api(stack, "GET", f"/authorizations/{auth['id']}")["health"]["reason"]
    assert reason and "spa-rotation" in reason
    expect(history.locator("li").first).to_contain_text(reason)
    # The page reloads the chart once the check has answered (its requests are recorded by then).
    expect(totals).not_to_have_text(before_text)
    assert made() > before, (before_text, totals.inner_text())
    requests.get_by_text("Show the numbers").click()
    expect(requests.get_by_test_id("chart-table").locator("tbody th")).to_contain_text([re.compile(r"\d{2}:00 UTC$")])
    # The dashboard shows the reason on hover (the badge's tooltip).
    page.goto(f"{stack.base}/#/authorizations")
    row = page.locator("table.data tbody tr", has=page.get_by_role("link", name="Rotation keys", exact=True))
    badge = row.get_by_test_id("health-badge")
    expect(badge).to_have_text("unhealthy")
    badge.hover()
    expect(badge).to_have_attribute("title", reason)
    expect(row.locator("td").nth(4)).to_have_text("0 jobs")
    shot(page, "authorizations-unhealthy")
    # Rotate: refused while the bucket is missing (shown at the form), accepted once it is back.
    page.goto(f"{stack.base}/#/authorizations/{auth['id']}")
    new = {"access_key_id": "AKIAJ7Q2EXAMPLEKEY99", "secret_access_key": "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"}
    page.get_by_role("button", name="Rotate credentials").click()
    page.get_by_label("Access Key Id *").fill(new["access_key_id"])
    page.get_by_label("Secret Access Key *").fill(new["secret_access_key"])
    page.get_by_label("Bucket").fill("spa-rotation")
    page.get_by_role("button", name="Verify and rotate").click()
    expect(page.get_by_role("alert").first).to_be_visible()
    assert api(stack, "GET", f"/authorizations/{auth['id']}")["credential_hint"] == old_hint
    s3.create_bucket(Bucket="spa-rotation")
    page.get_by_role("button", name="Verify and rotate").click()
    expect(page.get_by_role("button", name="Verify and rotate")).to_have_count(0)
    new_hint = api(stack, "GET", f"/authorizations/{auth['id']}")["credential_hint"]
    assert new_hint != old_hint and new_hint[-4:] == new["access_key_id"][-4:]
    meta = page.locator("dl.meta")
    expect(meta).to_contain_text(new_hint)
    expect(meta).not_to_contain_text(old_hint)
    expect(page.get_by_test_id("health-badge").first).to_have_text("healthy")
    expect(history.locator("li")).to_have_count(2)
    expect(history.locator("li").first).to_contain_text("unhealthy → healthy")
    html = page.content()
    assert new["secret_access_key"] not in html and new["access_key_id"] not in html
    shot(page, "authorization-rotated")


def test_audit_log_filters_by_object_user_and_time(page: Page, stack: Stack) -> None:
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    signed_in(page, stack)
    # GIVEN a data manager changed a job the admin created
    user = api(stack, "POST", "/users", {"email": "dana@demo.example", "name": "Dana Manager", "role": "data_manager"})
    token = api(stack, "POST", "/tokens", {"label": "dana", "user_id": user["id"]})["token"]
    auth = s3_auth(stack, "Audit keys")
    job = s3_import(stack, auth["id"], "Audited import", "imports/")
    api(stack, "PATCH", f"/jobs/{job['id']}", {"label": "Audited import (Dana)", "version": job["version"]}, token=token)
    event = api(stack, "GET", f"/audit?user_id={user['id']}")[0]
    at = datetime.strptime(event["at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=ZoneInfo("UTC"))
    # The browser in Paris: the times typed are local, the API's are UTC.
    paris = ZoneInfo("Europe/Paris")
    cdp = page.context.new_cdp_session(page)
    cdp.send("Emulation.setTimezoneOverride", {"timezoneId": "Europe/Paris"})
    try:
        page.goto(f"{stack.base}/#/audit")
        page.reload()
        rows = page.get_by_test_id("audit").locator("tbody tr")
        expect(rows.first).to_be_visible()
        # WHEN filtered by user THEN only Dana's change.
        page.get_by_role("combobox", name="User").select_option(label="Dana Manager")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("Dana Manager")
        expect(rows.first).to_contain_text("changed")
        local = at.astimezone(paris)
        page.get_by_label("From").fill(f"{local:%Y-%m-%dT%H:%M}")
        expect(rows).to_have_count(1)
        page.get_by_label("From").fill(f"{local + timedelta(minutes=1):%Y-%m-%dT%H:%M}")
        expect(page.get_by_text("No event matches these filters.")).to_be_visible()
        page.get_by_label("From").fill("")
        expect(rows).to_have_count(1)  # Dana's change again, so the next empty list is Until's
        page.get_by_label("Until").fill(f"{local - timedelta(minutes=1):%Y-%m-%dT%H:%M}")
        expect(page.get_by_text("No event matches these filters.")).to_be_visible()
        page.get_by_label("Until").fill(f"{local:%Y-%m-%dT%H:%M}")
        expect(rows).to_have_count(1)
        page.get_by_role("button", name="Clear filters").click()
        expect(page.get_by_role("combobox", name="User")).to_have_value("")
        # The whole log is back (the job's creation too) before a row's button is clicked: a
        # click while the list re-renders with the new answer can land beside its target.
        expect(rows.locator("a", has_text="Audited import")).to_have_count(2)
        # By object: this job's events only (created by the admin, changed by Dana).
        rows.filter(has_text="Audited import (Dana)").first.get_by_role("button", name=re.compile("^only this: events of")).click()
        expect(page.get_by_label("Object id")).to_have_value(job["id"])
        expect(rows).to_have_count(2)
        assert [t.strip() for t in rows.locator("td:nth-child(3)").all_inner_texts()] == ["changed", "created"]
        expect(rows.locator("a", has_text="Audited import")).to_have_count(2)
        # The change says old → new, not only which field changed.
        expect(rows.first.get_by_test_id("audit-changes")).to_contain_text("Label: Audited import → Audited import (Dana)")
        assert_accessible(page)
        shot(page, "audit-filtered")
    finally:
        cdp.send("Emulation.setTimezoneOverride", {"timezoneId": ""})
