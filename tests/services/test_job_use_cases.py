"""Editing a job and acting on it (services/jobs.py `edit`, `act`) on the in-memory store:
what changes, what is recorded and queued, the version an edit needs, a dry run and roles.
No moto: the HTTP side (If-Match, the JSON errors) is tests/api/test_jobs.py, the store's
conditional write tests/store/test_repo_contract.py."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.domain.access import Principal, Role
from chalicelib.domain.catalog import JobType
from chalicelib.domain.errors import AppError, ErrorKind
from chalicelib.domain.statuses import Action, JobStatus
from chalicelib.services import jobs as svc
from tests.engine.sources import MemorySource
from tests.engine.unit.conftest import Clock, World
from tests.engine.unit.doubles import MemoryDestination, MemoryEnricher, MemoryTask
from tests.fakes.memory_store import memory_deps

CONFIG = {"dataset": "people", "identifier_field": "email", "field_mapping": {}}


@pytest.fixture()
def world() -> World:
    from chalicelib.providers.registry import Registry
    from chalicelib.runs.control import EngineOptions

    clock = Clock()
    d = memory_deps(clock=clock.epoch, now=clock.now)
    source = MemorySource()
    d.registry = Registry(modules={}, extra={"test_source": source})
    return World(d, clock, EngineOptions(max_records=1000, now=clock.now), source, MemoryDestination(),
                 MemoryEnricher(), MemoryTask())


def _as(world: World, role: Role) -> Principal:
    return Principal(world.account_id, f"user_{role.value}", role, "tok_test")


def _job(world: World) -> Any:
    return world.job("test_source", JobType.IMPORT, "list_import", dict(CONFIG), start=False)


def _audit(world: World) -> list[dict[str, Any]]:
    return [e for e in world.d.audit.events(world.account_id) if e["object_type"] == "job"]


def test_an_edit_saves_what_changed_bumps_the_version_and_records_it_once(world: World) -> None:
    job = _job(world)
    admin = _as(world, Role.ADMIN)
    # WHEN the label and the failure window change, and the description is sent unchanged
    result = svc.edit(world.d, admin, job.id, {"label": "Nightly people", "description": "",
                                               "failure_window_hours": 2}, job.version)
    # THEN exactly those two are saved, at the next version
    saved = world.reread(job)
    assert result.changes == ["label", "failure_window_hours"]
    assert (saved.label, saved.failure_window_hours, saved.description, saved.version) == (
        "Nightly people", 2, "", job.version + 1)
    # AND one audit event names the change, before and after, and one log line tells of it
    events = _audit(world)
    assert [(e["action"], e["diff"]["label"]) for e in events] == [
        ("changed", {"before": job.label, "after": "Nightly people"})]
    assert [line["message"] for line in world.lines(saved, "job.edited")] == [
        "label, failure_window_hours changed by user_admin"]


def test_an_edit_that_changes_nothing_saves_and_records_nothing(world: World) -> None:
    job = _job(world)
    result = svc.edit(world.d, _as(world, Role.ADMIN), job.id, {"label": job.label}, job.version)
    assert (result.changes, world.reread(job).version, _audit(world)) == ([], job.version, [])
    # positive control: the same call with a new label does save (so "nothing" above is real)
    svc.edit(world.d, _as(world, Role.ADMIN), job.id, {"label": "Other"}, job.version)
    assert world.reread(job).version == job.version + 1


def test_an_edit_needs_the_current_version_and_changes_nothing_without_it(world: World) -> None:
    job = _job(world)
    admin = _as(world, Role.ADMIN)
    with pytest.raises(AppError) as missing:
        svc.edit(world.d, admin, job.id, {"label": "X"}, None)
    with pytest.raises(AppError) as stale:
        svc.edit(world.d, admin, job.id, {"label": "X"}, job.version + 1)
    assert missing.value.code == "validation.version_required" and missing.value.fields == {"version": "required"}
    assert stale.value.kind is ErrorKind.CONFLICT
    assert (world.reread(job).label, _audit(world)) == (job.label, [])


def test_a_dry_run_says_what_would_change_and_saves_nothing(world: World) -> None:
    job = _job(world)
    result = svc.edit(world.d, _as(world, Role.ADMIN), job.id, {"description": "from the warehouse"},
                      job.version, dry_run=True)
    assert result.dry_run and result.changes == ["description"] and result.job.description == "from the warehouse"
    assert (world.reread(job).description, world.reread(job).version, _audit(world)) == ("", job.version, [])


def test_an_observer_cannot_edit_and_another_account_finds_no_job(world: World) -> None:
    job = _job(world)
    with pytest.raises(AppError) as observer:
        svc.edit(world.d, _as(world, Role.OBSERVER), job.id, {"label": "X"}, job.version)
    stranger = Principal("acct_other", "user_x", Role.ADMIN, "tok_x")
    with pytest.raises(AppError) as other:
        svc.edit(world.d, stranger, job.id, {"label": "X"}, job.version)
    assert (observer.value.kind, other.value.kind) == (ErrorKind.FORBIDDEN, ErrorKind.NOT_FOUND)
    assert (world.reread(job).label, _audit(world)) == (job.label, [])


def _queued(world: World) -> list[tuple[str, str]]:
    return [(m.body["job_id"], m.body["trigger"]) for m in world.d.runs_queue.messages]


def test_pause_resume_and_run_now_move_the_job_record_it_and_queue_runs_only_when_due(world: World) -> None:
    job = _job(world)
    admin = _as(world, Role.ADMIN)
    paused = svc.act(world.d, admin, job.id, Action.PAUSE)
    assert (paused.status, paused.next_run_at, _queued(world)) == (JobStatus.PAUSED, None, [])
    resumed = svc.act(world.d, admin, job.id, Action.RESUME)
    assert resumed.status is JobStatus.SLEEPING and resumed.next_run_at is not None
    assert _queued(world) == [(job.id, "resume")]
    ran = svc.act(world.d, admin, job.id, Action.RUN_NOW)
    assert ran.status is JobStatus.SLEEPING and _queued(world) == [(job.id, "resume"), (job.id, "run")]
    assert [e["action"] for e in _audit(world)] == ["run", "resumed", "paused"]  # newest first
    assert [line["message"] for line in world.lines(job, "job.pause")] == ["job paused by user_admin"]


def test_a_refused_action_changes_and_records_nothing(world: World) -> None:
    job = _job(world)
    admin = _as(world, Role.ADMIN)
    with pytest.raises(AppError) as not_paused:
        svc.act(world.d, admin, job.id, Action.RESUME)  # it sleeps: nothing to resume
    with pytest.raises(AppError) as not_export:
        svc.act(world.d, admin, job.id, Action.RUN_NOW, resync=True)
    assert not_paused.value.kind is ErrorKind.CONFLICT
    assert (not_export.value.code, not_export.value.fields) == (
        "job.resync_unsupported", {"resync": "only export jobs can re-send their audience"})
    assert (world.reread(job).status, _audit(world), _queued(world)) == (JobStatus.SLEEPING, [], [])


def test_a_one_time_job_resumed_before_its_start_waits_for_it_and_run_now_does_not(world: World) -> None:
    later = world.job("test_source", JobType.IMPORT, "list_import", dict(CONFIG), start=False,
                      schedule={"type": "once", "at": "2099-01-01T09:00:00Z"})
    admin = _as(world, Role.ADMIN)
    svc.act(world.d, admin, later.id, Action.PAUSE)
    assert world.d.scheduler.synced[(world.account_id, later.id)] == (later.schedule, False)
    resumed = svc.act(world.d, admin, later.id, Action.RESUME)
    assert world.d.scheduler.synced[(world.account_id, later.id)] == (later.schedule, True)
    # it is due at its start, not now: no run is queued
    assert (resumed.status, resumed.next_run_at, _queued(world)) == (JobStatus.SLEEPING, "2099-01-01T09:00:00Z", [])
    svc.act(world.d, admin, later.id, Action.RUN_NOW)
    assert _queued(world) == [(later.id, "run")]
