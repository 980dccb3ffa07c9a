"""A dashboard a marketer trusts, continued: the catalog page, the favicon, long labels,
a new tab that needs no new sign-in, resume said before it happens, omitted records
explained where their number is, problems blamed on the right thing at the right field,
the time zone as a searchable list, the wizard checking Configure before Review, a cron
schedule with its next runs, and the accessibility audit catching what it must. One stack
and signed-in page for the module (fixtures of test_spa.py); each test seeds what it needs."""

from __future__ import annotations

import re

from tests.test_local_stack import TOKEN, Stack
from tests.web import axe
from tests.web import test_spa as spa
from tests.web.helpers import wizard_to_credentials
from tests.web.test_spa import (  # playwright: skipped there when absent
    Browser,
    Page,
    api,
    expect,
    shot,
    signed_in,
)
from tests.web.test_trust import finished

pytestmark = spa.pytestmark
mailchimp, google, stack, page = spa.mailchimp, spa.google, spa.stack, spa.page


def _to_configure(page: Page, auth_label: str) -> None:
    page.goto(f"{page.url.split('#')[0]}#/jobs/new")
    page.get_by_text("Amazon S3", exact=True).click()
    page.get_by_role("button", name="Next").click()
    page.get_by_text("S3 file import (CSV / JSON Lines)").click()
    page.get_by_role("button", name="Next").click()
    page.get_by_role("radio", name=re.compile(auth_label)).check()
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("heading", name="Configure")).to_be_visible()


def _staged_job(stack: Stack, auth_id: str, label: str, schedule: dict[str, str]) -> dict[str, object]:
    """An S3 import created paused, with the given schedule."""
    job: dict[str, object] = api(stack, "POST", "/jobs", {
        "provider": "amazon_s3", "job_type": "import", "workflow": "s3_file_import", "label": label,
        "authorization_id": auth_id, "start": False, "config": {"bucket": "switchyard-demo", "prefix": "imports/"},
        "schedule": schedule})
    return job


def test_catalog_page_lists_providers_job_types_and_methods(page: Page, stack: Stack) -> None:
    signed_in(page, stack)
    page.get_by_role("link", name="Catalog", exact=True).click()
    expect(page.get_by_role("heading", name="Catalog", exact=True)).to_be_visible()
    s3 = page.get_by_test_id("catalog-provider").filter(has=page.get_by_role("heading", name="Amazon S3"))
    expect(s3).to_contain_text("S3 file import (CSV / JSON Lines)")
    expect(s3).to_contain_text("AWS access keys")
    providers = api(stack, "GET", "/providers")
    expect(page.get_by_test_id("catalog-provider")).to_have_count(len(providers))
    main = page.locator("main").inner_text()
    assert "s3_file_import" not in main and "access_keys" not in main and "(GET /" not in main
    shot(page, "catalog")


def test_every_page_has_a_favicon_and_no_request_fails(page: Page, stack: Stack) -> None:
    signed_in(page, stack)
    failed: list[str] = []
    seen: list[str] = []

    def on_response(r) -> None:
        seen.append(r.url)
        if r.status >= 400:
            failed.append(f"{r.status} {r.url}")

    page.on("response", on_response)
    try:
        page.goto(f"{stack.base}/#/jobs")
        page.reload()
        expect(page.get_by_test_id("who")).to_be_visible()
        expect(page.locator("table.data, .empty").first).to_be_visible()
    finally:
        page.remove_listener("response", on_response)
    assert any(u.endswith("/favicon.svg") for u in seen), seen  # the browser asked for it
    icon = page.locator("link[rel=icon]").get_attribute("href")
    assert icon == "/favicon.svg"
    r = page.request.get(stack.base + icon)
    assert r.status == 200 and r.headers["content-type"].startswith("image/svg+xml") and b"<svg" in r.body()
    assert not failed, failed


def test_a_long_label_is_truncated_with_the_full_text_on_hover(page: Page, stack: Stack) -> None:
    signed_in(page, stack)
    auth = spa.s3_auth(stack, "Long label keys " + "k" * 180)
    label = "A very long job label " + "that keeps going " * 10 + "to 200 characters"
    label = label[:200]
    spa.s3_import(stack, auth["id"], label, "imports/")
    page.goto(f"{stack.base}/#/jobs")
    link = page.locator("table.data tbody tr td:first-child a", has_text=label[:30])
    expect(link).to_have_attribute("title", label)
    box = link.bounding_box()
    line = float(link.evaluate("e => parseFloat(getComputedStyle(e).lineHeight) || 20"))
    assert box is not None and box["height"] <= line * 1.5, (box, line)
    assert link.evaluate("e => e.scrollWidth > e.clientWidth"), "the label is cut, not wrapped"
    shot(page, "jobs-long-label")
    page.goto(f"{stack.base}/#/authorizations")
    auth_link = page.locator("table.data a", has_text="Long label keys")
    expect(auth_link).to_have_attribute("title", auth["label"])
    assert auth_link.bounding_box()["height"] <= line * 1.5  # type: ignore[index]


