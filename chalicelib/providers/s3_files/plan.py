"""The run's cursor: the page of the plan (the objects to read, in key order) it carries, and
where in them the run is."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chalicelib.providers.base import ProviderError
from chalicelib.providers.s3_files.state import state_json_bound

CURSOR_VERSION = 1

CURSOR_BUDGET = 96_000  # the engine allows < 100 KB of cursor JSON
HEADER_MAX_JSON = 32_000  # a CSV header is kept in the cursor; a longer one is refused


def default_page_bytes(max_objects: int) -> int:
    # What is left for the plan once the next state, a CSV header and the counters are in.
    return CURSOR_BUDGET - state_json_bound(max_objects) - HEADER_MAX_JSON - 2_000


@dataclass
class Cursor:
    plan: list[dict[str, Any]]  # this page of the plan: {"key", "etag", "size"}
    more_after: str | None  # the plan goes on after this key (listed again); None: it ends here
    next_state: dict[str, Any]
    total_bytes: int
    objects: int  # objects planned for the run
    i: int = 0  # index in `plan` of the object being read
    offset: int = 0  # bytes of object i consumed (of the decompressed stream for gzip)
    line: int = 0  # lines of object i consumed (refs are line numbers)
    header: list[str] | None = None  # CSV header of object i, once read
    zpos: int = 0  # gzip: compressed bytes of object i read so far (progress only)
    processed: int = 0  # rows returned by this run
    invalid: int = 0  # records reported invalid by this run
    bytes_done: int = 0  # sizes of the objects finished
    objects_done: int = 0

    @property
    def bytes_read(self) -> int:
        if self.i >= len(self.plan):
            return self.bytes_done
        size = int(self.plan[self.i]["size"])
        return self.bytes_done + min(self.zpos or self.offset, size)

    def finish_object(self) -> None:
        self.bytes_done += int(self.plan[self.i]["size"])
        self.objects_done += 1
        self.i += 1
        self.offset = self.line = self.zpos = 0
        self.header = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": CURSOR_VERSION,
            "plan": self.plan,
            "more_after": self.more_after,
            "i": self.i,
            "offset": self.offset,
            "line": self.line,
            "header": self.header,
            "zpos": self.zpos,
            "processed": self.processed,
            "invalid": self.invalid,
            "bytes_read": self.bytes_read,
            "bytes_done": self.bytes_done,
            "total_bytes": self.total_bytes,
            "objects": self.objects,
            "objects_done": self.objects_done,
            "next_state": self.next_state,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Cursor:
        if d.get("v") != CURSOR_VERSION:
            raise ProviderError("the run's cursor was not written by this reader version")
        try:
            return cls(
                plan=[dict(e) for e in d["plan"]],
                more_after=d["more_after"],
                next_state=dict(d["next_state"]),
                total_bytes=int(d["total_bytes"]),
                objects=int(d["objects"]),
                i=int(d["i"]),
                offset=int(d["offset"]),
                line=int(d["line"]),
                header=list(d["header"]) if d["header"] is not None else None,
                zpos=int(d["zpos"]),
                processed=int(d["processed"]),
                invalid=int(d["invalid"]),
                bytes_done=int(d["bytes_done"]),
                objects_done=int(d["objects_done"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProviderError(f"the run's cursor is damaged ({exc!r})") from None


@dataclass(frozen=True)
class Listed:
    key: str
    etag: str
    size: int
    last_modified: datetime


class Page:
    """Planned objects that fit the cursor's plan budget, in key order."""

    def __init__(self, budget: int) -> None:
        self._budget = budget
        self._used = 0
        self.entries: list[dict[str, Any]] = []
        self.more_after: str | None = None

    def add(self, obj: Listed) -> bool:
        """Add obj if it fits; False (and more_after set) once the page is full."""
        if self.more_after is not None:
            return False
        entry = {"key": obj.key, "etag": obj.etag, "size": obj.size}
        cost = len(json.dumps(entry)) + 2
        if self.entries and self._used + cost > self._budget:
            self.more_after = str(self.entries[-1]["key"])
            return False
        self.entries.append(entry)
        self._used += cost
        return True
