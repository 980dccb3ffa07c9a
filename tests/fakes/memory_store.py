"""In-memory repositories and unit of work (chalicelib/store/protocols.py), for tests of
use-case logic that need no AWS behaviour: they run without moto.

They keep the store's promises, not its mechanics: a write's condition (an item is free,
an item exists, the version read is still the version) is checked when the unit commits,
every write of a refused unit is dropped, and the refusal is the store's own
`TransactionFailed`, whose `refused` names the writes that refused. The same cases run
against these and against the DynamoDB repositories on moto (tests/store/test_repo_contract.py),
so a fake that drifts fails there first.

`memory_deps()` builds a `Deps` whose tables do not exist: a use case that reaches for a
repository not faked here fails loudly instead of quietly using moto.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from chalicelib.domain.audiences import Audience
from chalicelib.domain.errors import not_found, stale_version
from chalicelib.domain.ids import new_id
from chalicelib.domain.profiles import Profile, ProfileRecord
from chalicelib.store import keys as K
from chalicelib.store.audiences import PREFIX as AUDIENCE_PREFIX
from chalicelib.store.audiences import in_use
from chalicelib.store.audit import AuditEvent, audit_pk
from chalicelib.store.dynamo import CONDITION_FAILED, NamedWrites, Page, TransactionFailed, now_iso

Key = tuple[str, str]  # (PK, SK)


class MemoryTable:
    """Items by (PK, SK); what a repository stores there is its own business."""

    def __init__(self) -> None:
        self.items: dict[Key, Any] = {}

    def collection(self, pk: str, prefix: str) -> list[tuple[str, Any]]:
        """(SK, item) of the partition's items whose SK starts with prefix, newest first."""
        return sorted(((sk, v) for (p, sk), v in self.items.items() if p == pk and sk.startswith(prefix)),
                      key=lambda kv: kv[0], reverse=True)


@dataclass
class MemoryWrite:
    """One write of a unit of work: `holds` is its condition, read at commit; `apply` makes it."""

    key: Key
    apply: Callable[[], None]
    holds: Callable[[], bool] = lambda: True


class MemoryTransaction(NamedWrites[MemoryWrite]):
    """The in-memory `UnitOfWork`: all writes or none, refusals named as DynamoDB's are."""

    def __init__(self, table: MemoryTable) -> None:
        super().__init__()
        self.table = table

    def add(self, name: str, write: MemoryWrite) -> None:
        if not isinstance(write, MemoryWrite):
            raise TypeError(f"{name!r}: an in-memory transaction takes MemoryWrite, not {type(write).__name__}")
        super().add(name, write)

    def put(self, name: str, item: dict[str, Any], *, condition: str | None = None) -> None:
        """A plain item; the conditions repositories put with are the key's (free, present)."""
        key = (item["PK"], item["SK"])
        holds: Callable[[], bool]
        if condition is None:
            holds = lambda: True  # noqa: E731
        elif condition == "attribute_not_exists(PK)":
            holds = lambda: key not in self.table.items  # noqa: E731
        elif condition == "attribute_exists(PK)":
            holds = lambda: key in self.table.items  # noqa: E731
        else:
            raise ValueError(f"the in-memory transaction does not know the condition {condition!r}")
        stored = copy.deepcopy(item)
        self.add(name, MemoryWrite(key, lambda: self.table.items.__setitem__(key, stored), holds))

    def commit(self) -> None:
        self.ensure_open()
        keys = [w.key for w in self.writes]
        if len(set(keys)) != len(keys):
            # DynamoDB refuses the whole request (ValidationException) before any condition.
            raise ValueError("a transaction cannot write the same item twice")
        reasons = ["None" if w.holds() else CONDITION_FAILED for w in self.writes]
        if CONDITION_FAILED in reasons:
            raise TransactionFailed(reasons, self.names)
        for w in self.writes:
            w.apply()
        self.committed = True


def _page(rows: list[tuple[str, Any]], pk: str, prefix: str, *, limit: int, cursor: str | None,
          view: Callable[[Any], Any]) -> Page:
    """Newest-first pages with the store's cursors (the same encoding, the same checks)."""
    if cursor:
        after = K.decode_cursor(cursor, expect={"PK": pk}, key_names=("PK", "SK"), sk_prefix=prefix)["SK"]
        rows = [(sk, v) for sk, v in rows if sk < after]
    page = rows[:limit]
    more = len(rows) > limit
    return Page(items=[view(v) for _, v in page],
                next_cursor=K.encode_cursor({"PK": pk, "SK": page[-1][0]}) if more and page else None)


