"""In-memory repositories (chalicelib/store/protocols.py) and unit of work
(chalicelib/store/unit_of_work.py), for tests of use-case logic that need no AWS
behaviour: they run without moto.

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
import functools
import itertools
import json
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

from chalicelib.bootstrap import Deps
from chalicelib.domain import profiles as P
from chalicelib.domain.alert_rules import AlertRule
from chalicelib.domain.audiences import Audience, Estimate
from chalicelib.domain.audit import AuditEvent
from chalicelib.domain.errors import not_found, stale_version
from chalicelib.domain.profiles import Profile, ProfileRecord
from chalicelib.store import keys as K
from chalicelib.store.alert_rules import (
    MAX_RULES_PER_JOB,
    RULE_SHARDS,
    commit_new_rule,
    commit_rule_delete,
    count_sk,
    rule_sk,
)
from chalicelib.store.audiences import PREFIX as AUDIENCE_PREFIX
from chalicelib.store.audiences import SIZE_PREFIX, in_use
from chalicelib.store.audit import audit_pk
from chalicelib.store.dynamo import CONDITION_FAILED, NamedWrites, Page, TransactionFailed, now_iso
from chalicelib.store.profiles import STEP_HISTORY
from chalicelib.store.profiles.lease import Ticket
from chalicelib.store.unit_of_work import UnitOfWork

Key = tuple[str, str]  # (PK, SK)


class NotFaked(AssertionError):
    """A use case reached a repository method the in-memory store leaves out: test that
    case against moto, or keep the method here (and in tests/store/test_repo_contract.py).
    Each one is also kept in `reached`: a use case's `except Exception` may swallow it, and
    the in-memory tests' conftest fails the test for it all the same."""

    reached: ClassVar[list[str]] = []

    def __init__(self, what: str) -> None:
        super().__init__(what)
        NotFaked.reached.append(what)


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


