"""In-memory repositories of the run pipeline (chalicelib/runs/, runs/engine.py and its
stages): runs with their leases and step commits, log lines, activity and request counters,
jobs saved with their usage moves, authorizations, secrets, export plans and membership
sets, and the queue the engine hands its next step to.

Like tests/fakes/memory_store.py, they keep the store's promises, not its mechanics: every
condition the DynamoDB repositories write with is checked when the unit of work commits, a
refused unit changes nothing, and the refusal is the store's own. tests/store/test_repo_contract.py
runs the same cases on both.

Two clocks stand in for the store's: `clock` (epoch seconds, leases) and `now` (log lines
written outside a step, which DynamoDB stamps with the wall clock). Tests hold both still
or move them; nothing here sleeps.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from chalicelib.domain.errors import Conflict, Invalid, not_found, stale_version
from chalicelib.domain.models import Authorization, HealthStatus, Job
from chalicelib.domain.runs import ENDED, LogLine, Run, RunStatus, StepCommit
from chalicelib.domain.schedules import SchedulerExpression, wanted_expression
from chalicelib.domain.statuses import JobStatus
from chalicelib.store import keys as K
from chalicelib.store.dynamo import Page, TransactionFailed, now_iso
from chalicelib.store.jobs import AuthorizationGone, UsageMove, audience_of
from chalicelib.store.membership import MissingChunk, PlanRef, PlanRow, SetRef, chunk_ids, chunk_plan
from chalicelib.store.runs import LOG_TTL_DAYS, log_prefix, run_sk, series_buckets
from chalicelib.store.secrets import SecretMissing
from chalicelib.store.unit_of_work import UnitOfWork
from tests.fakes.memory_store import (
    Key,
    MemoryActivity,
    MemoryTable,
    MemoryTransaction,
    MemoryWrite,
    NotFaked,
    page_rows,
)

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.domain.membership import MemberState, Verdict
    from chalicelib.store.audience_members import BackfillState, Change
    from chalicelib.store.authorizations import HealthRecorded
    from chalicelib.store.scheduler import SyncOutcome

LEVELS = ["debug", "info", "warning", "error"]


def _log_ts(at: datetime) -> str:
    # The store's own stamp: milliseconds, so newest-first listings keep the write order.
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


@dataclass
class StoredRun:
    """A run as the store keeps it: the run, and its lease's end (not part of `Run`)."""

    run: Run
    lease_until: float | None = None


