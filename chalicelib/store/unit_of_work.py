"""Writes that commit together: what a repository adds its writes to. `store.dynamo.Transaction`
is the DynamoDB one; tests have an in-memory one (tests/fakes/memory_store.py)."""

from __future__ import annotations

from typing import Any, Protocol


class UnitOfWork(Protocol):
    """Writes that commit together, once. Repositories add theirs under a name unique in
    the unit; a refused condition cancels every write and raises
    `store.dynamo.TransactionFailed`, whose `refused` names the writes that refused."""

    def add(self, name: str, write: Any) -> None: ...

    def drop(self, name: str) -> None:
        """Take a write out before the commit: a unit refused for one write can be retried
        without it."""

    def put(self, name: str, item: dict[str, Any], *, condition: str | None = None) -> None: ...

    def numbered(self, prefix: str) -> str: ...

    @property
    def names(self) -> list[str]: ...

    def __contains__(self, name: object) -> bool: ...

    def __len__(self) -> int: ...

    def commit(self) -> None: ...


__all__ = ["UnitOfWork"]
