"""Export runs on the in-memory store: step 0's plan (who joins and leaves the audience,
with the values sent), the parts, the membership the job confirms, and the clean-up after
the run. The moto-backed tests/engine/test_s3_export.py drives the same stage on DynamoDB."""

from __future__ import annotations

from typing import Any

from chalicelib.domain.catalog import JobType
from chalicelib.domain.models import Job
from chalicelib.domain.runs import RunStatus
from chalicelib.domain.statuses import JobStatus
from chalicelib.store.keys import account_pk, audience_sk
from chalicelib.store.membership import SetRef
from tests.engine.unit.conftest import World


def _people(n: int, plan: str = "pro", offset: int = 0) -> list[dict[str, Any]]:
    return [{"email": f"p{i}@example.com", "first_name": f"P{i}", "plan": plan} for i in range(offset, offset + n)]


def _export(world: World, audience_id: str, **config: Any) -> Job:
    return world.job("test_dest", JobType.EXPORT, "list_export", {
        "audience_id": audience_id, "fields": ["email", "first_name"], **config},
        schedule={"type": "interval", "every_minutes": 60})


def _confirmed(world: World, job: Job) -> set[str]:
    ref = SetRef.from_json(world.reread(job).state.get("membership"))
    assert ref is not None
    return world.d.memberships.read_set(job.account_id, job.id, ref)


def test_a_first_export_sends_every_member_in_parts_and_confirms_them(world: World) -> None:
    # GIVEN 5 pro and 3 free customers, and an export of the pro ones, 2 rows a part
    aud = world.audience("pro")
    world.people(_people(5) + _people(3, plan="free", offset=5))
    world.options.max_records = 2
    job = _export(world, aud.id)
    world.drain()
    # THEN the 5 members were sent with their values, in 3 parts after the plan
    sent = world.dest.sent()
    assert sorted((a, v) for a, _, v in sent) == [("add", [f"p{i}@example.com", f"P{i}"]) for i in range(5)]
    assert sorted(world.dest.parts) == [1, 2, 3]
    [manifest] = world.dest.manifests
    assert (manifest["rows"], manifest["added"], manifest["removed"], manifest["parts"]) == (5, 5, 0, 3)
    [run] = world.runs(job)
    assert (run.status, run.step, run.added, run.removed, run.total) == (RunStatus.SUCCEEDED, 4, 5, 0, 5)
    # AND the job confirms exactly who was sent; the plan is gone, only that set is live
    assert _confirmed(world, job) == {pid for _, pid, _ in sent}
    assert world.reread(job).state["membership_generation"] == 1
    assert world.d.memberships.plans == {}
    assert len(world.d.memberships.live_sets(job.account_id, job.id)) == 1
    [plan_line] = [line for line in world.lines(job, "run.step") if line["message"].startswith("step 0")]
    assert plan_line["context"]["members"] == 5 and plan_line["context"]["profiles_read"] == 8


def test_the_next_run_sends_only_who_joined_and_who_left(world: World) -> None:
    aud = world.audience("pro")
    world.people(_people(4))
    job = _export(world, aud.id)
    world.drain()
    first_set = world.d.memberships.live_sets(job.account_id, job.id)
    # GIVEN one member moved to the free plan and a new pro customer arrived
    assert world.people([{"email": "p0@example.com", "plan": "free"}, *_people(1, offset=9)], tag="later") \
        == ["updated", "added"]
    world.dest.parts.clear()
    world.trigger(job, "schedule")
    world.drain()
    # THEN one add and one remove were sent; the remove carries the values it was sent with
    assert sorted((a, v) for a, _, v in world.dest.sent()) == [
        ("add", ["p9@example.com", "P9"]), ("remove", ["p0@example.com", "P0"])]
    runs = {r.trigger: r for r in world.runs(job)}
    assert (runs["schedule"].added, runs["schedule"].removed) == (1, 1)
    assert world.reread(job).state["membership_generation"] == 2
    assert {world.d.profiles.get(job.account_id, p).identifiers["email"][0] for p in _confirmed(world, job)} == {
        "p1@example.com", "p2@example.com", "p3@example.com", "p9@example.com"}
    # AND the superseded set got its TTL after the run
    live = world.d.memberships.live_sets(job.account_id, job.id)
    assert len(live) == 1 and live != first_set


def test_a_first_run_without_backfill_records_the_members_and_sends_nothing(world: World) -> None:
    aud = world.audience("pro")
    world.people(_people(3))
    job = _export(world, aud.id, backfill=False)
    world.drain()
    assert world.dest.parts == {} and world.dest.manifests == []
    [run] = world.runs(job)
    assert (run.status, run.step, run.added) == (RunStatus.SUCCEEDED, 1, 0)
    assert len(_confirmed(world, job)) == 3
    assert world.lines(job, "export.no_backfill")


