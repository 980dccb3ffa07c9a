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
tokens, and an accessibility pass (names of form controls, text contrast). Each main
screen is saved under docs/screenshots/.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devserver.seed import profiles_csv
from tests.fakes.google import FakeGoogle
from tests.fakes.mailchimp import FakeMailchimp
from tests.test_local_stack import TOKEN, Stack

playwright_sync = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, Page, expect  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "web" / "dist" / "index.html"
SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ACCESS_KEYS = {"access_key_id": "AKIAIOSFODNN7EXAMPLE",
               "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}

pytestmark = [
    pytest.mark.smoke,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed (make test installs it)"),
    pytest.mark.skipif(not DIST.exists(), reason="web/dist is not built (make web)"),
]


# devserver seeds these dummy OAuth client credentials (devserver/seed.py: seed_oauth_apps);
# the fakes accept them so the flows complete locally.
LOCAL_CLIENT = ("local-dummy-client-id", "local-dummy-client-secret")


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
    })
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM,
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    ctx = browser.new_context(viewport={"width": 1366, "height": 900})
    pg = ctx.new_page()
    pg.set_default_timeout(10_000)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    ctx.close()
    assert not errors, errors


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, base: str, token: str) -> None:
    page.goto(base + "/#/jobs")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def api(stack: Stack, method: str, path: str, body: Any = None, token: str = TOKEN) -> Any:
    status, out = stack.call(method, "/api/v1" + path, body, token=token)
    assert status < 300, (status, out)
    return out["data"] if isinstance(out, dict) and "data" in out else out


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
    page.get_by_text("S3 file import (CSV / JSON Lines)").click()
    page.get_by_role("button", name="Next").click()
    page.get_by_text("New authorization…").click()
    page.get_by_role("button", name="Next").click()
    page.get_by_text("AWS access keys", exact=True).click()
    page.get_by_role("button", name="Next").click()
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
    expect(prefix_row).to_contain_text("choice")
    page.get_by_label("Prefix").fill("imports/")
    # Chromium's popup of choices (a datalist) swallows the next click: close it first.
    page.get_by_label("Prefix").press("Escape")
    page.get_by_role("heading", name="Configure").click()
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
    expect(page.get_by_test_id("runs")).to_contain_text("succeeded", timeout=30_000)
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
    page.get_by_role("button", name="Resume").click()
    expect(badge).to_contain_text("sleeping")
    # Resume queues a run; a run now while it runs would be ignored (logged), so wait for it.
    runs = page.get_by_test_id("runs").locator("tbody tr")

    def trigger(name: str) -> Any:
        return runs.filter(has=page.locator("td:nth-child(2)", has_text=re.compile(f"^{name}$")))

    expect(trigger("resume")).to_contain_text("succeeded", timeout=30_000)
    expect(badge).to_contain_text("sleeping")
    page.get_by_role("button", name="Run now").click()
    run_now = trigger("run")
    expect(run_now).to_have_count(1, timeout=30_000)
    expect(run_now).to_contain_text("succeeded", timeout=30_000)
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
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = ctx.new_page()
    pg.set_default_timeout(10_000)
    try:
        sign_in(pg, stack.base, token)
        expect(pg.get_by_test_id("who")).to_contain_text("observer")
        expect(pg.locator("table.data")).to_contain_text("Observed job")
        expect(pg.get_by_role("link", name="Create job")).to_have_count(0)
        expect(pg.get_by_role("link", name="Tokens")).to_have_count(0)
        pg.goto(f"{stack.base}/#/jobs/{job['id']}")
        expect(pg.get_by_test_id("job-title")).to_have_text("Observed job")
        for name in ("Pause", "Resume", "Run now", "Delete", "Change authorization", "Edit label"):
            expect(pg.get_by_role("button", name=name)).to_have_count(0)
        pg.goto(f"{stack.base}/#/authorizations/{job['authorization_id']}")
        expect(pg.get_by_role("heading", name="Observed keys")).to_be_visible()
        for name in ("Check now", "Rotate credentials", "Delete"):
            expect(pg.get_by_role("button", name=name)).to_have_count(0)
        shot(pg, "observer-authorization")
    finally:
        ctx.close()


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


def test_oauth_connects_mailchimp_in_a_popup(page: Page, stack: Stack, mailchimp: FakeMailchimp) -> None:
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
    assert refused.value.is_closed()
    assert not [a for a in api(stack, "GET", "/authorizations?provider=mailchimp")]
    # WHEN the user consents (the fake grants at once) THEN the new authorization opens.
    mailchimp.client_secret = LOCAL_CLIENT[1]
    with page.expect_popup() as granted:
        page.get_by_role("button", name="Connect with Mailchimp").click()
    expect(page.get_by_role("heading", name="Newsletter (OAuth)")).to_be_visible()
    assert granted.value.is_closed()
    expect(page.get_by_test_id("health-badge").first).to_have_text("healthy")
    expect(page.locator("dl.meta")).to_contain_text("OAuth 2.0")
    assert mailchimp.oauth_token not in page.content()
    shot(page, "oauth-authorization")


