"""The browser tests' chromium: one per worker process, shared by every module that asks for
`browser`. Each module opens its own contexts (a context holds a page's storage, cookies and
permissions), so nothing but the process carries from one module to the next. A launch costs
~0.8 s of CPU; the browser tests launched ten between them, one per module and two more in
test_csp.py. Playwright's sync API marks the worker's thread as running an event loop while
the browser is open, now until the worker ends: a test that calls `asyncio.run`, or starts
`sync_playwright()` again, would fail on a worker that ran a browser test before it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import requires

LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    playwright_sync = requires.module("playwright.sync_api", "run `make venv` (requirements-dev.txt pins playwright)")
    chromium = requires.path(Path(shutil.which("chromium") or "/usr/bin/chromium"), "chromium",
                             "run `make chromium` (apt-get install chromium; make test does)")
    with playwright_sync.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(chromium), args=LAUNCH_ARGS)
        yield launched
        launched.close()