class MemoryAudiences:
    """The in-memory `Audiences`."""

    def __init__(self, table: MemoryTable) -> None:
        self.t = table

    @staticmethod
    def _key(account_id: str, audience_id: str) -> Key:
        return K.account_pk(account_id), K.audience_sk(audience_id)

    def create(self, audience: Audience) -> None:
        key = self._key(audience.account_id, audience.id)
        if key in self.t.items:
            raise ValueError(f"audience {audience.id!r} exists already")
        self.t.items[key] = copy.deepcopy(audience)

    def get(self, account_id: str, audience_id: str, *, consistent: bool = False) -> Audience | None:
        found = self.t.items.get(self._key(account_id, audience_id))
        return copy.deepcopy(found) if found is not None else None

    def page(self, account_id: str, *, limit: int, cursor: str | None) -> Page:
        pk = K.account_pk(account_id)
        return _page(self.t.collection(pk, AUDIENCE_PREFIX), pk, AUDIENCE_PREFIX, limit=limit, cursor=cursor,
                     view=copy.deepcopy)

    def update(self, account_id: str, audience_id: str, changes: dict[str, Any], *,
               expected_version: int) -> Audience:
        key = self._key(account_id, audience_id)
        current: Audience | None = self.t.items.get(key)
        if current is None:
            raise not_found("audience", audience_id)
        if current.version != expected_version:
            raise stale_version("audience", expected_version)
        saved = dataclasses.replace(current, **copy.deepcopy(changes), updated_at=now_iso(),
                                    version=current.version + 1)
        self.t.items[key] = saved
        return copy.deepcopy(saved)

    def delete(self, account_id: str, audience_id: str) -> Audience:
        key = self._key(account_id, audience_id)
        current: Audience | None = self.t.items.get(key)
        if current is None:
            raise not_found("audience", audience_id)
        if current.export_jobs > 0:
            raise in_use(audience_id, current.export_jobs)
        del self.t.items[key]
        return current

    def set_export_jobs(self, account_id: str, audience_id: str, n: int) -> None:
        """What the job writes keep on the audience (test setup)."""
        self.t.items[self._key(account_id, audience_id)].export_jobs = n


def _view(e: AuditEvent) -> dict[str, Any]:
    # The store keeps the diff as JSON text: values come back as JSON gives them.
    return {"at": e.at, "user_id": e.user_id, "action": e.action, "object_type": e.object_type,
            "object_id": e.object_id, "label": e.label,
            "diff": json.loads(json.dumps(e.diff, sort_keys=True, default=str)) if e.diff else {}}


class MemoryAudit:
    """The in-memory `AuditLog`."""

    def __init__(self, table: MemoryTable) -> None:
        self.t = table
        self._seq = itertools.count()

    def _key(self, e: AuditEvent) -> Key:
        # Like the store's: the time, the microseconds, then a tie-breaker.
        return audit_pk(e.account_id), f"{e.at}#{e.at_ns // 1000 % 1_000_000:06d}#{next(self._seq):06d}"

    def add(self, tx: MemoryTransaction, event: AuditEvent) -> None:
        key, stored = self._key(event), copy.deepcopy(event)
        tx.add(tx.numbered("audit:"), MemoryWrite(key, lambda: self.t.items.__setitem__(key, stored)))

    def put(self, event: AuditEvent) -> None:
        self.t.items[self._key(event)] = copy.deepcopy(event)

    def page(self, account_id: str, *, limit: int, cursor: str | None, object_id: str | None = None,
             user_id: str | None = None, since: str | None = None, until: str | None = None) -> Page:
        pk = audit_pk(account_id)
        lo, hi = since or "0000", (until or "9999") + "~"
        rows = [(sk, e) for sk, e in self.t.collection(pk, "")
                if lo <= sk <= hi and (not object_id or e.object_id == object_id)
                and (not user_id or e.user_id == user_id)]
        return _page(rows, pk, "", limit=limit, cursor=cursor, view=_view)

    def events(self, account_id: str) -> list[dict[str, Any]]:
        """Every event of the account, newest first (assertions)."""
        return [_view(e) for _, e in self.t.collection(audit_pk(account_id), "")]


class MemoryProfiles:
    """What the audience use cases read of profiles: every profile of an account. `seed`
    stores new records as the store's upsert stores new profiles (identifiers and fields as
    given: the import's mapping normalizes them before); merging into existing profiles is
    the store's and is not faked."""

    def __init__(self) -> None:
        self.by_account: dict[str, list[Profile]] = {}

    def seed(self, account_id: str, records: list[ProfileRecord]) -> None:
        now = now_iso()
        for r in records:
            ids = {kind: [value] for kind, value in r.identifiers.items()}
            self.by_account.setdefault(account_id, []).append(
                Profile(id=new_id("prof"), account_id=account_id, identifiers=ids, fields=copy.deepcopy(r.fields),
                        created_at=now, updated_at=now))

    def iterate(self, account_id: str, page_size: int = 100) -> Iterator[Profile]:
        yield from (copy.deepcopy(p) for p in self.by_account.get(account_id, []))


def memory_deps() -> Any:
    """A `Deps` whose audiences, audit trail, profiles and transactions are in memory."""
    from chalicelib.bootstrap import Deps
    from chalicelib.store.dynamo import Table

    absent = f"in-memory-test-has-no-table-{time.time_ns()}"
    d = Deps(table=Table(absent), profiles_table=Table(absent + "-profiles"))
    table = MemoryTable()
    d.memory = table  # type: ignore[attr-defined]
    d.audiences = MemoryAudiences(table)  # type: ignore[misc]
    d.audit = MemoryAudit(table)  # type: ignore[misc]
    d.profiles = MemoryProfiles()  # type: ignore[assignment]
    d.transaction = lambda: MemoryTransaction(table)  # type: ignore[method-assign]
    return d
