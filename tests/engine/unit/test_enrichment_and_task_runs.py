"""Enrichment and task runs on the in-memory store. The moto-backed tests/engine/test_enrichment.py
and test_gtm.py drive the same stages on DynamoDB."""

from __future__ import annotations

from typing import Any

from chalicelib.domain import enrichment as E
from chalicelib.domain.catalog import JobType
from chalicelib.domain.models import Job
from chalicelib.domain.profiles import ProfileRecord
from chalicelib.domain.runs import RunStatus
from chalicelib.domain.statuses import JobStatus
from tests.engine.unit.conftest import World


def _enrich(world: World, **config: Any) -> Job:
    return world.job("test_enricher", JobType.ENRICHMENT, "lookup", {"refresh_after_days": 30, **config},
                     schedule={"type": "interval", "every_minutes": 60})


def _setup(world: World) -> None:
    world.people([{"email": f"e{i}@example.com", "plan": "pro"} for i in range(4)])
    world.d.profiles.upsert_batch(world.account_id, [ProfileRecord({"user_id": "u1"}, {"plan": "pro"}, "x")],
                                  step_tag="seed-u1")
    world.enricher.known = {"e0@example.com": {"company": "Acme"}, "e1@example.com": {"company": "Globex"}}


def test_an_enrichment_merges_what_the_provider_knows_and_marks_the_profiles(world: World) -> None:
    _setup(world)
    world.options.max_records = 3
    job = _enrich(world)
    world.drain()
    [run] = world.runs(job)
    # 4 looked up (2 known, 2 unmatched); the profile with no email is omitted before any lookup
    assert (run.status, run.added) == (RunStatus.SUCCEEDED, 2)
    assert run.omitted_reasons == {E.MISSING_IDENTIFIER: 1, E.UNMATCHED: 2}
    assert sorted(world.enricher.asked) == [f"e{i}@example.com" for i in range(4)]
    acme = world.d.profiles.find(job.account_id, "email", "e0@example.com")
    assert acme.fields["company"] == "Acme" and acme.fields[E.marker_field(job.id)].startswith("2026-03-02T")
    assert E.marker_field(job.id) not in world.d.profiles.find(job.account_id, "email", "e2@example.com").fields
    assert world.d.memberships.plans != {}  # the plan stays until its TTL: enrichment keeps no copy of values


def test_a_replayed_lookup_step_asks_nobody_twice_and_counts_once(world: World, crash_once: Any) -> None:
    _setup(world)
    crash_once("after_write", nth=2)  # step 1 (after the plan) merged its profiles, then died before its commit
    job = _enrich(world)
    world.drain()
    [run] = world.runs(job)
    assert [str(e) for e in world.errors] == ["crash at after_write"]
    assert (run.status, run.added) == (RunStatus.SUCCEEDED, 2)
    # the replay skipped the two it had merged; the unmatched ones were asked again
    assert sorted(world.enricher.asked) == sorted(
        [f"e{i}@example.com" for i in range(4)] + ["e2@example.com", "e3@example.com"])


def test_profiles_enriched_recently_are_left_alone_next_run(world: World) -> None:
    _setup(world)
    job = _enrich(world)
    world.drain()
    world.enricher.asked.clear()
    world.clock.move(days=1)
    world.trigger(job, "schedule")
    world.drain()
    latest = next(r for r in world.runs(job) if r.trigger == "schedule")
    assert latest.omitted_reasons[E.RECENTLY_ENRICHED] == 2 and latest.added == 0
    assert sorted(world.enricher.asked) == ["e2@example.com", "e3@example.com"]


def test_a_task_runs_in_one_step_and_keeps_its_state_for_the_next(world: World) -> None:
    job = world.job("test_task", JobType.OTHER, "ping", {"note": "tag installed"},
                    schedule={"type": "interval", "every_minutes": 60})
    world.drain()
    world.trigger(job, "schedule")
    world.drain()
    runs = world.runs(job)
    assert [(r.status, r.step, r.added) for r in runs] == [(RunStatus.SUCCEEDED, 1, 0)] * 2
    assert [line["message"] for line in world.lines(job, "run.task")] == ["tag installed (2)", "tag installed (1)"]
    final = world.reread(job)
    assert (final.status, final.state) == (JobStatus.SLEEPING, {"runs": 2})