class MemoryRuns(MemoryActivity):
    """The in-memory `RunRepo`: runs in the shared table, log lines, activity and requests."""

    def __init__(self, table: MemoryTable, *, clock: Callable[[], float] = time.time,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        super().__init__()
        self.t = table
        self.clock = clock
        self.now = now
        self._seq = itertools.count()
        self.requests: dict[tuple[str, str, datetime], dict[str, int]] = {}

    @staticmethod
    def _key(account_id: str, job_id: str, run_id: str) -> Key:
        return K.account_pk(account_id), run_sk(job_id, run_id)

    def _stored(self, key: Key) -> StoredRun | None:
        found = self.t.items.get(key)
        return found if isinstance(found, StoredRun) else None

    # -- runs --------------------------------------------------------------------------

    def add_new_run(self, tx: UnitOfWork, run: Run, lease_seconds: int | None = None) -> None:
        key = self._key(run.account_id, run.job_id, run.id)
        fresh = Run(id=run.id, job_id=run.job_id, account_id=run.account_id, trigger=run.trigger,
                    status=RunStatus(run.status), started_at=run.started_at, requested_by=run.requested_by,
                    origin=run.origin)
        until = None
        if lease_seconds is not None:
            fresh.lease_owner = run.origin
            until = int(self.clock()) + lease_seconds
        stored = StoredRun(fresh, until)
        tx.add("run", MemoryWrite(key, lambda: self.t.items.__setitem__(key, stored),
                                  lambda: key not in self.t.items))

    def get(self, account_id: str, job_id: str, run_id: str) -> Run | None:
        found = self._stored(self._key(account_id, job_id, run_id))
        return copy.deepcopy(found.run) if found is not None else None

    def page(self, account_id: str, job_id: str, *, limit: int, cursor: str | None) -> Page:
        pk, prefix = K.account_pk(account_id), f"RUN#{job_id}#"
        rows = [(sk, v.run) for sk, v in self.t.collection(pk, prefix) if isinstance(v, StoredRun)]
        return page_rows(rows, pk, prefix, limit=limit, cursor=cursor, view=copy.deepcopy)

    def acquire(self, run: Run, owner: str, lease_seconds: int) -> bool:
        """The lease of the run's current step: free, lapsed, or already this owner's."""
        found = self._stored(self._key(run.account_id, run.job_id, run.id))
        now = int(self.clock())
        if found is None or found.run.step != run.step:
            return False
        held = found.lease_until is not None and found.lease_until >= now and found.run.lease_owner != owner
        if held:
            return False
        found.run.lease_owner, found.lease_until = owner, now + lease_seconds
        return True

    def add_commit(self, tx: UnitOfWork, run: Run, owner: str, c: StepCommit, now: str) -> None:
        """Step n to n+1, if the run is still at step n under this lease."""
        key = self._key(run.account_id, run.job_id, run.id)

        def holds() -> bool:
            found = self._stored(key)
            return found is not None and found.run.step == c.step and found.run.lease_owner == owner

        def apply() -> None:
            found = self._stored(key)
            assert found is not None  # held at commit
            r = found.run
            r.step = c.step + 1
            # As JSON carries it: the store keeps the cursor as JSON text.
            r.cursor = json.loads(json.dumps(c.cursor, sort_keys=True)) if c.cursor is not None else None
            r.processed, r.total_unit, r.read = c.processed, c.total_unit, c.read
            if c.total is not None:
                r.total = c.total
            r.added += c.added
            r.removed += c.removed
            r.omitted += sum(c.omitted_reasons.values())
            for reason, n in c.omitted_reasons.items():
                r.omitted_reasons[reason] = r.omitted_reasons.get(reason, 0) + n
            for metric, v in c.cost.items():
                r.cost[metric] = r.cost.get(metric, 0.0) + float(v)
            if c.status is not None:
                r.status, r.finished_at = RunStatus(c.status), now
                if c.error is not None:
                    r.error = c.error
            r.lease_owner, found.lease_until = None, None

        tx.add("run", MemoryWrite(key, apply, holds))

    def add_status(self, tx: UnitOfWork, run: Run, status: RunStatus, *, error: str | None, now: str,
                   expect_step: int | None = None, origin: str | None = None) -> None:
        key = self._key(run.account_id, run.job_id, run.id)

        def holds() -> bool:
            found = self._stored(key)
            return found is not None and (expect_step is None or found.run.step == expect_step)

        def apply() -> None:
            found = self._stored(key)
            assert found is not None  # held at commit
            r = found.run
            r.status, r.error = status, error
            if origin is not None:
                r.origin = origin
            if status in ENDED:
                r.finished_at = now
            r.lease_owner, found.lease_until = None, None

        tx.add("run", MemoryWrite(key, apply, holds))

    def mark_enqueued(self, run: Run, step: int) -> bool:
        found = self._stored(self._key(run.account_id, run.job_id, run.id))
        if found is None or found.run.enqueued_step >= step:
            return False
        found.run.enqueued_step = step
        return True

    # -- log lines ---------------------------------------------------------------------

    def _log_row(self, account_id: str, job_id: str, line: LogLine, at: datetime) -> tuple[Key, dict[str, Any]]:
        ts = _log_ts(at)
        # DynamoDB breaks a tie within one millisecond with a random suffix; here the
        # write order does, so a test never depends on chance (none may depend on either).
        key = (K.account_pk(account_id), f"{log_prefix(job_id)}{ts}#{next(self._seq):06x}")
        row = {"PK": key[0], "SK": key[1], "type": "log", "timestamp": ts, "level": line.level, "code": line.code,
               "message": line.message[:2000], "run_id": line.run_id, "user": line.user,
               "context_json": json.dumps(line.context, sort_keys=True, default=str),
               "expires_at": int(at.timestamp()) + LOG_TTL_DAYS * 86400}
        # The store's codec leaves out what is None, so a row has no such key.
        return key, {k: v for k, v in row.items() if v is not None}

    def add_logs(self, tx: UnitOfWork, account_id: str, job_id: str, lines: list[LogLine],
                 at: datetime) -> None:
        for i, line in enumerate(lines):
            key, row = self._log_row(account_id, job_id, line, at + timedelta(milliseconds=i))
            tx.add(tx.numbered("log:"), MemoryWrite(key, functools.partial(self.t.items.__setitem__, key, row)))

    def write_logs(self, account_id: str, job_id: str, lines: list[LogLine]) -> None:
        at = self.now()
        for line in lines:
            key, row = self._log_row(account_id, job_id, line, at)
            self.t.items[key] = row

    def logs(self, account_id: str, job_id: str, *, limit: int, cursor: str | None,
             level: str | None) -> Page:
        pk, prefix = K.account_pk(account_id), log_prefix(job_id)
        rows = self.t.collection(pk, prefix)
        if level:
            floor = LEVELS.index(level)
            rows = [(sk, r) for sk, r in rows if r["level"] not in LEVELS or LEVELS.index(r["level"]) >= floor]
        return page_rows(rows, pk, prefix, limit=limit, cursor=cursor, view=dict)

    def lines(self, account_id: str, job_id: str) -> list[dict[str, Any]]:
        """Every log line of the job, newest first, context decoded (assertions)."""
        return [{**r, "context": json.loads(r["context_json"])}
                for _, r in self.t.collection(K.account_pk(account_id), log_prefix(job_id))]

    # -- activity and requests -------------------------------------------------------------

    def add_activity(self, tx: UnitOfWork, account_id: str, job_id: str, at: datetime, added: int,
                     removed: int, omitted: int) -> None:
        if not (added or removed or omitted):
            return
        key = (f"ACCT#{account_id}#ACT#{job_id}", f"{at:%Y-%m-%dT%H:%M:%S.%f}#{next(self._seq)}")
        tx.add(tx.numbered("activity:"), MemoryWrite(
            key, lambda: self.record(account_id, job_id, at, added, removed, omitted)))

    def add_requests(self, tx: UnitOfWork, account_id: str, auth_id: str, at: datetime, requests: int,
                     errors: int) -> None:
        if not (requests or errors):
            return
        hour = at.replace(minute=0, second=0, microsecond=0)
        key = (f"ACCT#{account_id}#AUTH#{auth_id}#ACT", f"H#{hour:%Y-%m-%dT%H}")

        def apply() -> None:
            counts = self.requests.setdefault((account_id, auth_id, hour), {"requests": 0, "errors": 0})
            counts["requests"] += requests
            counts["errors"] += errors

        tx.add("requests", MemoryWrite(key, apply))

    def request_activity(self, account_id: str, auth_id: str, granularity: str,
                         now: datetime | None = None) -> list[dict[str, Any]]:
        now = now or datetime.now(UTC)
        buckets, span, label = series_buckets(granularity, now)
        last = now.replace(minute=0, second=0, microsecond=0)
        counted = [[0, 0] for _ in buckets]
        for (acct, auth, hour), counts in self.requests.items():
            if acct != account_id or auth != auth_id or not buckets[0] <= hour <= last:
                continue
            i = int((hour - buckets[0]) / span)
            if 0 <= i < len(counted):
                counted[i][0] += counts["requests"]
                counted[i][1] += counts["errors"]
        return [{"start": b.strftime(label), "api_requests": n, "errors": e}
                for b, (n, e) in zip(buckets, counted, strict=True)]

    # Not kept in memory: a use case that needs these is tested against moto.
    def open_window(self, account_id: str, job_id: str, at: datetime, started_at: str) -> str:
        raise NotFaked("Runs.open_window")

    def add_window_counts(self, tx: UnitOfWork, account_id: str, job_id: str, run_id: str, *, processed: int,
                          added: int, duplicates: int, omitted: dict[str, int]) -> None:
        raise NotFaked("Runs.add_window_counts")

    def record_requests(self, account_id: str, auth_id: str, at: datetime, requests: int,
                        errors: int) -> None:
        raise NotFaked("Runs.record_requests")


class MemoryAuths:
    """Authorizations in the shared table (a job's usage moves count on them)."""

    def __init__(self, table: MemoryTable) -> None:
        self.t = table

    def put(self, auth: Authorization) -> None:
        self.t.items[(K.account_pk(auth.account_id), K.auth_sk(auth.id))] = copy.deepcopy(auth)

    def get(self, account_id: str, auth_id: str, *, consistent: bool = False) -> Authorization | None:
        found = self.t.items.get((K.account_pk(account_id), K.auth_sk(auth_id)))
        return copy.deepcopy(found) if isinstance(found, Authorization) else None

    # Not kept in memory: a use case that needs these is tested against moto.
    def put_new(self, auth: Authorization) -> None:
        raise NotFaked("Authorizations.put_new")

    def add_new(self, tx: UnitOfWork, auth: Authorization) -> None:
        raise NotFaked("Authorizations.add_new")

    def mark_used(self, account_id: str, auth_id: str, at: str) -> None:
        raise NotFaked("Authorizations.mark_used")

    def page(self, account_id: str, *, limit: int, cursor: str | None, provider: str | None = None,
             health: str | None = None) -> Page:
        raise NotFaked("Authorizations.page")

    def update(self, account_id: str, auth_id: str, changes: dict[str, Any], *,
               expected_version: int | None) -> Authorization:
        raise NotFaked("Authorizations.update")

    def get_many(self, account_id: str, auth_ids: Iterable[str], *,
                 consistent: bool = False) -> dict[str, Authorization]:
        raise NotFaked("Authorizations.get_many")

    def get_pairs(self, pairs: Iterable[tuple[str, str]], *,
                  consistent: bool = False) -> dict[str, Authorization]:
        raise NotFaked("Authorizations.get_pairs")

    def sweep_page(self, shard: int, start: dict[str, Any] | None, *, limit: int = 100,
                   ) -> tuple[list[tuple[str, str]], dict[str, Any] | None]:
        raise NotFaked("Authorizations.sweep_page")

    def record_health(self, auth: Authorization, status: HealthStatus, reason: str | None, *,
                      at: str, by: str, provider_account: str | None = None,
                      alert_when: Callable[[HealthStatus, HealthStatus], bool] = lambda prev, new: False,
                      ) -> HealthRecorded:
        raise NotFaked("Authorizations.record_health")

    def clear_health_alert(self, account_id: str, auth_id: str, transition_id: str) -> None:
        raise NotFaked("Authorizations.clear_health_alert")

    def health_history(self, account_id: str, auth_id: str, *, limit: int, cursor: str | None) -> Page:
        raise NotFaked("Authorizations.health_history")

    def delete_if_unused(self, account_id: str, auth_id: str) -> Authorization:
        raise NotFaked("Authorizations.delete_if_unused")


class MemoryJobs:
    """The in-memory `JobRepo` as the engine uses it: jobs saved over the version read (and
    the status expected), with their usage moves and audience counts in the same unit."""

    def __init__(self, table: MemoryTable) -> None:
        self.t = table

    @staticmethod
    def _key(account_id: str, job_id: str) -> Key:
        return K.account_pk(account_id), K.job_sk(job_id)

    def put(self, job: Job) -> None:
        self.t.items[self._key(job.account_id, job.id)] = copy.deepcopy(job)

    def get(self, account_id: str, job_id: str, *, consistent: bool = False) -> Job | None:
        found = self.t.items.get(self._key(account_id, job_id))
        return copy.deepcopy(found) if isinstance(found, Job) else None

    def create(self, job: Job, *, new_auth: Authorization | None = None, auth_provider: str,
               tx: UnitOfWork | None = None) -> None:
        """A new job, counted on its authorization (which must be of `auth_provider`) and its
        audience. An inline new authorization is the API's business and is not faked."""
        if new_auth is not None:
            raise NotFaked("Jobs.create with an inline new authorization")
        tx = tx if tx is not None else MemoryTransaction(self.t)
        key, stored = self._key(job.account_id, job.id), copy.deepcopy(job)
        self._commit(tx, MemoryWrite(key, lambda: self.t.items.__setitem__(key, stored),
                                     lambda: key not in self.t.items),
                     job.account_id, [UsageMove(job.authorization_id, None, job.status, provider=auth_provider)],
                     job_id=job.id, version=None, audiences=[(audience_of(job), 1)])

    def save(self, before: Job, after: Job, *, expected_version: int | None,
             expected_status: JobStatus | None = None, tx: UnitOfWork | None = None) -> Job:
        tx = tx if tx is not None else MemoryTransaction(self.t)
        after.version = before.version + 1
        after.updated_at = now_iso()
        if expected_version is not None and expected_version != before.version:
            raise stale_version("job", expected_version)
        key, stored = self._key(after.account_id, after.id), copy.deepcopy(after)

        def job_holds() -> bool:
            found = self.t.items.get(key)
            return (isinstance(found, Job) and found.version == before.version
                    and (expected_status is None or found.status is expected_status))

        if before.authorization_id == after.authorization_id:
            moves = [UsageMove(after.authorization_id, before.status, after.status)]
        else:
            moves = [UsageMove(before.authorization_id, before.status, None),
                     UsageMove(after.authorization_id, None, after.status, provider=after.provider)]
        before_aud, after_aud = audience_of(before), audience_of(after)
        counted = [] if before_aud == after_aud else [(before_aud, -1), (after_aud, 1)]
        self._commit(tx, MemoryWrite(key, lambda: self.t.items.__setitem__(key, stored), job_holds),
                     after.account_id, moves, job_id=after.id,
                     version=expected_version if expected_version is not None else before.version,
                     audiences=counted)
        return after

    def clear_alert(self, account_id: str, job_id: str, transition_id: str) -> None:
        found = self.t.items.get(self._key(account_id, job_id))
        if isinstance(found, Job) and (found.pending_alert or {}).get("transition_id") == transition_id:
            found.pending_alert = None

    def _usage_write(self, account_id: str, move: UsageMove) -> MemoryWrite:
        key = (K.account_pk(account_id), K.auth_sk(move.auth_id))

        def holds() -> bool:
            auth = self.t.items.get(key)
            return isinstance(auth, Authorization) and (move.provider is None or auth.provider == move.provider)

        def apply() -> None:
            auth: Authorization = self.t.items[key]
            if move.leave is not None:
                auth.usage[move.leave.value] -= 1
            if move.enter is not None:
                auth.usage[move.enter.value] += 1
                auth.last_used_at = now_iso()

        return MemoryWrite(key, apply, holds)

    def _audience_write(self, account_id: str, audience_id: str, delta: int) -> MemoryWrite:
        key = (K.account_pk(account_id), K.audience_sk(audience_id))

        def apply() -> None:
            self.t.items[key].export_jobs += delta

        return MemoryWrite(key, apply, lambda: key in self.t.items)

    def _commit(self, tx: UnitOfWork, job_write: MemoryWrite, account_id: str, moves: Iterable[UsageMove],
                *, job_id: str, version: int | None, audiences: list[tuple[str | None, int]]) -> None:
        """The store's answers to a refused job write, in its order: the job gone (404) or
        changed (409), a write the caller added refused (409), a new audience missing (400),
        an authorization gone. Decrements on what is gone are dropped and the unit retried."""
        moves = [m for m in moves if m.leave != m.enter]
        counted = [(aud, delta) for aud, delta in audiences if aud and delta]
        others = set(tx.names)
        tx.add("job", job_write)
        for aud, delta in counted:
            tx.add(f"audience:{aud}", self._audience_write(account_id, aud, delta))
        for m in moves:
            tx.add(f"usage:{m.auth_id}", self._usage_write(account_id, m))
        while True:
            try:
                tx.commit()
                return
            except TransactionFailed as exc:
                refused = set(exc.refused)
                if "job" in refused:
                    if self.get(account_id, job_id) is None:
                        raise not_found("job", job_id) from None
                    raise stale_version("job", version) from None
                if refused & others:
                    raise Conflict("a related object changed at the same time; retry",
                                   code="conflict.concurrent_change") from None
                gone = [(aud, delta) for aud, delta in counted if f"audience:{aud}" in refused]
                if any(delta > 0 for _, delta in gone):
                    aud = next(a for a, delta in gone if delta > 0)
                    raise Invalid(f"audience {aud!r} was not found", code="audience.not_found",
                                  fields={"config.audience_id": "no such audience in this account"}) from None
                failed = [m for m in moves if f"usage:{m.auth_id}" in refused]
                if any(m.enter is not None for m in failed):
                    raise AuthorizationGone(next(m.auth_id for m in failed if m.enter is not None)) from None
                for aud, _ in gone:
                    tx.drop(f"audience:{aud}")
                for m in failed:
                    tx.drop(f"usage:{m.auth_id}")
                counted = [a for a in counted if a not in gone]
                moves = [m for m in moves if m not in failed]

    # Not kept in memory: a use case that needs these is tested against moto.
    def page(self, account_id: str, *, limit: int, cursor: str | None, status: str | None = None,
             provider: str | None = None, job_type: str | None = None,
             authorization_id: str | None = None) -> Page:
        raise NotFaked("Jobs.page")

    def jobs_of_authorization(self, account_id: str, auth_id: str, limit: int = 200) -> list[Job]:
        raise NotFaked("Jobs.jobs_of_authorization")

    def due_for_purge(self, shard: int, now_iso_: str, *, limit: int = 100) -> list[tuple[str, str]]:
        raise NotFaked("Jobs.due_for_purge")

    def delete(self, job: Job, *, tx: UnitOfWork | None = None) -> None:
        raise NotFaked("Jobs.delete")


class MemorySecrets:
    """Secret values by name, as Secrets Manager hands them back (JSON)."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, Any]] = {}

    def name_for(self, account_id: str, auth_id: str) -> str:
        return f"switchyard/memory/{account_id}/{auth_id}"

    def create(self, name: str, value: dict[str, Any], *, tags: dict[str, str]) -> None:
        if name in self.values:
            raise ValueError(f"secret {name!r} exists already")
        self.values[name] = json.loads(json.dumps(value))

    def read(self, name: str) -> dict[str, Any]:
        return json.loads(json.dumps(self.values[name]))

    def read_known(self, name: str) -> dict[str, Any]:
        if name not in self.values:
            raise SecretMissing(name)
        return self.read(name)

    # Not kept in memory: a use case that needs these is tested against moto.
    def put_version(self, name: str, value: dict[str, Any]) -> str:
        raise NotFaked("Secrets.put_version")

    def schedule_deletion(self, name: str) -> None:
        raise NotFaked("Secrets.schedule_deletion")

    def delete_now(self, name: str) -> None:
        raise NotFaked("Secrets.delete_now")


@dataclass
class QueuedMessage:
    body: dict[str, Any]
    delay_seconds: int
    message_id: str


class MemoryRunQueue:
    """The runs queue: what the engine sent, in order, with the delay it asked for."""

    def __init__(self) -> None:
        self.messages: list[QueuedMessage] = []
        self._ids = itertools.count(1)

    def send(self, message: dict[str, Any], *, delay_seconds: int = 0) -> None:
        self.messages.append(QueuedMessage(json.loads(json.dumps(message)), delay_seconds,
                                           f"msg-{next(self._ids):05d}"))

    def take(self) -> QueuedMessage | None:
        return self.messages.pop(0) if self.messages else None


@dataclass
class MemoryScheduler:
    """Which jobs' schedules were removed by a use case (a failed job waits for a resume),
    each job's last sync (its schedule and whether it was active), and the expression each
    job holds. `sync` answers as the store does, from the same rule (`wanted_expression`):
    its "unchanged" compares the expression and its time zone, where the store also compares
    the target, which is the same for one job. EventBridge Scheduler's side of it is
    tests/store/test_scheduler_store.py."""

    removed: list[tuple[str, str]] = field(default_factory=list)
    synced: dict[tuple[str, str], tuple[Any, bool]] = field(default_factory=dict)
    present: dict[tuple[str, str], SchedulerExpression] = field(default_factory=dict)

    def remove(self, account_id: str, job_id: str) -> bool:
        self.removed.append((account_id, job_id))
        return self.present.pop((account_id, job_id), None) is not None

    def sync(self, account_id: str, job_id: str, schedule: Mapping[str, Any] | None, active: bool, *,
             now: datetime | None = None) -> SyncOutcome:
        key = (account_id, job_id)
        wanted = wanted_expression(schedule, active, now.astimezone(UTC) if now is not None else datetime.now(UTC))
        self.synced[key] = (schedule, active)
        if wanted is None:
            return "deleted" if self.present.pop(key, None) is not None else "absent"
        before, self.present[key] = self.present.get(key), wanted
        if before is None:
            return "created"
        return "unchanged" if before == wanted else "updated"


@dataclass
class _Set:
    ids: list[str]
    expired: bool = False


class MemoryMemberships:
    """The in-memory `MembershipRepo`: export jobs' membership sets and runs' plans, with
    the store's refs (chunks counted as the store cuts them) and its MissingChunk."""

    def __init__(self) -> None:
        self.sets: dict[tuple[str, str, int, str], _Set] = {}
        self.plans: dict[tuple[str, str, str], list[PlanRow]] = {}

    def write_set(self, account_id: str, job_id: str, generation: int, set_id: str, ids: Iterable[str]) -> SetRef:
        ordered = sorted(set(ids))
        self.sets[(account_id, job_id, generation, set_id)] = _Set(ordered)
        return SetRef(generation, set_id, len(chunk_ids(ordered)), len(ordered))

    def read_set(self, account_id: str, job_id: str, ref: SetRef) -> set[str]:
        if ref.chunks == 0:
            return set()
        found = self.sets.get((account_id, job_id, ref.generation, ref.set_id))
        if found is None:
            raise MissingChunk(f"membership generation {ref.generation}: 0 of {ref.chunks} chunks found")
        return set(found.ids)

    def sweep(self, account_id: str, job_id: str, keep: SetRef | None) -> int:
        """Expire every live set of the job but `keep`; the chunks expired."""
        n = 0
        for (acct, job, gen, set_id), s in self.sets.items():
            if acct == account_id and job == job_id and not s.expired and \
                    not (keep and (gen, set_id) == (keep.generation, keep.set_id)):
                s.expired = True
                n += len(chunk_ids(s.ids))
        return n

    def expire_set(self, account_id: str, job_id: str, ref: SetRef) -> int:
        found = self.sets.get((account_id, job_id, ref.generation, ref.set_id))
        if found is not None:
            found.expired = True
        return ref.chunks

    def live_sets(self, account_id: str, job_id: str) -> list[tuple[int, str]]:
        """(generation, set id) of the job's sets no TTL was given (assertions)."""
        return sorted((gen, set_id) for (acct, job, gen, set_id), s in self.sets.items()
                      if acct == account_id and job == job_id and not s.expired)

    def write_plan(self, account_id: str, run_id: str, set_id: str, rows: Sequence[PlanRow]) -> PlanRef:
        starts, first = [], 0
        for _, count in chunk_plan(rows):
            starts.append(first)
            first += count
        self.plans[(account_id, run_id, set_id)] = json.loads(json.dumps([list(r) for r in rows]))
        return PlanRef(set_id, len(rows), tuple(starts))

    def read_plan(self, account_id: str, run_id: str, ref: PlanRef, start: int, limit: int) -> list[PlanRow]:
        rows = self.plans.get((account_id, run_id, ref.set_id))
        if rows is None:
            raise MissingChunk(f"plan chunk 0 of run {run_id} is missing")
        return [(a, pid, list(values)) for a, pid, values in rows[start:min(ref.rows, start + limit)]]

    def delete_plan(self, account_id: str, run_id: str, ref: PlanRef) -> None:
        self.plans.pop((account_id, run_id, ref.set_id), None)


class MemoryAudienceMembers:
    """What an export's step 0 asks of an audience's change log before anything else:
    whether its backfill finished. None here, as for an audience no backfill started, so
    exports take the full path (reading every profile)."""

    def backfill(self, account_id: str, audience_id: str) -> None:
        return None

    # Not kept in memory: a use case that needs these is tested against moto.
    def state(self, account_id: str, audience_id: str, profile_id: str) -> MemberState | None:
        raise NotFaked("AudienceMembers.state")

    def states(self, account_id: str, audience_id: str, profile_ids: list[str]) -> dict[str, MemberState]:
        raise NotFaked("AudienceMembers.states")

    def head(self, account_id: str, audience_id: str) -> int:
        raise NotFaked("AudienceMembers.head")

    def heads(self, audiences: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        raise NotFaked("AudienceMembers.heads")

    def changes(self, account_id: str, audience_id: str, *, after: int, upto: int,
                limit: int = 1000) -> list[Change]:
        raise NotFaked("AudienceMembers.changes")

    def all_changes(self, account_id: str, audience_id: str, *, after: int, upto: int,
                    on_page: Callable[[], None] | None = None) -> list[Change]:
        raise NotFaked("AudienceMembers.all_changes")

    def members(self, account_id: str, audience_id: str, page_size: int = 1000) -> Iterator[str]:
        raise NotFaked("AudienceMembers.members")

    def record(self, account_id: str, verdict: Verdict, change: str, *, was: MemberState | None,
               head: int, position: str, profile_version: int) -> int:
        raise NotFaked("AudienceMembers.record")

    def start_backfill(self, account_id: str, audience_id: str, audience_version: int) -> bool:
        raise NotFaked("AudienceMembers.start_backfill")

    def advance_backfill(self, account_id: str, audience_id: str, at: BackfillState,
                         shard: int, start: dict[str, Any] | None, done: bool) -> bool:
        raise NotFaked("AudienceMembers.advance_backfill")


__all__ = [
    "MemoryAudienceMembers",
    "MemoryAuths",
    "MemoryJobs",
    "MemoryMemberships",
    "MemoryRunQueue",
    "MemoryRuns",
    "MemoryScheduler",
    "MemorySecrets",
    "QueuedMessage",
    "StoredRun",
]
