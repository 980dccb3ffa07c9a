"""Reading the service's JSON log lines (chalicelib/logs.py) out of captured stdout."""

from __future__ import annotations

import json
from typing import Any


def log_lines(out: str) -> list[dict[str, Any]]:
    """Every JSON log line in `out`; fails on a line that looks like JSON but is not.

    EMF metric documents share stdout (they start with {"_aws"); they are left out."""
    lines = []
    for raw in out.splitlines():
        if not raw.startswith("{"):
            continue
        doc = json.loads(raw)  # a truncated or interleaved line fails here
        assert isinstance(doc, dict), raw
        if "_aws" not in doc:
            assert doc.get("service") == "switchyard" and "level" in doc and "timestamp" in doc, raw
            lines.append(doc)
    return lines


def with_message(lines: list[dict[str, Any]], message: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("message") == message]
