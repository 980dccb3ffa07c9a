"""Creating an HTTP API authorization shows its write key once, in a dialog with copyable
snippets pointing at this deployment; the key shown is one that works (its curl and Python
snippets, run as they are shown, are accepted by the real tracking route); after closing,
only the hint is left; the collection job's page then shows the messages and when they came."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import requires
from tests.test_local_stack import Stack
from tests.web import axe, helpers
from tests.web.helpers import SHOTS, Page, api, choose_provider, expect, signed_in, to_new_authorization

page = helpers.page  # the module's own, with its own stack below

CURL = requires.path(Path(shutil.which("curl") or "/usr/bin/curl"), "curl", "apt-get install curl")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("wk")
    s = Stack(tmp / "state", tmp / "devserver.log")
    s.start()
    try:
        yield s
    finally:
        s.stop()


def test_the_write_key_is_shown_once_with_snippets_that_work(page: Page, stack: Stack) -> None:
    signed_in(page, stack)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.base)
    # GIVEN a new HTTP API authorization, created from the keyboard
    page.goto(stack.base + "/#/authorizations/new")
    page.locator("#na-provider").select_option("http_api")
    page.locator("#na-method").select_option("write_key")
    page.locator("#na-label").fill("Website events")
    page.locator("#na-label").press("Enter")
    # THEN the dialog shows the key, modal, with focus inside it
    dialog = page.get_by_test_id("write-key-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("you will not see this key again")
    key = page.get_by_test_id("write-key").inner_text()
    assert key.startswith("wk_"), key
    assert page.evaluate("() => document.activeElement?.closest('dialog') !== null")
    # AND its copy button puts exactly the key on the clipboard
    dialog.get_by_role("button", name="Copy the write key").press("Enter")
    expect(dialog.get_by_role("status").first).to_have_text("Copied")
    assert page.evaluate("() => navigator.clipboard.readText()") == key
    curl = page.get_by_test_id("snippet-curl").inner_text()
    python = page.get_by_test_id("snippet-python").inner_text()
    js = page.get_by_test_id("snippet-javascript").inner_text()
    assert f"-u '{key}:'" in curl and stack.base + "/api/v1/track" in curl
    assert f'analytics.host = "{stack.base}/api"' in python and key in python
    assert f'writeKey: "{key}"' in js and f'host: "{stack.base}"' in js and 'path: "/api/v1/batch"' in js
    axe_and_shot(page)
    # WHEN it is closed from the keyboard
    dialog.get_by_role("button", name="I have copied it, close").press("Enter")
    # THEN the authorization's page shows only the hint, never the key
    expect(page.get_by_role("heading", name="Website events")).to_be_visible()
    expect(dialog).to_have_count(0)
    expect(page.locator("dl.meta")).to_contain_text("…" + key[-4:])
    assert key not in page.content()
    auth_id = page.url.rsplit("/", 1)[-1]
    assert "write_key" not in api(stack, "GET", f"/authorizations/{auth_id}")
    # AND rotating it shows the new key once, the same way
    page.get_by_role("button", name="Rotate credentials").click()
    page.get_by_role("button", name="Verify and rotate").click()
    expect(dialog).to_be_visible()
    rotated = page.get_by_test_id("write-key").inner_text()
    assert rotated.startswith("wk_") and rotated != key
    dialog.get_by_role("button", name="I have copied it, close").press("Enter")
    expect(dialog).to_have_count(0)
    expect(page.locator("dl.meta")).to_contain_text("…" + rotated[-4:])
    assert rotated not in page.content()
    # AND the first key shown works (for its grace period): with a collection job on it, the
    # snippets as shown are accepted
    job = api(stack, "POST", "/jobs", {"provider": "http_api", "job_type": "import", "workflow": "http_collect",
                                 "authorization_id": auth_id, "label": "site events", "config": {}, "start": True})
    out = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=60, check=True).stdout
    assert '"accepted": 1' in out, out
    sdk = python + "\nanalytics.sync_mode = True\nerrors = []\nanalytics.on_error = lambda e, b: errors.append(e)\n" \
        "analytics.identify('user-2', {'plan': 'pro'})\nanalytics.flush()\nassert not errors, errors\nprint('sent')\n"
    ran = subprocess.run([sys.executable, "-c", sdk], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0 and "sent" in ran.stdout, ran.stderr
    # Positive control for the 401 the SDK would get: a key that differs in its last characters
    bad = curl.replace(f"-u '{key}:'", f"-u '{key[:-4]}AAAA:'")
    refused = subprocess.run(["bash", "-c", bad], capture_output=True, text=True, timeout=60).stdout
    assert "write_key.invalid" in refused, refused
    # AND the job's page shows the two messages once the engine applied them, and when they came
    page.goto(stack.base + f"/#/jobs/{job['id']}")
    panel = page.get_by_test_id("collection")
    # (the engine applies them off the queue: the same liveness bound as a run's other waits)
    expect(panel.get_by_test_id("accepted")).to_have_text("2", timeout=60_000)
    expect(panel.get_by_test_id("duplicates")).to_have_text("0")
    expect(panel.get_by_test_id("rejected")).to_have_text("0")
    expect(panel.get_by_test_id("last-arrived")).not_to_contain_text("Nothing yet")
    axe.check(page, "collection-job")


def axe_and_shot(pg: Page) -> None:
    """The audit on the dialog as shown; the screenshot masks the key (screenshots are committed)."""
    axe.check(pg, "write-key")
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / "write-key.png"), mask=[pg.get_by_test_id("write-key"),
                                                          pg.locator("dialog pre .secret")])


def test_the_wizard_shows_the_key_once_and_the_new_job_waits_for_data(page: Page, stack: Stack) -> None:
    signed_in(page, stack)
    # GIVEN the wizard, a collection job and a new write-key authorization
    page.goto(f"{stack.base}/#/jobs/new")
    choose_provider(page, "HTTP API", keyboard=True)
    to_new_authorization(page, "Collect events", "Write key")
    page.get_by_label("Authorization label").fill("App events")
    # WHEN it is created
    page.get_by_role("button", name="Check and continue").click()
    # THEN the key is shown once, before configuring the job
    dialog = page.get_by_test_id("write-key-dialog")
    expect(dialog).to_be_visible()
    key = page.get_by_test_id("write-key").inner_text()
    assert key.startswith("wk_"), key
    dialog.get_by_role("button", name="I have copied it, close").click()
    expect(dialog).to_have_count(0)
    expect(page.get_by_role("heading", name="Configure")).to_be_visible()
    assert key not in page.content()
    page.get_by_label("Job label *").fill("App events")
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Create job").click()
    expect(page.get_by_test_id("job-title")).to_have_text("App events")
    # AND the job's page says nothing has arrived yet, and where to send it
    panel = page.get_by_test_id("collection")
    expect(panel.get_by_test_id("last-arrived")).to_contain_text(f"Nothing yet: send events to {stack.base}/api/v1/batch")
    expect(panel.get_by_test_id("accepted")).to_have_text("0")
    # AND the key shown is the one that feeds this job (positive control: it is accepted)
    out = subprocess.run([str(CURL), "-s", "-u", f"{key}:", "-H", "Content-Type: application/json", "-d",
                          '{"userId": "u-9", "event": "Opened"}', f"{stack.base}/api/v1/track"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert '"accepted": 1' in out, out
    expect(panel.get_by_test_id("accepted")).to_have_text("1", timeout=60_000)
