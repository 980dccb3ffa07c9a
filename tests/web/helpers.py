"""What the browser tests share: the module's signed-in page fixture (on the worker's
browser, tests/web/conftest.py), signing in (on the module's page or as another user in a
context of their own), calls to the stack's API, screenshots, and the wizard's steps up to
a new authorization's credentials.

Importing it skips (fails under CI) the importing module when Playwright, chromium or the
built web app is missing."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests import requires
from tests.test_local_stack import TOKEN, Stack
from tests.web import axe

requires.module("playwright.sync_api", "run `make venv` (requirements-dev.txt pins playwright)")
from playwright.sync_api import Browser, Page, expect  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "docs" / "screenshots"
requires.path(Path(shutil.which("chromium") or "/usr/bin/chromium"), "chromium",
              "run `make chromium` (apt-get install chromium; make test does)")
requires.path(ROOT / "web" / "dist" / "index.html", "the built web app", "run `make web` (make test does)")


@pytest.fixture(scope="module")
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    ctx = browser.new_context(viewport={"width": 1366, "height": 900})
    pg = ctx.new_page()
    pg.set_default_timeout(20_000)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    # Every screen runs under the Content-Security-Policy: a refusal is a failure too.
    pg.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    yield pg
    ctx.close()
    assert not errors, errors


def shot(page: Page, name: str) -> None:
    """Save the screen under docs/screenshots/, after the accessibility audit passed on it
    (every screen the tests show gets both)."""
    axe.check(page, name)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, base: str, token: str) -> None:
    page.goto(base + "/#/jobs")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def signed_in(page: Page, stack: Stack) -> None:
    """Sign the module's page in unless an earlier test did (these tests also run alone)."""
    page.goto(stack.base + "/#/tokens")  # a screen the tests below do not open first
    if page.get_by_label("API token").or_(page.get_by_test_id("who")).first.get_attribute("data-testid") != "who":
        sign_in(page, stack.base, TOKEN)
        expect(page.get_by_test_id("who")).to_contain_text("admin")
        page.goto(stack.base + "/#/tokens")
    expect(page.get_by_role("heading", name="API tokens")).to_be_visible()


@contextmanager
def signed_in_as(browser: Browser, stack: Stack, token: str, role: str, *,
                 init_script: str | None = None) -> Iterator[Page]:
    """A page of a browser context of its own, signed in with `token` (whose user has
    `role`); `init_script` runs in it before any page script. Closed afterwards."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    if init_script:
        ctx.add_init_script(init_script)
    pg = ctx.new_page()
    pg.set_default_timeout(20_000)
    try:
        sign_in(pg, stack.base, token)
        expect(pg.get_by_test_id("who")).to_contain_text(role)
        yield pg
    finally:
        ctx.close()


def api(stack: Stack, method: str, path: str, body: Any = None, token: str = TOKEN) -> Any:
    status, out = stack.call(method, "/api/v1" + path, body, token=token)
    assert status < 300, (status, out)
    return out["data"] if isinstance(out, dict) and "data" in out else out


def choose_provider(page: Page, provider: str, *, keyboard: bool = False) -> None:
    """The wizard's first step: pick `provider` (by its tile's text, or from the keyboard:
    the tiles are radios, Space picks, Enter goes on) and go on to the job type."""
    if keyboard:
        page.get_by_role("radio", name=re.compile(provider)).focus()
        page.keyboard.press("Space")
        page.keyboard.press("Enter")
    else:
        page.get_by_text(provider, exact=True).click()
        page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("heading", name="Job type")).to_be_visible()


def to_new_authorization(page: Page, job_type: str, method: str) -> None:
    """From the job type step: `job_type`, a new authorization, its `method`, on to the
    step that asks for its label and credentials."""
    page.get_by_text(job_type).click()
    page.get_by_role("button", name="Next").click()
    page.get_by_text("New authorization…").click()
    page.get_by_role("button", name="Next").click()
    page.get_by_text(method, exact=True).click()
    page.get_by_role("button", name="Next").click()


def wizard_to_credentials(page: Page) -> None:
    """An S3 file import with new access keys, up to the credentials step."""
    choose_provider(page, "Amazon S3")
    to_new_authorization(page, "S3 file import (CSV / JSON Lines)", "AWS access keys")
    expect(page.get_by_role("heading", name="Credentials")).to_be_visible()
