"""Query on a table's key in moto at a cost that does not grow with the table.

moto answers a Query by sorting every item of the table and then keeping the partition's:
on a table of 6,000 items one Query took 550-760 ms on this machine (9-20 ms at 100 items),
while real DynamoDB reads only the partition. Tests, benches and `make run` all slowed down
as their tables filled. Here a Query on the table's own key (not an index) sees only its
partition's items; moto still sorts, pages, filters and projects them itself, so the answer
is unchanged. Index queries keep moto's full pass (an index has no partition map to read).
"""

from __future__ import annotations

import inspect
import threading
from typing import Any

_lock = threading.Lock()
_installed = False
# Queries answered from one partition, and full passes over a table (tests read these).
answered = {"partition": 0, "full": 0}
# While True, every Query takes moto's full pass (tests compare both answers).
full_pass_only = False


def install() -> None:
    """Patch moto's DynamoDB table in this process (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        from moto.dynamodb.models.table import Table

        original_query = Table.query
        original_all_items = Table.all_items
        signature = inspect.signature(original_query)
        # The partition the running Query of this thread reads: (table, hash key).
        reading = threading.local()

        def all_items(self: Any) -> list[Any]:
            only = getattr(reading, "only", None)
            if only is None or only[0] is not self:
                answered["full"] += 1
                return original_all_items(self)
            answered["partition"] += 1
            partition = self.items.get(only[1])  # .get: the map is a defaultdict
            if partition is None:
                return []
            return list(partition.values()) if self.range_key_attr else [partition]

        def query(self: Any, *args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(self, *args, **kwargs)
            hash_key = bound.arguments.get("hash_key")
            if full_pass_only or bound.arguments.get("index_name") or hash_key is None:
                return original_query(self, *args, **kwargs)
            reading.only = (self, hash_key)
            try:
                return original_query(self, *args, **kwargs)
            finally:
                reading.only = None

        Table.all_items = all_items  # type: ignore[method-assign]
        Table.query = query  # type: ignore[method-assign]
        _installed = True
