"""The composition root: which store adapters and registry the services use.

Built lazily on first use; tests build their own `Deps` instead of patching anything.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from chalicelib.providers.registry import Registry, default_registry
from chalicelib.store.dynamo import AccountRepo, AuthorizationRepo, JobRepo, Table
from chalicelib.store.queues import RunQueue
from chalicelib.store.secrets import SecretsStore


@dataclass
class Deps:
    table: Table = field(default_factory=Table)
    registry: Registry = field(default_factory=default_registry)
    secrets: SecretsStore = field(default_factory=SecretsStore)
    runs: RunQueue = field(default_factory=RunQueue)

    @property
    def accounts(self) -> AccountRepo:
        return AccountRepo(self.table)

    @property
    def auths(self) -> AuthorizationRepo:
        return AuthorizationRepo(self.table)

    @property
    def jobs(self) -> JobRepo:
        return JobRepo(self.table)


_deps: Deps | None = None
_lock = threading.Lock()


def deps() -> Deps:
    global _deps
    if _deps is None:
        with _lock:
            if _deps is None:
                _deps = Deps()
    return _deps


def use(new: Deps | None) -> None:
    """Swap the composition root (tests inject a registry with extra providers)."""
    global _deps
    _deps = new
