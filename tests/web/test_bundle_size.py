"""The built web app's first load stays within its JavaScript budget (gzipped)."""

from __future__ import annotations

import gzip
from pathlib import Path

from tests import requires

ASSETS = requires.path(Path(__file__).resolve().parents[2] / "web" / "dist" / "assets", "the built web app",
                       "run `make web`")
BUDGET = 300 * 1024  # bytes of gzipped JS; web/scripts/size.mjs checks the same


def test_first_load_js_is_within_300_kb_gzipped() -> None:
    # GIVEN the built app; WHEN every JS asset is gzipped; THEN the total fits the budget.
    sizes = {p.name: len(gzip.compress(p.read_bytes(), compresslevel=9)) for p in ASSETS.glob("*.js")}
    assert sizes, "no JavaScript in web/dist/assets"
    total = sum(sizes.values())
    assert total <= BUDGET, f"{total / 1024:.1f} KB gzipped > 300 KB: {sizes}"
