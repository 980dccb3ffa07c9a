"""The first window of the key a prefix names, asked for while step 0 lists the prefix: a
single-file job's first bytes no longer wait for the listing (docs/decisions.md 720)."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from chalicelib.background import in_background
from chalicelib.providers.calls import CallCounter, aws_client
from chalicelib.providers.s3 import S3ImportConfig
from chalicelib.providers.s3_files.state import Seen


class FirstWindow:
    """GetObject of bytes [0, window) of `key`, sent on another thread. Its answer is the
    window the reader would ask for only when the listing plans that very key with the same
    ETag (so the version If-Match would have asked for) and reading starts at byte 0 with the
    same window; any other answer, or an error, is dropped unread."""

    def __init__(self, identity: Any, bucket: str, key: str, window: int, counter: CallCounter | None) -> None:
        self.key, self.window = key, window
        self._counter = counter
        # Its own counter: its request is the step's (added once it is back), but a miss
        # (no such key) is not an error of the authorization.
        self._mine = CallCounter() if counter is None else \
            CallCounter(authorization_id=counter.authorization_id, rates=counter.rates)
        s3 = aws_client(identity, "s3", self._mine)
        self._pending: Future[Any] | None = in_background(
            lambda: s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{window - 1}"), "s3-first-window")

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
        """The answer, if it holds exactly the window the reader is about to ask for."""
        if (key, pos, window) != (self.key, 0, self.window):
            return None
        resp = self._settle()
        if resp is not None and str(resp.get("ETag")) == etag:
            return resp
        if resp is not None:
            resp["Body"].close()
        return None

    def drop(self) -> None:
        """Wait for the request (its count belongs to this step) and close an unused body."""
        resp = self._settle()
        if resp is not None:
            resp["Body"].close()

    def _settle(self) -> Any | None:
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        try:
            return pending.result()
        except Exception:  # a miss (no such key, refused): the plan's own requests decide
            return None
        finally:
            for op, n in self._mine.counts.items():
                for _ in range(n):
                    if self._counter is not None:
                        self._counter.add(op)