def test_wizard_connects_gtm_inline_and_keeps_the_schedule(page: Page, stack: Stack, google: FakeGoogle) -> None:
    page.goto(f"{stack.base}/#/jobs/new")
    # Keyboard: the provider tiles are radios; Enter goes on.
    page.get_by_role("radio", name=re.compile("Google Tag Manager")).focus()
    page.keyboard.press("Space")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Job type")).to_be_visible()
    page.get_by_text("Install the Switchyard web tag").click()
    page.get_by_role("button", name="Next").click()
    page.get_by_text("New authorization…").click()
    page.get_by_role("button", name="Next").click()
    page.get_by_text("OAuth 2.0", exact=True).click()
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Authorization label").fill("Acme GTM")
    with page.expect_popup():
        page.get_by_role("button", name="Connect with Google Tag Manager").click()
    expect(page.get_by_role("heading", name="Configure")).to_be_visible()
    page.get_by_label("Job label *").fill("Install web tag")
    # Live choices through the new authorization, the container's narrowed by the account.
    for field, value in (("account_id", "6001"), ("container_id", "7001")):
        row = page.locator(".field", has=page.locator(f"#cfg-{field}"))
        row.get_by_role("button", name="Load choices").click()
        expect(row).to_contain_text("1 choice(s)")
        page.locator(f"#cfg-{field}").fill(value)
        page.locator(f"#cfg-{field}").press("Escape")
    page.locator("#cfg-workspace_id").fill("1")
    page.get_by_text("Daily", exact=True).click()
    page.get_by_label("At", exact=True).fill("07:30")
    page.get_by_label("Time zone").fill("Europe/Paris")
    page.get_by_label("Time zone").press("Escape")
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
    expect(page.get_by_label("Time zone")).to_have_value("Europe/Paris")
    expect(page.get_by_label("Quiet from")).to_have_value("22:00")
    page.get_by_label("Tag Name").fill("Switchyard tag v2")
    page.get_by_role("button", name="Save configuration").click()
    expect(page.locator("dl.meta").nth(1)).to_contain_text("Switchyard tag v2")
    expect(page.get_by_test_id("job-schedule")).to_have_text(described)
    # ... and a schedule edit changes only what was changed.
    page.get_by_role("button", name="Edit configuration").click()
    page.get_by_label("Time zone").fill("America/New_York")
    page.get_by_label("Time zone").press("Escape")
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


def test_oauth_falls_back_to_a_redirect_when_popups_are_blocked(browser: Browser, stack: Stack) -> None:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    ctx.add_init_script("window.open = () => null;")  # a popup blocker
    pg = ctx.new_page()
    pg.set_default_timeout(10_000)
    try:
        sign_in(pg, stack.base, TOKEN)
        expect(pg.get_by_test_id("who")).to_contain_text("admin")
        pg.goto(f"{stack.base}/#/jobs/new")
        pg.get_by_text("Mailchimp", exact=True).click()
        pg.get_by_role("button", name="Next").click()
        pg.get_by_text("Mailchimp list import").click()
        pg.get_by_role("button", name="Next").click()
        pg.get_by_text("New authorization…").click()
        pg.get_by_role("button", name="Next").click()
        pg.get_by_text("OAuth 2.0", exact=True).click()
        pg.get_by_role("button", name="Next").click()
        pg.get_by_label("Authorization label").fill("Newsletter (redirect)")
        pg.get_by_role("button", name="Connect with Mailchimp").click()
        # The whole page went to Mailchimp and came back: the wizard goes on where it was,
        # with the new authorization (live choices are read through it).
        expect(pg.get_by_role("heading", name="Configure")).to_be_visible()
        row = pg.locator(".field", has=pg.locator("#cfg-list_id"))
        row.get_by_role("button", name="Load choices").click()
        expect(row).to_contain_text("1 choice(s)")
        pg.get_by_role("button", name="Back").click()
        expect(pg.get_by_role("radio", name=re.compile("Newsletter \\(redirect\\)"))).to_be_checked()
    finally:
        ctx.close()


def test_audience_filter_builder_with_size_preview(page: Page, stack: Stack) -> None:
    rows = list(csv.DictReader(io.StringIO(profiles_csv().decode())))
    expected = sum(r["plan"] in ("pro", "enterprise") and r["country"] in ("FR", "DE") for r in rows)
    assert 0 < expected < len(rows)
    page.goto(f"{stack.base}/#/audiences")
    page.get_by_role("button", name="New audience").click()
    page.get_by_label("Name *").fill("Pro customers in France or Germany")
    page.get_by_role("button", name="Add condition").click()
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
    expect(page.get_by_text("http://127.0.0.1:9/switchyard-alerts")).to_be_visible()
    expect(page.get_by_test_id("signing-secret")).to_have_count(0)
    assert secret not in page.content()
    shot(page, "alerts")  # without the secret: screenshots are committed
    page.get_by_role("button", name="Send test alert").click()
    expect(page.get_by_role("status")).to_contain_text("Test alert sent")
    page.get_by_role("button", name="Remove webhook http://127.0.0.1:9/switchyard-alerts").click()
    expect(page.get_by_role("status")).to_contain_text("Webhook removed")
    assert api(stack, "GET", "/alerts")["webhooks"] == []
    assert api(stack, "GET", "/alerts")["emails"] == ["ops@demo.example"]


def test_admin_issues_and_revokes_a_token(page: Page, stack: Stack) -> None:
    page.goto(f"{stack.base}/#/tokens")
    page.get_by_label("E-mail *").fill("analyst@demo.example")
    page.get_by_label("Name *").fill("Ana Lyst")
    page.get_by_label("Role").select_option("data_manager")
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
        for route in ("#/jobs", "#/authorizations", "#/audiences", "#/audit", "#/jobs/new"):
            page.goto(f"{stack.base}/{route}")
            expect(page.locator("main h1")).to_be_visible()
            page.wait_for_load_state("networkidle")
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), route
            assert_accessible(page)
    finally:
        page.set_viewport_size({"width": 1366, "height": 900})
