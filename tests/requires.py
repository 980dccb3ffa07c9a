"""What a test needs from the machine (a browser, a built web app, an optional package).

On a developer's machine a missing piece skips the tests that need it, saying how to get it.
Under CI (`CI` set, and not to 0/false/no) it fails them instead: a CI run that silently
skipped the browser or the fuzzer would pass without checking anything.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(what: str, how: str) -> NoReturn:
    """Skip (fail under CI) at collection or in a test: `what` is missing, `how` gets it."""
    if in_ci():
        pytest.fail(f"{what} is missing, and CI must not skip the tests that need it: {how}", pytrace=False)
    pytest.skip(f"{what} is missing: {how}", allow_module_level=True)


def module(name: str, how: str) -> ModuleType:
    """The imported module, or a skip (a failure under CI) saying how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing(f"Python package {name!r} ({exc})", how)


def path(p: Path, what: str, how: str) -> Path:
    """`p` if it exists, or a skip (a failure under CI) naming what it is and how to make it."""
    if not p.exists():
        missing(f"{what} ({p})", how)
    return p
