"""What the services need of the store, as protocols: the DynamoDB repositories satisfy
them, and so can in-memory ones (tests/fakes/memory_store.py), which is what lets a
use case be tested without moto.

A protocol lists only what the services call. The DynamoDB classes are checked against
it where `Deps` builds them (a return type mypy verifies); the in-memory ones against the
same cases by tests/store/test_repo_contract.py, so neither can drift from the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.domain.alert_rules import AlertRule
    from chalicelib.domain.audiences import Audience, Estimate
    from chalicelib.domain.audit import AuditEvent
    from chalicelib.store.dynamo import Page


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


class Audiences(Protocol):
    """An account's audiences. `update` is conditional on the version (404 gone, 409
    stale); `delete` answers 404 when absent and 409 `audience.in_use` while an export
    job counts on it."""

    def create(self, audience: Audience) -> None: ...

    def get(self, account_id: str, audience_id: str, *, consistent: bool = False) -> Audience | None: ...

    def page(self, account_id: str, *, limit: int, cursor: str | None) -> Page: ...

    def all(self, account_id: str) -> list[Audience]: ...

    def update(self, account_id: str, audience_id: str, changes: dict[str, Any], *,
               expected_version: int) -> Audience: ...

    def delete(self, account_id: str, audience_id: str) -> Audience: ...

    def get_many(self, account_id: str, audience_ids: Iterable[str]) -> dict[str, Audience]: ...

    def cached_sizes(self, account_id: str, keys: Iterable[str], *, now: float) -> dict[str, Estimate]: ...

    def cache_sizes(self, account_id: str, sizes: Mapping[str, Estimate], *, expires_at: int) -> None: ...


class AuditLog(Protocol):
    """The account's audit trail: an event is added to the unit of work of the change it
    records, or put on its own after the change committed. Pages are newest first."""

    def add(self, tx: UnitOfWork, event: AuditEvent) -> None: ...

    def put(self, event: AuditEvent) -> None: ...

    def page(self, account_id: str, *, limit: int, cursor: str | None, object_id: str | None = None,
             user_id: str | None = None, since: str | None = None, until: str | None = None) -> Page: ...


class AlertRules(Protocol):
    """Metric threshold rules per job. `create` refuses with `JobGone` or `RuleLimit` and
    `delete` answers False when the rule was gone, both committing the caller's unit of
    work with them; `move_state` is conditional on the state read (False: another
    evaluator or a delete got there first)."""

    def create(self, rule: AlertRule, *, tx: UnitOfWork) -> AlertRule: ...

    def list_for_job(self, account_id: str, job_id: str) -> list[AlertRule]: ...

    def get(self, account_id: str, job_id: str, rule_id: str) -> AlertRule | None: ...

    def delete(self, rule: AlertRule, *, tx: UnitOfWork) -> bool: ...

    def add_deletes_for_job(self, tx: UnitOfWork, account_id: str, job_id: str) -> None: ...

    def sweep_page(self, shard: int, start: dict[str, Any] | None, *, limit: int = 100
                   ) -> tuple[list[AlertRule], dict[str, Any] | None]: ...

    def move_state(self, rule: AlertRule, to: str, at: str, *, alert: dict[str, Any] | None = None) -> bool: ...

    def clear_alert(self, rule: AlertRule, transition_id: str) -> None: ...


__all__ = ["AlertRules", "Audiences", "AuditLog", "UnitOfWork"]
