"""The dashboard SPA in a real browser (Debian's chromium through Playwright) against the
real local stack: `python -m devserver` on free ports with its own state directory, as
`make run` starts it, serving the built web/dist at / and the API at /api/v1.

The tests run in file order and share one stack and one signed-in admin page: sign in,
the wizard with an inline S3 authorization on the seeded demo bucket, a run watched to
completion, job actions, change of authorization refused and accepted, delete refused then
allowed, and an observer who sees no edit buttons. Each main screen is saved under
docs/screenshots/.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("spa")
    s = Stack(tmp / "state", tmp / "devserver.log")
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