def test_a_new_tab_is_signed_in_and_signing_out_ends_every_tab(browser: Browser, stack: Stack) -> None:
    ctx = browser.new_context(viewport={"width": 1366, "height": 900})
    other = browser.new_context()
    try:
        first = ctx.new_page()
        spa.sign_in(first, stack.base, TOKEN)
        expect(first.get_by_test_id("who")).to_contain_text("admin")
        # A new tab of the same browser asks the open tab: no sign-in screen.
        second = ctx.new_page()
        second.goto(f"{stack.base}/#/audiences")
        expect(second.get_by_test_id("who")).to_contain_text("admin")
        expect(second.get_by_role("heading", name="Audiences")).to_be_visible()
        # The token is never written where it outlives the tabs.
        assert second.evaluate("() => Object.keys(localStorage).length") == 0
        # Positive control: another browser profile (no tab of it is signed in) must sign in.
        stranger = other.new_page()
        stranger.goto(f"{stack.base}/#/jobs")
        expect(stranger.get_by_label("API token")).to_be_visible()
        # Signing out in one tab signs out the other.
        second.get_by_role("button", name="Sign out").click()
        expect(second.get_by_label("API token")).to_be_visible()
        expect(first.get_by_label("API token")).to_be_visible()
        # With no tab signed in, a new tab must sign in.
        third = ctx.new_page()
        third.goto(f"{stack.base}/#/jobs")
        expect(third.get_by_label("API token")).to_be_visible()
    finally:
        ctx.close()
        other.close()


def test_resume_says_what_happens_before_and_after(page: Page, stack: Stack) -> None:
    signed_in(page, stack)
    auth = spa.s3_auth(stack, "Resume keys")
    job = _staged_job(stack, auth["id"], "Starts in 2099", {"type": "once", "at": "2099-01-01T09:00:00Z"})
    page.goto(f"{stack.base}/#/jobs/{job['id']}")
    page.get_by_role("button", name="Resume").click()
    dialog = page.get_by_role("dialog", name="Resume “Starts in 2099”?")
    expect(dialog.get_by_test_id("resume-what")).to_contain_text("It waits for its start time")
    expect(dialog.get_by_test_id("resume-what")).to_contain_text("2099")
    shot(page, "job-resume-confirm")
    # Cancel changes nothing.
    dialog.get_by_role("button", name="Cancel").click()
    assert api(stack, "GET", f"/jobs/{job['id']}")["status"] == "paused"
    page.get_by_role("button", name="Resume").click()
    page.get_by_role("dialog").get_by_role("button", name="Resume job").click()
    expect(page.get_by_test_id("job-notice")).to_contain_text("Resumed: the next run is")
    expect(page.get_by_test_id("job-notice")).to_contain_text("2099")
    assert api(stack, "GET", f"/jobs/{job['id']}")["status"] == "sleeping"
    # A job without a start time runs at once: the dialog says so.
    now_job = spa.s3_import(stack, auth["id"], "Runs when resumed", "imports/")
    page.goto(f"{stack.base}/#/jobs/{now_job['id']}")
    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_test_id("resume-what")).to_have_text("A run starts as soon as you resume.")
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()


def test_omitted_records_are_explained_where_their_number_is(page: Page, stack: Stack) -> None:
    signed_in(page, stack)
    auth = spa.s3_auth(stack, "Omitted keys")
    # Two imports of the same file: the second finds every profile as the first left it.
    for label in ("Imported first", "Imported again"):
        job = spa.s3_import(stack, auth["id"], label, "imports/", start=True)
        finished(stack, job["id"])
    runs = api(stack, "GET", f"/jobs/{job['id']}/runs")
    assert runs[0]["omitted_reasons"].get("unchanged", 0) > 0, runs[0]
    page.goto(f"{stack.base}/#/jobs/{job['id']}")
    reasons = page.get_by_test_id("runs").locator("tbody tr").first.get_by_test_id("omitted-reasons")
    expect(reasons).to_contain_text(f"unchanged: {runs[0]['omitted_reasons']['unchanged']}")
    shot(page, "job-omitted-reasons")


