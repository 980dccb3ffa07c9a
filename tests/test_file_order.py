"""The order pytest-xdist hands files to its workers (tests/conftest.py, LONGEST_FIRST):
every file it names exists, once (a renamed file would drop to the back unnoticed), the
collection follows it, and `make test` keeps it (xdist's own reorder by number of tests off)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import LONGEST_FIRST

ROOT = Path(__file__).resolve().parent.parent


def test_every_file_named_exists_once() -> None:
    assert [p for p in LONGEST_FIRST if not (ROOT / p).is_file()] == []
    assert len(set(LONGEST_FIRST)) == len(LONGEST_FIRST)


def test_the_collection_starts_with_the_longest_files(request: pytest.FixtureRequest) -> None:
    files = list(dict.fromkeys(item.nodeid.split("::")[0] for item in request.session.items))
    named = [f for f in files if f in LONGEST_FIRST]
    # Only what this run collected is compared (a run of some files collects some of them).
    assert named == [f for f in LONGEST_FIRST if f in named]
    assert files[:len(named)] == named


def test_make_test_asks_xdist_to_keep_the_order() -> None:
    recipe = next(line for line in (ROOT / "Makefile").read_text().splitlines() if "$(BIN)/pytest -n $(PYTEST_WORKERS)" in line)
    assert "--dist loadfile" in recipe and "--no-loadscope-reorder" in recipe, recipe