def page_rows(rows: list[tuple[str, Any]], pk: str, prefix: str, *, limit: int, cursor: str | None,
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
        return page_rows(self.t.collection(pk, AUDIENCE_PREFIX), pk, AUDIENCE_PREFIX, limit=limit, cursor=cursor,
                     view=copy.deepcopy)

    def all(self, account_id: str) -> list[Audience]:
        """Oldest first, as the store's forward Query reads them."""
        return [copy.deepcopy(a) for _, a in reversed(self.t.collection(K.account_pk(account_id), AUDIENCE_PREFIX))]

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

    def get_many(self, account_id: str, audience_ids: Iterable[str]) -> dict[str, Audience]:
        found = (self.get(account_id, i) for i in dict.fromkeys(audience_ids))
        return {a.id: a for a in found if a is not None}

    def cached_sizes(self, account_id: str, keys: Iterable[str], *, now: float) -> dict[str, Estimate]:
        """Only sizes still fresh at `now`, as the store checks them (TTL deletes late)."""
        out: dict[str, Estimate] = {}
        for k in keys:
            kept = self.t.items.get((K.account_pk(account_id), SIZE_PREFIX + k))
            if kept is not None and kept[1] > now:
                out[k] = dataclasses.replace(copy.deepcopy(kept[0]), cached=True)
        return out

    def cache_sizes(self, account_id: str, sizes: Mapping[str, Estimate], *, expires_at: int) -> None:
        for k, e in sizes.items():
            self.t.items[(K.account_pk(account_id), SIZE_PREFIX + k)] = (copy.deepcopy(e), expires_at)

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

    def add(self, tx: UnitOfWork, event: AuditEvent) -> None:
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
        return page_rows(rows, pk, "", limit=limit, cursor=cursor, view=_view)

    def events(self, account_id: str) -> list[dict[str, Any]]:
        """Every event of the account, newest first (assertions)."""
        return [_view(e) for _, e in self.t.collection(audit_pk(account_id), "")]


@dataclass
class MemoryLeaseTicket:
    """ProfileRepo.lease_ahead's ticket without the lease (not faked, see MemoryProfiles)."""

    account_id: str
    owner: str
    released: bool = False

    def hold(self, account_id: str, owner: str) -> None:
        if (account_id, owner) != (self.account_id, self.owner):
            raise ValueError("the ticket was taken for another account or step")
        if self.released:
            raise RuntimeError("profile writes need the account's lease")

    def release(self) -> None:
        self.released = True


class MemoryProfiles:
    """The in-memory profile store: upserts as the store makes them (identifiers as given:
    the import's mapping normalizes them before; a record joins the profile of its first
    known identifier, else creates the one its first identifier derives; an identifier
    never moves to another profile), merged by the domain's rules, exactly once per step
    tag: a profile remembers the outcomes a tag gave it, and a replay answers those without
    merging again. Not faked: the size limit ("too_large") and the account's write lease,
    which only matter to concurrent writers."""

    def __init__(self) -> None:
        self.by_account: dict[str, dict[str, Profile]] = {}
        self.links: dict[tuple[str, str, str], str] = {}  # (account, kind, value) -> profile id
        self.steps: dict[tuple[str, str], list[tuple[str, list[str]]]] = {}  # its last tags and their outcomes
        # per collection job: the highest sequence that wrote it and its outcomes
        self.marks: dict[tuple[str, str], dict[str, tuple[int, list[str]]]] = {}

    def seed(self, account_id: str, records: list[ProfileRecord]) -> None:
        assert self.upsert_batch(account_id, records, step_tag=f"seed-{uuid.uuid4().hex[:8]}") \
            == ["added"] * len(records)

    def upsert_batch(self, account_id: str, records: Iterable[ProfileRecord], *, step_tag: str,
                     rules: Mapping[str, str] | None = None, default: str = "latest",
                     ticket: Ticket | None = None,
                     watermark: tuple[str, int] | None = None) -> list[str]:
        if not step_tag or len(step_tag) > 256:
            raise ValueError("step_tag must be 1 to 256 characters")
        if watermark is not None and (not watermark[0] or len(watermark[0]) > 256 or watermark[1] < 1):
            raise ValueError("a watermark is a job id and a sequence number from 1")
        if ticket is not None:
            ticket.hold(account_id, step_tag)
        mine = self.by_account.setdefault(account_id, {})
        now = now_iso()
        work: dict[str, Profile] = {}  # the batch's profiles, merged into copies until the end
        said: dict[str, list[str]] = {}  # outcomes by profile, in batch order
        links: dict[tuple[str, str, str], str] = {}
        outcomes: list[str] = []
        for r in records:
            pairs = list(r.identifiers.items())
            known = [self.links.get((account_id, k, v)) or links.get((account_id, k, v)) for k, v in pairs]
            pid = next((p for p in known if p), None) or P.profile_id_for(account_id, *pairs[0])
            mine_said = said.setdefault(pid, [])
            recorded = next((letters for tag, letters in self.steps.get((account_id, pid), []) if tag == step_tag),
                            None)
            mark = self.marks.get((account_id, pid), {}).get(watermark[0]) if watermark else None
            if recorded is None and watermark is not None and mark is not None and mark[0] >= watermark[1]:
                recorded = mark[1] if mark[0] == watermark[1] else []
            if recorded is not None:
                n = len(mine_said)
                mine_said.append(recorded[n] if n < len(recorded) else "unchanged")
                outcomes.append(mine_said[-1])
                continue
            if pid not in work:
                work[pid] = copy.deepcopy(mine[pid]) if pid in mine else Profile(
                    id=pid, account_id=account_id, identifiers={}, fields={}, created_at=now, updated_at=now)
            profile = work[pid]
            linked = False
            for (kind, value), owner in zip(pairs, known, strict=True):
                if owner is None and len(profile.identifiers.get(kind, ())) < P.MAX_VALUES_PER_KIND:
                    links[(account_id, kind, value)] = pid
                    profile.identifiers[kind] = sorted({*profile.identifiers.get(kind, ()), value})
                    linked = True
            profile.fields, changed = P.merge(profile.fields, copy.deepcopy(r.fields), rules or {}, default)
            if pid not in mine and not mine_said:
                outcome = "added"
            else:
                outcome = "updated" if linked or changed else "unchanged"
            mine_said.append(outcome)
            outcomes.append(outcome)
        for pid, profile in work.items():
            if all(o == "unchanged" for o in said[pid]):
                continue
            if pid in mine:
                profile.version, profile.updated_at = profile.version + 1, now
            mine[pid] = profile
            tags = self.steps.setdefault((account_id, pid), [])
            tags[:] = [*tags, (step_tag, said[pid])][-STEP_HISTORY:]
            if watermark is not None:
                self.marks.setdefault((account_id, pid), {})[watermark[0]] = (watermark[1], said[pid])
        self.links.update((k, p) for k, p in links.items() if p in mine)
        return outcomes

    def release(self, account_id: str, owner: str) -> None:
        """Nothing to give up: the write lease is not faked."""

    def lease_ahead(self, account_id: str, owner: str) -> Ticket:
        """The lease is not faked; the ticket still refuses another step's writes."""
        return MemoryLeaseTicket(account_id, owner)

    def get(self, account_id: str, profile_id: str, *, consistent: bool = False) -> Profile | None:
        found = self.by_account.get(account_id, {}).get(profile_id)
        return copy.deepcopy(found) if found is not None else None

    def get_many(self, account_id: str, profile_ids: Sequence[str], *,
                 step_tag: str | None = None) -> tuple[dict[str, Profile], set[str]]:
        found = {pid: p for pid in dict.fromkeys(profile_ids) if (p := self.get(account_id, pid)) is not None}
        written = {pid for pid in found
                   if step_tag and any(tag == step_tag for tag, _ in self.steps.get((account_id, pid), []))}
        return found, written

    def find(self, account_id: str, kind: str, value: str) -> Profile | None:
        try:
            normalized = P.normalize_identifier(kind, value)
        except ValueError:
            return None
        pid = self.links.get((account_id, kind, normalized)) if normalized is not None else None
        return self.get(account_id, pid) if pid else None

    def iterate(self, account_id: str, page_size: int = 100) -> Iterator[Profile]:
        yield from (copy.deepcopy(p) for p in list(self.by_account.get(account_id, {}).values()))

    # Not kept in memory: a use case that needs these is tested against moto.
    def lookup(self, account_id: str, identifiers: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        raise NotFaked("Profiles.lookup")

    def shard_page(self, account_id: str, shard: int, start: dict[str, Any] | None,
                   limit: int) -> tuple[list[Profile], dict[str, Any] | None]:
        raise NotFaked("Profiles.shard_page")

    def page(self, account_id: str, *, limit: int, cursor: str | None) -> Page:
        raise NotFaked("Profiles.page")


class MemoryAlertRules:
    """The in-memory `AlertRules`: rules, and each job's rule count, in the shared table,
    so a rule's "the job exists" condition sees the jobs there."""

    def __init__(self, table: MemoryTable) -> None:
        self.t = table

    @staticmethod
    def _key(rule: AlertRule) -> Key:
        return K.account_pk(rule.account_id), rule_sk(rule.job_id, rule.id)

    @staticmethod
    def _count_key(account_id: str, job_id: str) -> Key:
        return K.account_pk(account_id), count_sk(job_id)

    def _count(self, account_id: str, job_id: str) -> int | None:
        row = self.t.items.get(self._count_key(account_id, job_id))
        return None if row is None else int(row["n"])

    def create(self, rule: AlertRule, *, tx: UnitOfWork) -> AlertRule:
        rule.id = rule.id or uuid.uuid4().hex[:12]
        rule.created_at = rule.created_at or now_iso()
        job_key = (K.account_pk(rule.account_id), K.job_sk(rule.job_id))
        count_key = self._count_key(rule.account_id, rule.job_id)
        stored = copy.deepcopy(rule)

        def count_up() -> None:
            self.t.items[count_key] = {"n": (self._count(rule.account_id, rule.job_id) or 0) + 1}

        tx.add("job", MemoryWrite(job_key, lambda: None, lambda: job_key in self.t.items))
        tx.add("rule_count", MemoryWrite(
            count_key, count_up, lambda: (self._count(rule.account_id, rule.job_id) or 0) < MAX_RULES_PER_JOB))
        tx.add("rule", MemoryWrite(self._key(rule), lambda: self.t.items.__setitem__(self._key(stored), stored),
                                   lambda: self._key(rule) not in self.t.items))
        commit_new_rule(tx, rule.job_id)
        return rule

    def list_for_job(self, account_id: str, job_id: str) -> list[AlertRule]:
        rows = self.t.collection(K.account_pk(account_id), count_sk(job_id))
        return [copy.deepcopy(r) for sk, r in reversed(rows) if sk != count_sk(job_id)]

    def get(self, account_id: str, job_id: str, rule_id: str) -> AlertRule | None:
        found = self.t.items.get((K.account_pk(account_id), rule_sk(job_id, rule_id)))
        return copy.deepcopy(found) if found is not None else None

    def delete(self, rule: AlertRule, *, tx: UnitOfWork) -> bool:
        key, count_key = self._key(rule), self._count_key(rule.account_id, rule.job_id)

        def count_down() -> None:
            self.t.items[count_key] = {"n": (self._count(rule.account_id, rule.job_id) or 0) - 1}

        tx.add("rule", MemoryWrite(key, lambda: self.t.items.pop(key), lambda: key in self.t.items))
        tx.add("rule_count", MemoryWrite(count_key, count_down))
        return commit_rule_delete(tx)

    def add_deletes_for_job(self, tx: UnitOfWork, account_id: str, job_id: str) -> None:
        count = self._count(account_id, job_id)
        for r in self.list_for_job(account_id, job_id):
            key = self._key(r)
            tx.add(f"rule:{r.id}", MemoryWrite(key, functools.partial(self.t.items.pop, key, None)))
        count_key = self._count_key(account_id, job_id)
        tx.add("rule_count", MemoryWrite(count_key, lambda: self.t.items.pop(count_key, None),
                                         lambda: self._count(account_id, job_id) == count))

    def sweep_page(self, shard: int, start: dict[str, Any] | None, *, limit: int = 100
                   ) -> tuple[list[AlertRule], dict[str, Any] | None]:
        """The shard's rules, `limit` at a time, sharded as the store shards them."""
        rules = sorted((r for r in self.t.items.values() if isinstance(r, AlertRule)
                        and zlib.crc32(r.id.encode()) % RULE_SHARDS == shard),
                       key=lambda r: (r.account_id, r.job_id, r.id))
        skip = int(start["offset"]) if start else 0
        page = rules[skip:skip + limit]
        more = skip + limit < len(rules)
        return [copy.deepcopy(r) for r in page], ({"offset": skip + limit} if more else None)

    def move_state(self, rule: AlertRule, to: str, at: str, *, alert: dict[str, Any] | None = None) -> bool:
        stored: AlertRule | None = self.t.items.get(self._key(rule))
        if stored is None or stored.alert_state != rule.alert_state:
            return False
        for r in (stored, rule):
            r.alert_state, r.state_changed_at = to, at
            if alert is not None:
                r.pending_alert = copy.deepcopy(alert)
        return True

    def clear_alert(self, rule: AlertRule, transition_id: str) -> None:
        stored: AlertRule | None = self.t.items.get(self._key(rule))
        if stored is not None and stored.pending_alert and stored.pending_alert.get("transition_id") == transition_id:
            stored.pending_alert = None
        rule.pending_alert = None


class MemoryActivity:
    """What the alert rules read of runs: a job's activity series, from the counts its
    steps recorded. Buckets as the store makes them: the last 48 hours, the last 30 days,
    or the Monday-to-Sunday weeks of the last 12, each up to `now`."""

    COUNTS = ("added", "removed", "omitted")

    def __init__(self) -> None:
        self.hours: dict[tuple[str, str, datetime], dict[str, int]] = {}
        self.days: dict[tuple[str, str, date], dict[str, int]] = {}

    def record(self, account_id: str, job_id: str, at: datetime, added: int, removed: int, omitted: int) -> None:
        hour = self.hours.setdefault((account_id, job_id, at.replace(minute=0, second=0, microsecond=0)),
                                     dict.fromkeys(self.COUNTS, 0))
        day = self.days.setdefault((account_id, job_id, at.date()), dict.fromkeys(self.COUNTS, 0))
        for counts in (hour, day):
            for name, n in zip(self.COUNTS, (added, removed, omitted), strict=True):
                counts[name] += n

    def activity(self, account_id: str, job_id: str, granularity: str,
                 now: datetime | None = None) -> list[dict[str, Any]]:
        now = now or datetime.now(UTC)
        if granularity == "hour":
            last = now.replace(minute=0, second=0, microsecond=0)
            return [self._point(f"{h:%Y-%m-%dT%H}:00:00Z", [self.hours.get((account_id, job_id, h))])
                    for h in (last - timedelta(hours=47 - i) for i in range(48))]
        today = now.date()
        first = today - timedelta(days=29 if granularity == "day" else 83)
        width = 1
        if granularity == "week":
            first -= timedelta(days=first.weekday())
            width = 7
        starts = [first + timedelta(days=i) for i in range(0, (today - first).days + 1, width)]
        return [self._point(f"{s:%Y-%m-%d}T00:00:00Z",
                            [self.days.get((account_id, job_id, s + timedelta(days=k)))
                             for k in range(width) if s + timedelta(days=k) <= today])
                for s in starts]

    def _point(self, start: str, rows: list[dict[str, int] | None]) -> dict[str, Any]:
        return {"start": start, **{name: sum(r[name] for r in rows if r) for name in self.COUNTS}}


class MemoryEventBus:
    """Events as the alert consumers get them: type and detail, detail as JSON carries it."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def publish(self, account_id: str, detail_type: str, detail: dict[str, Any]) -> None:
        self.events.append({"account_id": account_id, "detail-type": detail_type,
                            "detail": json.loads(json.dumps(detail))})

    def take(self, account_id: str) -> list[dict[str, Any]]:
        """The account's events since the last take."""
        mine = [e for e in self.events if e["account_id"] == account_id]
        self.events = [e for e in self.events if e["account_id"] != account_id]
        return mine


class MemoryQueue:
    """A queue's messages, in the order sent (what a test asserts was handed on)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        self.messages.append(json.loads(json.dumps(message)))


class MemoryDeps(Deps):
    """`Deps` with its rows in memory: mypy checks each in-memory adapter installed below
    against the protocol the services know it by (chalicelib/store/protocols.py)."""

    memory: MemoryTable

    def transaction(self) -> UnitOfWork:
        return MemoryTransaction(self.memory)


def memory_deps(*, clock: Callable[[], float] = time.time,
                now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> MemoryDeps:
    """A `Deps` whose repositories, unit of work, queues, secrets and scheduler are in
    memory (here and in tests/fakes/memory_runs.py); the tables it names do not exist, so a
    use case reaching for an adapter not faked fails instead of quietly using moto.
    `clock` (epoch seconds) times run leases, `now` stamps log lines written outside a step."""
    from chalicelib.store.dynamo import Table
    from tests.fakes import memory_runs as R

    absent = f"in-memory-test-has-no-table-{time.time_ns()}"
    table = MemoryTable()
    d = MemoryDeps(table=Table(absent), profiles_table=Table(absent + "-profiles"))
    d.memory = table
    d.audiences = MemoryAudiences(table)
    d.audit = MemoryAudit(table)
    d.profiles = MemoryProfiles()
    d.alert_rules = MemoryAlertRules(table)
    d.jobs = R.MemoryJobs(table)
    d.auths = R.MemoryAuths(table)
    d.runs = R.MemoryRuns(table, clock=clock, now=now)
    d.memberships = R.MemoryMemberships()
    d.audience_members = R.MemoryAudienceMembers()
    d.secrets = R.MemorySecrets()
    d.runs_queue = R.MemoryRunQueue()
    d.scheduler = R.MemoryScheduler()
    d.event_bus = MemoryEventBus()
    d.backfill_queue = MemoryQueue()
    return d
