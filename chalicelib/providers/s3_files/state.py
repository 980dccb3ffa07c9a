"""What the last finished run imported (a job's state): a digest per object, the newest
MAX_STATE_OBJECTS one by one and the older ones under a LastModified watermark."""

from __future__ import annotations

import base64
import hashlib
import heapq
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chalicelib.providers.s3 import S3ImportConfig

STATE_VERSION = 1
MAX_STATE_OBJECTS = 5_000  # objects remembered one by one; older ones go under the watermark
DIGEST_BYTES = 6  # per remembered object: blake2b-48 of (bucket, key, etag)


def state_json_bound(max_objects: int) -> int:
    return (max_objects * DIGEST_BYTES + 2) // 3 * 4 + 400


def object_digest(bucket: str, key: str, etag: str) -> bytes:
    text = f"{bucket}\0{key}\0{etag.strip(chr(34))}"
    return hashlib.blake2b(text.encode("utf-8"), digest_size=DIGEST_BYTES).digest()


def encode_digests(digests: set[bytes]) -> str:
    return base64.b64encode(b"".join(sorted(digests))).decode("ascii")


def decode_digests(text: str) -> set[bytes]:
    raw = base64.b64decode(text.encode("ascii"))
    return {raw[i : i + DIGEST_BYTES] for i in range(0, len(raw), DIGEST_BYTES)}


@dataclass
class Seen:
    """The previous run's state: is this (key, etag) already imported?"""

    digests: set[bytes] = field(default_factory=set)
    watermark: datetime | None = None

    @classmethod
    def from_state(cls, state: dict[str, Any] | None, cfg: S3ImportConfig) -> Seen:
        if not state or state.get("v") != STATE_VERSION:
            return cls()
        try:
            digests = decode_digests(str(state.get("digests") or ""))
            mark = state.get("watermark")
            # The watermark speaks of one listing: another bucket or prefix is not covered.
            same = state.get("bucket") == cfg.bucket and state.get("prefix") == cfg.prefix
            watermark = datetime.fromisoformat(mark) if (mark and same) else None
        except (ValueError, TypeError):
            return cls()  # unreadable state: import everything (safe, at worst twice)
        return cls(digests, watermark)

    def covers(self, last_modified: datetime, digest: bytes) -> bool:
        if self.watermark is not None and last_modified <= self.watermark:
            return True
        return digest in self.digests


class NextState:
    """The state of this run's listing: the newest objects one by one, the rest under a
    LastModified watermark. Bounded: MAX_STATE_OBJECTS digests at most."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._heap: list[tuple[datetime, bytes]] = []
        self._dropped: datetime | None = None
        self.count = 0

    def add(self, last_modified: datetime, digest: bytes) -> None:
        self.count += 1
        heapq.heappush(self._heap, (last_modified, digest))
        if len(self._heap) > self._limit:
            oldest, _ = heapq.heappop(self._heap)
            if self._dropped is None or oldest > self._dropped:
                self._dropped = oldest

    def to_state(self, cfg: S3ImportConfig) -> dict[str, Any]:
        # The watermark is the newest LastModified that did not fit: everything at or before
        # it was in this listing. (LastModified has whole seconds; an object uploaded after
        # the listing within that very second would be missed, which takes more than
        # `limit` objects last modified in the second of the listing.)
        mark = self._dropped
        kept = {d for lm, d in self._heap if mark is None or lm > mark}
        return {
            "v": STATE_VERSION,
            "bucket": cfg.bucket,
            "prefix": cfg.prefix,
            "count": self.count,
            "digests": encode_digests(kept),
            "watermark": mark.isoformat() if mark is not None else None,
        }
