"""Sending audience events in batches (Kinesis PutRecords, SQS SendMessageBatch).

Both APIs take a batch and answer per entry: some entries may fail while the rest are
stored. This module holds what the two destinations share:

* `pack` — consecutive events into batches under a count and a byte limit;
* `EventPart` — what a part step reports to the export service (chalicelib/runs/export.py),
  including the events it did not send because they are over the destination's size limit;
* `send_all` — send each batch, then re-send only the entries the destination refused,
  with exponential backoff and full jitter, a bounded number of times; entries still
  refused make the step fail as transient, so the engine retries the step later (which
  sends the part again: delivery is at least once, and events keep their ids).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from chalicelib.providers.base import ProviderError
from chalicelib.providers.events import encode

# (position of the event in the part, AWS error code) of each entry a send refused.
Refused = list[tuple[int, str]]


@dataclass(frozen=True)
class EventPart:
    key: str  # what the log line names: the destination and the part
    rows: int  # rows of the slice the part took (all of them: a part never splits by time)
    bytes: int  # bytes sent
    skipped: tuple[int, ...] = ()  # positions of events not sent: over the size limit
    requests: int = 0  # batch requests sent, retries included


def event_bytes(event: dict[str, Any]) -> bytes:
    """events.encode(), or the same JSON escaped to ASCII when a value holds a lone
    surrogate (UTF-8 cannot carry it): still deterministic."""
    try:
        return encode(event)
    except UnicodeEncodeError:
        return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def pack(sizes: Sequence[tuple[int, int]], max_count: int, max_bytes: int) -> list[list[int]]:
    """(position, size) pairs, in order, into batches of at most `max_count` entries and
    `max_bytes` bytes; every size must already be <= max_bytes."""
    batches: list[list[int]] = []
    current: list[int] = []
    used = 0
    for position, size in sizes:
        if current and (len(current) >= max_count or used + size > max_bytes):
            batches.append(current)
            current, used = [], 0
        current.append(position)
        used += size
    if current:
        batches.append(current)
    return batches


@dataclass
class Retry:
    """How refused entries are re-sent: `attempts` sends of a batch in all, waiting a random
    time up to min(cap, base * 2**n) before the n-th re-send (full jitter)."""

    attempts: int = 5
    base: float = 0.2
    cap: float = 5.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    clock: Callable[[], float] = time.monotonic

    def delay(self, retry: int) -> float:
        return self.rng.uniform(0, min(self.cap, self.base * 2 ** retry))


def send_all(
    batches: Sequence[list[int]],
    send: Callable[[list[int]], Refused],
    retry: Retry,
    *,
    deadline: float,
    what: str,
) -> int:
    """Send every batch; `send(positions)` returns the entries refused (raising for a
    refusal no retry can fix). Returns the number of requests sent."""
    requests = 0
    for batch in batches:
        pending = batch
        for attempt in range(retry.attempts):
            requests += 1
            refused = send(pending)
            if not refused:
                break
            pending = [position for position, _ in refused]
            codes = sorted({code for _, code in refused})
            if attempt + 1 >= retry.attempts:
                raise ProviderError(
                    f"{what} still refused {len(pending)} events after {retry.attempts} attempts "
                    f"({', '.join(codes)}); the step is retried later and sends them again",
                    transient=True,
                )
            wait = retry.delay(attempt)
            if retry.clock() + wait > deadline:
                raise ProviderError(
                    f"{what} refused {len(pending)} events ({', '.join(codes)}) and the step is out "
                    "of time; it is retried later and sends them again",
                    transient=True,
                )
            retry.sleep(wait)
    return requests


__all__ = ["EventPart", "Refused", "Retry", "event_bytes", "pack", "send_all"]
