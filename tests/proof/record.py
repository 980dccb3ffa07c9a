"""Figures of the proof suites.

Each suite runs in `make test` at a small size and in `make proof` at full size
(SWITCHYARD_PROOF=full). Every suite calls `record()` once with its figures; the figures go to
`.proof/<suite>.json` (not committed) and `make proof` assembles them into `docs/proof.md`
(`python -m tests.proof.report`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / ".proof"


def full() -> bool:
    return os.environ.get("SWITCHYARD_PROOF", "").lower() == "full"


def size(small: int, full_size: int) -> int:
    """The suite's size: `small` in make test, `full_size` in make proof."""
    return full_size if full() else small


def record(suite: str, title: str, figures: dict[str, Any], *, table: str = "",
           summary: str = "", order: int = 50) -> Path:
    """Write one suite's figures. `figures` are name → value (numbers or short strings);
    `table` is optional markdown (e.g. routes × outcomes); `order` sorts the report."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{suite}.json"
    path.write_text(json.dumps({
        "suite": suite, "title": title, "order": order,
        "size": "full" if full() else "small",
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "figures": figures, "table": table, "summary": summary,
    }, indent=2, default=str))
    return path
