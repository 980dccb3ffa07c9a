"""The requests every profile operation sends: what they cost (StoreStats), and batch reads,
100 keys a request, several in flight."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from chalicelib.store.dynamo import Table


@dataclass
class StoreStats:
    """What the store spent: requests per operation (retries included) and capacity units."""

    requests: dict[str, int] = field(default_factory=dict)
    read_units: float = 0.0
    write_units: float = 0.0
    retries: int = 0  # requests re-sent for unprocessed keys/items

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def add(self, op: str, units: float, *, write: bool) -> None:
        self.requests[op] = self.requests.get(op, 0) + 1
        if write:
            self.write_units += units
        else:
            self.read_units += units


def _units(resp: Mapping[str, Any]) -> float:
    cc = resp.get("ConsumedCapacity")
    if not cc:
        return 0.0
    if isinstance(cc, dict):
        cc = [cc]
    return float(sum(float(c.get("CapacityUnits", 0) or 0) for c in cc))


class ProfileRequests:
    """The table, the request counters and the batch reads; ProfileRepo documents the options."""

    def __init__(
        self,
        table: Table,
        *,
        checkpoint: Callable[[int], None] | None = None,
        write_batch: int = 25,
        read_batch: int = 100,
        parallel: int = 1,
        lease_seconds: float = 60.0,
        lease_wait_seconds: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.t = table
        self.checkpoint = checkpoint
        self.write_batch = max(1, min(25, write_batch))
        self.read_batch = max(1, min(100, read_batch))
        self.parallel = max(1, parallel)
        self._stats_lock = threading.Lock()
        self.lease_seconds = lease_seconds
        self.lease_wait_seconds = lease_wait_seconds
        self.sleep = sleep
        self.clock = clock
        self.stats = StoreStats()  # since this repo was made
        self.last_stats = StoreStats()  # of the last public call
        self._lease: tuple[str, str, float] | None = None  # account, owner, renewed at
        self._writes = 0

    def _call(self, op: str, *, write: bool, **kwargs: Any) -> dict[str, Any]:
        method = "".join("_" + c.lower() if c.isupper() else c for c in op).lstrip("_")
        resp: dict[str, Any] = getattr(self.t.client, method)(ReturnConsumedCapacity="TOTAL", **kwargs)
        units = _units(resp)
        with self._stats_lock:
            self.stats.add(op, units, write=write)
            self.last_stats.add(op, units, write=write)
        return resp

    def _backoff(self, seconds: float) -> None:
        with self._stats_lock:
            self.stats.retries += 1
            self.last_stats.retries += 1
        self.sleep(seconds)

    def _batch_get(
        self,
        keys: Sequence[Mapping[str, str]],
        attributes: Sequence[str],
        convert: Callable[[dict[str, Any]], dict[str, Any]] = lambda item: item,
    ) -> list[dict[str, Any]]:
        """`attributes` of every item that exists among `keys` (strongly consistent), any
        order, each passed through `convert` on the thread that read it (decoding overlaps
        the requests still in flight)."""
        chunks = [keys[start : start + self.read_batch] for start in range(0, len(keys), self.read_batch)]
        if self.parallel == 1 or len(chunks) < 2:
            return [item for chunk in chunks for item in self._read_chunk(chunk, attributes, convert)]
        with ThreadPoolExecutor(min(self.parallel, len(chunks))) as pool:
            parts = pool.map(lambda chunk: self._read_chunk(chunk, attributes, convert), chunks)
            return [item for part in parts for item in part]

    def _read_chunk(
        self,
        chunk: Sequence[Mapping[str, str]],
        attributes: Sequence[str],
        convert: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> list[dict[str, Any]]:
        """One BatchGetItem of at most `read_batch` keys, and its unprocessed keys again."""
        rows = self.t.batch_get(chunk, consistent=True, attributes=attributes, per_request=self.read_batch,
                                sleep=self._backoff, send=functools.partial(self._call, "BatchGetItem", write=False))
        return [convert(row) for row in rows]
