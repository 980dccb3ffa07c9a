"""TransactWriteItems in moto at a cost that does not grow with the table.

moto backs a transaction up by deep-copying every table it names, once per item of the
transaction, and puts the copy back if the transaction is cancelled. Over a session the
tables hold tens of thousands of items, so each transaction costs hundreds of milliseconds
(real DynamoDB's cost does not depend on the table's size) and the whole test suite slows
down as it goes. Here the backup is the items the transaction names, taken before it runs
and written back if it fails; the tables themselves are no longer copied.

Only the items a transaction names can change (each operation has one key), so restoring
them restores the tables. The emulator applies DynamoDB requests one at a time
(devserver/emulator.py), so nothing else writes while a transaction runs.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

_lock = threading.Lock()
_installed = False


class _CopyWithoutTables:
    """Stands in for the `copy` module inside moto's DynamoDB models: a table is 'copied'
    as itself (the item backup below replaces that copy); everything else is copied."""

    def __init__(self, table_type: type) -> None:
        self._table_type = table_type

    def deepcopy(self, value: Any, memo: dict[int, Any] | None = None) -> Any:
        if isinstance(value, self._table_type):
            return value
        return copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


def _key_of(backend: Any, op_type: str, op: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    name = op.get("TableName")
    if not isinstance(name, str) or name not in backend.tables:
        return None
    table = backend.tables[name]
    if op_type != "Put":
        key = op.get("Key")
        return (name, key) if isinstance(key, dict) else None
    item = op.get("Item") or {}
    attrs = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
    if not all(a in item for a in attrs):
        return None
    return name, {a: item[a] for a in attrs}


def _backup(backend: Any, transact_items: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], Any]]:
    saved = []
    for entry in transact_items:
        if not isinstance(entry, dict) or len(entry) != 1:
            continue  # moto refuses it before writing anything
        op_type, op = next(iter(entry.items()))
        found = _key_of(backend, op_type, op) if isinstance(op, dict) else None
        if found is None:
            continue
        name, key = found
        try:
            before = backend.get_item(name, key)
        except Exception:  # a malformed key: moto refuses the transaction at that item
            continue
        saved.append((name, key, copy.deepcopy(before.to_json()["Attributes"]) if before else None))
    return saved


def _restore(backend: Any, saved: list[tuple[str, dict[str, Any], Any]]) -> None:
    for name, key, attrs in reversed(saved):
        if attrs is None:
            backend.delete_item(name, key)
        else:
            backend.put_item(name, attrs)


def install() -> None:
    """Patch moto's DynamoDB backend in this process (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        from moto.dynamodb import models

        original = models.DynamoDBBackend.transact_write_items

        def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
            saved = _backup(self, transact_items)
            try:
                original(self, transact_items)
            except Exception:
                _restore(self, saved)
                raise

        models.copy = _CopyWithoutTables(models.Table)  # type: ignore[assignment]
        models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
        _installed = True