def test_problems_are_blamed_on_the_right_thing_at_the_right_field(page: Page, stack: Stack) -> None:
    signed_in(page, stack)
    # New authorization with good keys and a bucket that does not exist: the bucket's fault.
    page.goto(f"{stack.base}/#/jobs/new")
    wizard_to_credentials(page)
    page.get_by_label("Authorization label *").fill("Blame keys")
    page.get_by_label("Authorization description").fill("Demo keys of the marketing team")
    page.get_by_label("Access Key Id *").fill(spa.ACCESS_KEYS["access_key_id"])
    page.get_by_label("Secret Access Key *").fill(spa.ACCESS_KEYS["secret_access_key"])
    page.get_by_label("Bucket", exact=True).fill("no-such-demo-bucket")
    page.get_by_role("button", name="Check and continue").click()
    box = page.get_by_role("alert").filter(has_text="accepted these credentials")
    expect(box).to_contain_text("Amazon S3 accepted these credentials, but bucket")
    expect(page.locator(".field.invalid", has=page.get_by_label("Bucket", exact=True))).to_contain_text("does not exist")
    expect(page.locator(".field.invalid", has=page.get_by_label("Access Key Id *"))).to_have_count(0)
    shot(page, "wizard-bucket-blamed")
    # The right bucket: created, with its description.
    page.get_by_label("Bucket", exact=True).fill("switchyard-demo")
    page.get_by_role("button", name="Check and continue").click()
    expect(page.get_by_role("heading", name="Configure")).to_be_visible()
    created = [a for a in api(stack, "GET", "/authorizations?limit=200") if a["label"] == "Blame keys"]
    assert [a["description"] for a in created] == ["Demo keys of the marketing team"]
    # Configure: a bucket the keys cannot reach is marked before Review.
    page.get_by_label("Job label *").fill("Checked before review")
    page.get_by_label("Bucket *").fill("another-missing-bucket")
    page.get_by_role("button", name="Next").click()
    expect(page.locator(".field.invalid", has=page.get_by_label("Bucket *"))).to_contain_text("does not exist")
    expect(page.get_by_role("heading", name="Configure")).to_be_visible()
    page.get_by_label("Bucket *").fill("switchyard-demo")
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("heading", name="Review")).to_be_visible()


def test_time_zone_search_and_a_cron_schedule_checked_before_review(page: Page, stack: Stack) -> None:
    signed_in(page, stack)
    spa.s3_auth(stack, "Cron keys")
    _to_configure(page, "Cron keys")
    page.get_by_label("Job label *").fill("Weekday mornings")
    page.get_by_label("Bucket *").fill("switchyard-demo")
    # The Incremental checkbox sits under its label, at the start of the field, not mid-row.
    check, label = page.locator("#cfg-incremental").bounding_box(), page.locator("label[for=cfg-incremental]").bounding_box()
    assert check and label and abs(check["x"] - label["x"]) < 8, (check, label)
    page.get_by_text("Daily", exact=True).click()
    # The time zone: a list of IANA zones narrowed by typing; a made-up zone cannot be chosen.
    zone = page.get_by_label("Time zone", exact=True)
    page.get_by_label("Search time zones").fill("new york")
    expect(zone).to_have_value("America/New_York")
    page.get_by_label("Search time zones").fill("Mars")
    expect(zone.locator("option")).to_have_count(1)  # only the zone already chosen
    expect(zone).to_have_value("America/New_York")
    page.get_by_label("Search time zones").fill("paris")
    expect(zone).to_have_value("Europe/Paris")
    # Cron: a wrong expression is refused at Next, at its field, in words.
    page.get_by_text("Cron (advanced)", exact=True).click()
    page.get_by_label("Cron expression").fill("cron(0 9 * * MON *)")
    page.get_by_role("button", name="Next", exact=True).click()
    field = page.locator(".field.invalid", has=page.get_by_label("Cron expression"))
    expect(field).to_contain_text("exactly one of day-of-month and day-of-week must be '?'")
    expect(page.get_by_role("heading", name="Configure")).to_be_visible()
    # Fixed: its next three runs, then Review shows them too.
    page.get_by_label("Cron expression").fill("cron(30 9 ? * MON-FRI *)")
    page.get_by_role("button", name="Show next runs").click()
    runs = page.get_by_test_id("next-runs")
    expect(runs).to_contain_text("Next runs (Europe/Paris):")
    assert runs.inner_text().count("·") == 2, runs.inner_text()
    expect(field).to_have_count(0)  # the refusal no longer holds, so it is gone
    shot(page, "wizard-cron")
    page.get_by_role("button", name="Next", exact=True).click()
    expect(page.get_by_role("heading", name="Review")).to_be_visible()
    expect(page.locator("dl.meta")).to_contain_text("cron(30 9 ? * MON-FRI *) (Europe/Paris)")
    assert page.get_by_test_id("review-next-runs").inner_text().count("·") == 2
    page.get_by_text("Stage (create paused, start later)").click()
    page.get_by_role("button", name="Create job").click()
    expect(page.get_by_test_id("job-schedule")).to_have_text("cron(30 9 ? * MON-FRI *) (Europe/Paris)")