def test_members_without_the_exported_values_are_omitted_and_tried_again(world: World) -> None:
    aud = world.audience("pro")
    world.people([{"email": "a@example.com", "first_name": "A", "plan": "pro"}])
    # a member known by another identifier only: none of the exported fields
    from chalicelib.domain.profiles import ProfileRecord
    world.d.profiles.upsert_batch(world.account_id, [ProfileRecord({"user_id": "u7"}, {"plan": "pro"}, "x")],
                                  step_tag="seed-u7")
    job = _export(world, aud.id)
    world.drain()
    [run] = world.runs(job)
    assert (run.added, run.omitted_reasons) == (1, {"missing_identifier": 1})
    [warning] = world.lines(job, "export.omitted")
    assert warning["level"] == "warning" and "email, first_name" in warning["message"]
    assert len(_confirmed(world, job)) == 1  # the omitted member is not recorded as sent


def test_members_the_destination_refuses_are_omitted_not_sent(world: World) -> None:
    aud = world.audience("pro")
    world.people(_people(3))
    pid = world.d.profiles.find(world.account_id, "email", "p1@example.com").id
    world.dest.reject[pid] = "looks fake"
    job = _export(world, aud.id)
    world.drain()
    [run] = world.runs(job)
    assert (run.added, run.omitted_reasons) == (2, {"rejected": 1})
    [line] = world.lines(job, "export.rejected")
    assert "1 × looks fake" in line["message"]


def test_an_export_whose_audience_is_gone_fails_with_a_plain_reason(world: World) -> None:
    # GIVEN a job whose audience item is gone (a job saved before jobs were counted on
    # their audience could lose it; a delete is refused now while a job counts on it)
    aud = world.audience("pro")
    job = _export(world, aud.id)
    del world.d.memory.items[(account_pk(aud.account_id), audience_sk(aud.id))]
    world.drain()
    final = world.reread(job)
    assert final.status is JobStatus.FAILED
    [line] = world.lines(job, "run.config_error")
    assert f"audience {aud.id!r} not found" in line["message"]


def _ask_resync(world: World, job: Job, marker_id: str) -> None:
    """What POST /jobs/{id}/run with {"resync": true} writes on the job: its marker."""
    fresh = world.reread(job)
    marker = {"id": marker_id, "requested_at": "2026-03-02T09:00:00Z", "requested_by": "user_1"}
    world.d.jobs.save(fresh, fresh.resync_asked(marker, drop_run=False), expected_version=fresh.version)


def test_a_resync_run_sends_every_member_and_its_last_commit_clears_the_marker(world: World) -> None:
    aud = world.audience("pro")
    world.people(_people(4))
    world.options.max_records = 2
    job = _export(world, aud.id)
    world.drain()
    world.people([{"email": "p0@example.com", "plan": "free"}], tag="later")
    world.dest.parts.clear()
    # GIVEN the job asked to re-send everything
    _ask_resync(world, job, "rsy_1")
    world.trigger(job, "run")
    world.drain()
    # THEN the run sent the 3 current members as adds and the leaver as a remove
    assert sorted((a, v[0]) for a, _, v in world.dest.sent()) == [
        ("add", "p1@example.com"), ("add", "p2@example.com"), ("add", "p3@example.com"), ("remove", "p0@example.com")]
    assert world.dest.manifests[-1]["resync"] is True
    # AND the marker left with the last commit; the next plain run (the control) sends nothing
    assert "resync" not in world.reread(job).state
    world.dest.parts.clear()
    world.trigger(job, "schedule")
    world.drain()
    assert world.dest.sent() == []


def test_a_marker_written_after_a_run_planned_survives_that_runs_commit(world: World) -> None:
    aud = world.audience("pro")
    world.people(_people(3))
    world.options.max_records = 1
    job = _export(world, aud.id)
    # GIVEN a first run that has planned (step 0 committed), then a re-send asked meanwhile
    # (the API refuses this while a run is under way: the defence behind it)
    assert world.drain(limit=1) == 1
    assert world.reread(job).current_run_id is not None
    _ask_resync(world, job, "rsy_late")
    world.drain()
    # THEN the run's commit kept the marker it did not serve
    assert world.reread(job).state["resync"]["id"] == "rsy_late"
    assert len(world.dest.sent()) == 3
    # AND the next run serves it: every member sent again, then the marker is gone
    world.dest.parts.clear()
    world.trigger(job, "schedule")
    world.drain()
    assert sorted(a for a, _, _ in world.dest.sent()) == ["add", "add", "add"]
    assert "resync" not in world.reread(job).state
