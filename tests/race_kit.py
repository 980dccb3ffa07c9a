"""Shared pieces of the race tests (tests/api/test_races.py, tests/proof/test_races.py):
start many calls at once, collect what each returned, and read the invariants back."""

from __future__ import annotations

import copy
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from chalicelib.domain.access import Principal, Role
from chalicelib.domain.errors import AppError
from chalicelib.domain.ids import new_id
from chalicelib.domain.models import Job
from chalicelib.domain.statuses import ACTIVE_STATUSES, JobStatus


def race_deps() -> Iterator[Any]:
    """Body of a `deps` fixture for races: fresh small tables (tests/tables.py) behind a
    DynamoDB endpoint that applies one request at a time, as DynamoDB does (tests/serial_moto.py)."""
    from tests.serial_moto import serial_dynamodb
    from tests.tables import fresh_deps

    with serial_dynamodb():
        yield from fresh_deps()


@contextmanager
def fresh_round() -> Iterator[tuple[Any, Principal]]:
    """Deps on fresh small tables and a new account's admin, for one round. moto copies a
    whole table for every transaction, so rounds on a table of their own stay fast."""
    from chalicelib.services.accounts import create_account
    from tests.tables import fresh_deps

    tables = fresh_deps()
    d = next(tables)
    try:
        account, admin, _ = create_account(d, "Racer", "admin@racer.example")
        yield d, Principal(account.id, admin.id, Role.ADMIN, "t")
    finally:
        next(tables, None)  # drops the tables


def new_auth(d: Any, p: Principal, label: str = "S3 keys") -> str:
    """An S3 authorization created (and checked) by the service, as POST /authorizations does."""
    from chalicelib.services import authorizations as auth_svc
    from tests.api.helpers import s3_credentials

    return auth_svc.create(d, p, auth_svc.NewAuthorization(
        provider="amazon_s3", method="access_keys", label=label, description="",
        credentials=s3_credentials())).id


@dataclass
class Outcome:
    value: Any = None
    error: AppError | None = None
    crash: str | None = None  # anything that is not an AppError: a 500 in the API
    returned: bool = False  # the call's thread got to the end (a dead thread leaves this False)

    @property
    def ok(self) -> bool:
        return self.returned and self.error is None and self.crash is None


def _where(exc: BaseException) -> str:
    # Our frames and the error: where it broke, without pages of urllib3.
    ours = [f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno} {f.name}" for f in traceback.extract_tb(exc.__traceback__)
            if "/chalicelib/" in f.filename or "/tests/" in f.filename]
    return " < ".join(reversed(ours)) + f": {exc!r}"


def race(calls: list[Callable[[], Any]], *, delays: list[float] | None = None,
         waits: list[threading.Event | None] | None = None, timeout: float = 120) -> list[Outcome]:
    """Run every call in its own thread, all released together by a barrier, and return what
    each returned (`value`), refused (`error`: an AppError) or crashed with (`crash`: any
    other exception). A call may first wait for `waits[i]` to be set: an order the test
    imposes, held however slow the machine is; or sleep `delays[i]` seconds of jitter, which
    mixes the order without deciding any outcome.

    Fails the test when a thread is still running after `timeout` seconds or died without
    an outcome. A wait that is never set is that call's crash, not a silent go-ahead."""
    deadline = time.monotonic() + timeout
    barrier = threading.Barrier(len(calls))
    results = [Outcome() for _ in calls]

    def run(i: int, fn: Callable[[], Any]) -> None:
        out = results[i]
        try:
            barrier.wait(max(0.0, deadline - time.monotonic()))
            turn = waits[i] if waits else None
            if turn is not None and not turn.wait(max(0.0, deadline - time.monotonic())):
                raise TimeoutError("the event this call waits for was never set")
            if delays and delays[i] > 0:
                threading.Event().wait(delays[i])
            out.value = fn()
        except AppError as exc:
            out.error = exc
        except BaseException as exc:  # a crash of any kind, a killed "process" included
            out.crash = _where(exc)
        out.returned = True

    threads = [threading.Thread(target=run, args=(i, f), daemon=True, name=f"racer-{i}")
               for i, f in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        # a little past the deadline: a call whose wait ran out at the deadline reports that
        # itself instead of reading as a hang
        t.join(max(0.0, deadline + min(10.0, timeout) - time.monotonic()))
    hung = [t.name for t in threads if t.is_alive()]
    assert not hung, f"{len(hung)} racing call(s) still running after {timeout:.0f} s: {hung[:5]}"
    dead = [i for i, o in enumerate(results) if not o.returned]
    assert not dead, f"racing call(s) {dead[:5]} ended without an outcome"
    return results


def crashes(results: list[Outcome]) -> list[str]:
    """The crashes of a race, each with the index of its call."""
    return [f"call {i}: {o.crash}" for i, o in enumerate(results) if o.crash]


def seed_jobs(deps: Any, template: Job, statuses: list[JobStatus]) -> list[Job]:
    """Jobs like `template` in the given statuses, written by the store as any job is
    (each with its usage move on its authorization), without running the wizard each time."""
    out = []
    for i, status in enumerate(statuses):
        job = copy.deepcopy(template)
        job.id = new_id("job")
        job.label = f"{template.label} {i} ({status.value})"
        job.status = status
        job.version = 1
        deps.jobs.create(job, auth_provider=job.provider)
        out.append(job)
    return out


@dataclass
class Audit:
    """What the invariants found after a round; every list must stay empty."""

    active_on_deleted: list[str] = field(default_factory=list)
    usage_mismatch: list[str] = field(default_factory=list)

    @property
    def violations(self) -> int:
        return len(self.active_on_deleted) + len(self.usage_mismatch)


def audit(deps: Any, account_id: str, auth_ids: list[str]) -> Audit:
    """No active job on a deleted authorization; every remaining authorization's usage
    counters equal the real number of its jobs per status (consistent reads)."""
    found = Audit()
    jobs: list[Job] = []
    cursor = None
    while True:
        page = deps.jobs.page(account_id, limit=200, cursor=cursor)
        jobs += page.items
        cursor = page.next_cursor
        if not cursor:
            break
    for auth_id in auth_ids:
        auth = deps.auths.get(account_id, auth_id, consistent=True)
        mine = [j for j in jobs if j.authorization_id == auth_id]
        if auth is None:
            found.active_on_deleted += [j.id for j in mine if j.status in ACTIVE_STATUSES]
            continue
        for status in JobStatus:
            real = sum(1 for j in mine if j.status is status)
            if auth.usage[status.value] != real:
                found.usage_mismatch.append(f"{auth_id} {status.value}: counter "
                                            f"{auth.usage[status.value]}, jobs {real}")
    return found