def test_edit_configuration_shows_a_cron_schedules_next_runs_in_the_jobs_zone(page: Page, stack: Stack) -> None:
    # A fixed year: the runs are known whatever the clock, so nothing races the test.
    signed_in(page, stack)
    auth = spa.s3_auth(stack, "Edit cron keys")
    job = _staged_job(stack, auth["id"], "Summer mornings",
                      {"type": "cron", "expression": "cron(0 9 1 6-8 ? 2030)", "timezone": "America/New_York"})
    page.goto(f"{stack.base}/#/jobs/{job['id']}")
    page.get_by_role("button", name="Edit configuration").click()
    form = page.locator("form", has=page.get_by_role("heading", name="Edit configuration"))
    expect(form.get_by_label("Cron expression")).to_have_value("cron(0 9 1 6-8 ? 2030)")
    form.get_by_role("button", name="Show next runs").click()
    runs = form.get_by_test_id("next-runs")
    # 09:00 in New York on the first of June, July and August 2030, said in the job's zone.
    expect(runs).to_contain_text("Next runs (America/New York):")
    expect(runs.locator("time")).to_have_count(3)
    assert [t.get_attribute("datetime") for t in runs.locator("time").all()] == [
        "2030-06-01T13:00:00Z", "2030-07-01T13:00:00Z", "2030-08-01T13:00:00Z"]
    assert all(re.search(r"\b9:00\b", t.inner_text()) for t in runs.locator("time").all()), runs.inner_text()
    shot(page, "job-edit-cron-next-runs")
    # Another zone: the runs shown before no longer hold, and the new ones are Paris's 09:00.
    form.get_by_label("Search time zones").fill("paris")
    expect(runs).to_have_count(0)
    form.get_by_role("button", name="Show next runs").click()
    expect(runs).to_contain_text("Next runs (Europe/Paris):")
    assert [t.get_attribute("datetime") for t in runs.locator("time").all()] == [
        "2030-06-01T07:00:00Z", "2030-07-01T07:00:00Z", "2030-08-01T07:00:00Z"]
    # A wrong expression: the refusal in words, under the field; nothing was saved meanwhile.
    form.get_by_label("Cron expression").fill("cron(0 9 * 6 MON 2030)")
    form.get_by_role("button", name="Show next runs").click()
    expect(form.get_by_role("alert")).to_contain_text("day-of-month and day-of-week")
    assert api(stack, "GET", f"/jobs/{job['id']}")["version"] == job["version"]


def test_the_audience_list_asks_for_every_size_in_one_request(page: Page, stack: Stack) -> None:
    signed_in(page, stack)
    made = [api(stack, "POST", "/audiences", {"name": f"Size check {i}", "filter": f})["id"] for i, f in enumerate(
        [{"all": []}, {"all": [{"field": "plan", "op": "equals", "value": "pro"}]},
         {"all": [{"field": "country", "op": "equals", "value": "FR"}]}])]
    sent: list[str] = []
    page.on("request", lambda r: sent.append(f"{r.method} {r.url.split('/api/v1', 1)[-1]}")
            if "/api/v1/audiences" in r.url else None)
    page.goto(f"{stack.base}/#/audiences")
    table = page.locator("table.data")
    for i, aud_id in enumerate(made):
        cell = table.locator("tbody tr", has_text=f"Size check {i}").get_by_test_id("audience-size-cell")
        expect(cell).to_have_text(f"{api(stack, 'GET', f'/audiences/{aud_id}/size')['size']:,}")
    # One list and one sizes call, however many audiences: none read one by one.
    assert [m for m in sent if m.startswith("POST /audiences/sizes")] == ["POST /audiences/sizes"], sent
    assert not [m for m in sent if m.endswith("/size")], sent
    assert len(sent) == 2, sent
    shot(page, "audiences-sizes")


def test_the_accessibility_audit_finds_a_planted_violation(page: Page, stack: Stack) -> None:
    # Positive control for the audit every screenshot passes (tests/web/axe.py).
    signed_in(page, stack)
    page.goto(f"{stack.base}/#/catalog")
    expect(page.get_by_role("heading", name="Catalog", exact=True)).to_be_visible()
    axe.check(page, "catalog")  # clean first
    page.evaluate("() => { const b = document.createElement('button'); b.id = 'planted'; document.querySelector('main').append(b); }")
    try:
        found = {v["id"]: v["impact"] for v in axe.violations(page)}
        assert found.get("button-name") == "critical", found
        try:
            axe.check(page, "planted")
        except AssertionError as exc:
            assert "button-name" in str(exc)
        else:
            raise AssertionError("the audit let a button without a name pass")
    finally:
        page.evaluate("() => document.getElementById('planted')?.remove()")
