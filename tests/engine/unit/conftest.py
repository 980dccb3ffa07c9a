"""The run pipeline on the in-memory store (tests/fakes/memory_store.py, memory_runs.py):
the engine, its stages and the step's commit, with no moto. Any AWS request is a failure
(`no_aws`). Time is a simulated clock: each engine reading moves it one second, so log
lines and runs order by time; leases and back-offs move only when a test moves it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib.domain.audiences import Audience
from chalicelib.domain.catalog import JobType
from chalicelib.domain.ids import new_id
from chalicelib.domain.models import Authorization, Health, HealthStatus, Job, empty_usage
from chalicelib.domain.profiles import ProfileRecord
from chalicelib.domain.runs import Run
from chalicelib.domain.statuses import JobStatus
from chalicelib.providers.registry import Registry
from chalicelib.runs.control import Delivery, EngineOptions
from chalicelib.runs.engine import Engine
from tests.engine.sources import MemorySource
from tests.engine.unit.doubles import MemoryDestination, MemoryEnricher, MemoryTask
from tests.fakes.memory_runs import QueuedMessage
from tests.fakes.memory_store import memory_deps
from tests.services.conftest import no_aws, nothing_left_out  # noqa: F401  (autouse fixtures, shared)

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday


class Clock:
    def __init__(self) -> None:
        self.at = START

    def now(self) -> datetime:
        at = self.at
        self.at += timedelta(seconds=1)
        return at

    def epoch(self) -> float:
        return self.at.timestamp()

    def move(self, **delta: float) -> None:
        self.at += timedelta(**delta)


@dataclass
class World:
    """One account on the in-memory store, the test doubles, and the engine's queue."""

    d: Any
    clock: Clock
    options: EngineOptions
    source: MemorySource
    dest: MemoryDestination
    enricher: MemoryEnricher
    task: MemoryTask
    account_id: str = field(default_factory=lambda: new_id("acct"))
    errors: list[BaseException] = field(default_factory=list)
    delivered: int = 0

    # -- setup -------------------------------------------------------------------------------

    def auth(self, provider: str) -> Authorization:
        now = "2026-03-01T00:00:00Z"
        auth = Authorization(id=new_id("auth"), account_id=self.account_id, provider=provider, method="api_key",
                             label="k", description="", owner="user_1", created_at=now, updated_at=now,
                             secret_name=self.d.secrets.name_for(self.account_id, provider),
                             health=Health(HealthStatus.HEALTHY, None, now), usage=empty_usage())
        self.d.secrets.create(auth.secret_name, {"api_key": "key-1234"}, tags={})
        return auth

    def job(self, provider: str, job_type: JobType, workflow: str, config: dict[str, Any], *,
            schedule: dict[str, Any] | None = None, start: bool = True) -> Job:
        """A sleeping job, counted on its authorization; `start` queues its first run."""
        auth = self.auth(provider)
        self.d.auths.put(auth)
        job = Job(id=new_id("job"), account_id=self.account_id, provider=provider, job_type=job_type,
                  workflow=workflow, authorization_id=auth.id, label=f"{workflow} job", description="",
                  config=config, schedule=schedule, status=JobStatus.SLEEPING, owner="user_1",
                  created_at="2026-03-01T00:00:00Z", updated_at="2026-03-01T00:00:00Z")
        self.d.jobs.create(job, auth_provider=provider)
        if start:
            self.trigger(job, "create")
        return job

    def import_job(self, rows: list[dict[str, Any]], **kw: Any) -> Job:
        self.source.datasets["people"] = rows
        return self.job("test_source", JobType.IMPORT, "list_import",
                        {"dataset": "people", "identifier_field": "email", "field_mapping": {}}, **kw)

    def audience(self, plan: str = "pro") -> Audience:
        now = "2026-03-01T00:00:00Z"
        aud = Audience(id=new_id("aud"), account_id=self.account_id, name=f"{plan} customers", description="",
                       filter={"all": [{"field": "plan", "op": "equals", "value": plan}]}, owner="user_1",
                       created_at=now, updated_at=now)
        self.d.audiences.create(aud)
        return aud

    def people(self, rows: list[dict[str, Any]], tag: str = "seed") -> list[str]:
        """Profiles as an import writes them (email identifies); their outcomes."""
        records = [ProfileRecord(identifiers={"email": r["email"]},
                                 fields={k: v for k, v in r.items() if k != "email"}, ref="seed") for r in rows]
        return self.d.profiles.upsert_batch(self.account_id, records, step_tag=f"{tag}#{self.clock.at:%H%M%S}")

    def trigger(self, job: Job, trigger: str) -> None:
        self.d.runs_queue.send({"account_id": job.account_id, "job_id": job.id, "trigger": trigger})

    # -- delivery ----------------------------------------------------------------------------

    def drain(self, limit: int = 200, *, delayed: bool = False) -> int:
        """Deliver queued messages as SQS + Lambda would: a message whose handler raised is
        delivered again (same id) after the others; delayed ones only when `delayed`."""
        engine = Engine(self.d, self.options)
        queue = self.d.runs_queue
        handled = 0
        while handled < limit:
            ready = [m for m in queue.messages if delayed or m.delay_seconds == 0]
            if not ready:
                return handled
            m: QueuedMessage = ready[0]
            queue.messages.remove(m)
            handled += 1
            self.delivered += 1
            try:
                engine.handle(Delivery(body=m.body, message_id=m.message_id))
            except Exception as exc:
                self.errors.append(exc)
                queue.messages.append(QueuedMessage(m.body, 0, m.message_id))
        return handled

    # -- reading -----------------------------------------------------------------------------

    def reread(self, job: Job) -> Job:
        fresh = self.d.jobs.get(job.account_id, job.id)
        assert fresh is not None
        return fresh

    def runs(self, job: Job) -> list[Run]:
        return list(self.d.runs.page(job.account_id, job.id, limit=50, cursor=None).items)

    def codes(self, job: Job) -> list[str]:
        return [line["code"] for line in self.d.runs.lines(job.account_id, job.id)]

    def lines(self, job: Job, code: str) -> list[dict[str, Any]]:
        return [line for line in self.d.runs.lines(job.account_id, job.id) if line["code"] == code]


@pytest.fixture()
def world() -> World:
    clock = Clock()
    d = memory_deps(clock=clock.epoch, now=clock.now)
    source, dest, enricher, task = MemorySource(), MemoryDestination(), MemoryEnricher(), MemoryTask()
    d.registry = Registry(modules={}, extra={"test_source": source, "test_dest": dest,
                                             "test_enricher": enricher, "test_task": task})
    options = EngineOptions(max_records=1000, now=clock.now)
    return World(d, clock, options, source, dest, enricher, task)


@pytest.fixture()
def crash_once(world: World) -> Callable[[str], None]:
    """Arm a crash at the `nth` time the engine passes a named point (EngineOptions.fault);
    it fires once."""

    def arm(point: str, nth: int = 1) -> None:
        passed: list[str] = []

        def fault(at: str) -> None:
            if at == point:
                passed.append(at)
                if len(passed) == nth:
                    raise RuntimeError(f"crash at {at}")

        world.options.fault = fault

    return arm
