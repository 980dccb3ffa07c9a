"""The first window of the key a prefix names, asked for while step 0 lists the prefix: a
single-file job's first bytes no longer wait for the listing (docs/decisions.md, "The first
window beside the listing")."""

from __future__ import annotations

import io
from concurrent.futures import Future
from typing import Any

from botocore.response import StreamingBody

from chalicelib.background import in_background
from chalicelib.providers.calls import CallCounter, aws_client
from chalicelib.providers.s3 import S3ImportConfig
from chalicelib.providers.s3_files.state import Seen


class FirstWindow:
    """GetObject of bytes [0, window) of `key`, sent and read on another thread (at most one
    window in memory: the connection is free again while the listing runs, however long it
    takes). Its answer is the window the reader would ask for only when the listing plans
    that very key with the same ETag (so the version If-Match would have asked for) and
    reading starts at byte 0 with the same window; any other answer, or an error, is
    dropped, and the reader asks S3 itself."""

    def __init__(self, identity: Any, bucket: str, key: str, window: int, counter: CallCounter | None) -> None:
        self.key, self.window = key, window
        self._counter = counter
        # Its own counter: its request is the step's (added once it is back), but a miss
        # (no such key) is not an error of the authorization.
        self._mine = CallCounter() if counter is None else \
            CallCounter(authorization_id=counter.authorization_id, rates=counter.rates)
        s3 = aws_client(identity, "s3", self._mine)

        def fetch() -> tuple[str, bytes]:
            resp = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{window - 1}")
            with resp["Body"] as body:
                return str(resp.get("ETag")), body.read()

        self._pending: Future[tuple[str, bytes]] | None = in_background(fetch, "s3-first-window")

    @classmethod
    def ask(cls, identity: Any, cfg: S3ImportConfig, seen: Seen, window: int,
            counter: CallCounter | None) -> FirstWindow | None:
        """Ask now when the prefix can be the key of a plain object and the run remembers no
        file (an object the state covers would not be read: a request for nothing)."""
        prefix = cfg.prefix
        gz = cfg.compression == "gzip" or (cfg.compression == "auto" and prefix.lower().endswith(".gz"))
        if not prefix or prefix.endswith("/") or gz or seen.digests or seen.watermark is not None:
            return None
        return cls(identity, cfg.bucket, prefix, window, counter)

    def take(self, key: str, etag: str, pos: int, window: int) -> Any | None:
        """The answer, if it holds exactly the window the reader is about to ask for (in the
        shape of GetObject's: its bytes as the body)."""
        if (key, pos, window) != (self.key, 0, self.window):
            return None
        got = self._settle()
        if got is None or got[0] != etag:
            return None
        return {"ETag": got[0], "Body": StreamingBody(io.BytesIO(got[1]), len(got[1]))}

    def drop(self) -> None:
        """The plan did not read this window. A request still under way is not waited for
        (a slow or retried miss must not hold the step); it is counted as sent."""
        pending = self._pending
        if pending is not None and not pending.done():
            self._pending = None
            if self._counter is not None:
                self._counter.add("s3.GetObject")
            return
        self._settle()

    def _settle(self) -> tuple[str, bytes] | None:
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        try:
            return pending.result()
        except Exception:  # a miss (no such key, refused): the plan's own requests decide
            return None
        finally:
            if self._counter is not None:
                for op, n in self._mine.counts.items():
                    for _ in range(n):
                        self._counter.add(op)
