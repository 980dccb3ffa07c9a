"""Re-send everything: POST /jobs/{id}/run with {"resync": true} on an existing export job
sends every current member again, then the job carries on from the log as if it had run
normally (docs/export.md, "Re-send everything").

States are held by not draining the queues, never by sleeping.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import boto3

from tests.membership import test_export_changes as changes
from tests.membership.conftest import Crash
from tests.membership.test_export_changes import World, make_world, people, upsert

world = changes.world  # the fixture, shared

RESYNC = {"resync": True}
CRASH_AT = {"after_lease", "before_write", "after_write", "after_commit"}


def _messages(w: World, job_id: str) -> list[dict[str, Any]]:
    """The run messages queued for this job (taken off the queue)."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.get_queue_url(QueueName="switchyard-test-runs")["QueueUrl"]
    out = []
    while True:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not msgs:
            return [m for m in out if m.get("job_id") == job_id]
        for m in msgs:
            out.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def test_a_resync_sends_every_member_then_the_log_carries_on(world: World) -> None:
    w = world
    # GIVEN 12 members, a job that sent them, a twin job that did too (the control), then
    # 2 profiles join and 1 member leaves
    pro = people(w, 12, "pro")
    people(w, 3, "free", start=100)
    w.stack.deliver()
    aud = w.audience()
    job, twin = w.job(aud, ["email", "plan"]), w.job(aud, ["email", "plan"])
    w.run(job["id"])
    w.run(twin["id"])
    w.run(job["id"])  # N normal runs: nothing changed, nothing sent
    joined = people(w, 2, "pro", start=200)
    upsert(w.d, w.account_id, "p0@example.com", plan="free")
    w.stack.deliver()
    # WHEN the job is asked to re-send everything
    r = w.api.post(f"/jobs/{job['id']}/run", RESYNC)
    assert r.status_code == 200, r.body
    asked = r.json["data"]["resync_requested"]
    assert asked and asked["requested_by"] and asked["id"].startswith("rsy_")
    assert w.state(job["id"])["resync"]["id"] == asked["id"]
    [msg] = _messages(w, job["id"])
    assert msg["trigger"] == "run"
    w.d.runs_queue.send(msg)  # put back what the check took
    run, rows, _ = w.run(job["id"], post=False)
    # THEN that run sent every current member once as an add, and the one who left as a remove
    assert rows == Counter([("add", p) for p in [*pro[1:], *joined]] + [("remove", pro[0])])
    assert run["resync"] is True and (run["added"], run["removed"]) == (13, 1)
    ctx = w.step0(job["id"], run["id"])
    assert ctx["full"] is True and ctx["resync"] is True
    lines = w.api.get(f"/jobs/{job['id']}/logs").json["data"]
    assert any(ln["code"] == "export.resync" and ln["run_id"] == run["id"] for ln in lines)
    assert any(ln["code"] == "job.resync" and ln["user"] for ln in lines)
    # AND the marker is gone with the run's last commit; the job holds a cursor at the head
    state = w.state(job["id"])
    assert "resync" not in state
    assert state["changes"]["n"] == w.d.audience_members.head(w.account_id, aud)
    assert w.api.get(f"/jobs/{job['id']}").json["data"]["resync_requested"] is None
    # AND the twin's plain run (the control) sent only the 3 changes
    trun, trows, _ = w.run(twin["id"])
    assert trows == Counter([("add", p) for p in joined] + [("remove", pro[0])]) and trun["resync"] is False
    # WHEN one more profile joins, the next plain run sends only it, reading no profile page
    late = people(w, 1, "pro", start=300)
    w.stack.deliver()
    run2, rows2, reads2 = w.run(job["id"])
    assert rows2 == Counter([("add", late[0])]) and run2["resync"] is False
    assert w.step0(job["id"], run2["id"])["full"] is False
    assert reads2.of("Query", w.d.profiles_table.name) == 0
    events = w.api.get(f"/audit?object_id={job['id']}").json["data"]
    assert any(e["action"] == "resync" for e in events), events


def test_resync_overrides_backfill_false_and_keeps_include_removals_false(world: World) -> None:
    w = world
    pro = people(w, 4, "pro")
    w.stack.deliver()
    aud = w.audience()
    job = w.job(aud, ["email"])
    w.edit(job["id"], backfill=False, include_removals=False)
    # GIVEN a first run without backfill: the members are recorded, none sent (the control)
    _, rows1, _ = w.run(job["id"])
    assert rows1 == Counter()
    # AND one member leaves
    upsert(w.d, w.account_id, "p0@example.com", plan="free")
    w.stack.deliver()
    # WHEN the job re-sends everything
    run, rows, _ = w.run(job["id"], RESYNC)
    # THEN every current member is sent; the one who left gets no remove (removals are off)
    assert rows == Counter(("add", p) for p in pro[1:]) and run["resync"] is True
    _, rows3, _ = w.run(job["id"])
    assert rows3 == Counter()


def test_a_member_without_values_is_neither_resent_nor_removed(world: World) -> None:
    w = world
    bare = upsert(w.d, w.account_id, "b@example.com", plan="pro")
    named = upsert(w.d, w.account_id, "n@example.com", plan="pro", nickname="n")
    w.stack.deliver()
    job = w.job(w.audience(), ["email"])
    _, rows1, _ = w.run(job["id"])
    assert rows1 == Counter([("add", bare), ("add", named)])
    # GIVEN the job now exports a field one of its sent members lacks
    w.edit(job["id"], fields=["nickname"])
    # WHEN the job re-sends everything
    run, rows, _ = w.run(job["id"], RESYNC)
    # THEN the member with values is re-sent (control); the one without is omitted, not removed
    assert rows == Counter([("add", named)])
    assert run["omitted_reasons"] == {"missing_identifier": 1}
    # AND it stayed confirmed: when it leaves, its exit is sent
    upsert(w.d, w.account_id, "b@example.com", plan="free")
    w.stack.deliver()
    _, rows2, _ = w.run(job["id"])
    assert rows2 == Counter([("remove", bare)])


def test_a_crash_in_a_resync_keeps_the_marker_and_the_redelivery_resends_everything_once(world: World) -> None:
    w = world
    pro = people(w, 5, "pro")
    w.stack.deliver()
    job = w.job(w.audience(), ["email"])
    w.run(job["id"])
    points: list[str] = []
    crashed: list[tuple[str, bool]] = []  # (point, the marker still on the job)

    def crash(point: str) -> None:
        points.append(point)
        if points.count(point) == 1 and point in CRASH_AT:  # the first time at each fault point
            crashed.append((point, "resync" in w.state(job["id"])))
            raise Crash(point)

    # GIVEN a re-send whose run dies the first time it reaches each fault point
    w.fault.append(crash)
    run, rows, _ = w.run(job["id"], RESYNC)
    w.fault.clear()
    # THEN every fault point crashed once, and until the last commit the marker stayed
    assert {p for p, _ in crashed} == CRASH_AT, crashed
    assert all(kept for p, kept in crashed if p != "after_commit"), crashed
    # AND still each member was sent once
    assert rows == Counter(("add", p) for p in pro) and run["added"] == 5
    assert "resync" not in w.state(job["id"])
    _, rows2, _ = w.run(job["id"])
    assert rows2 == Counter()


def test_bad_resync_bodies_change_nothing(world: World) -> None:
    w = world
    people(w, 2, "pro")
    w.stack.deliver()
    job = w.job(w.audience(), ["email"])
    _messages(w, job["id"])
    before = w.api.get(f"/jobs/{job['id']}").json["data"]
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"body": {"resync": "yes"}}, 422, "resync"),
        ({"body": {"resync": 1}}, 422, "resync"),
        ({"body": {"resync": None}}, 422, "resync"),
        ({"body": {"full": True}}, 422, "full"),
        ({"body": [True]}, 422, "body"),
        ({"raw": b'{"resync": tru'}, 400, "body"),
        ({"raw": b"resync=true", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 415,
         "Content-Type"),
    ]
    for kw, status, field in cases:
        r = w.api.post(f"/jobs/{job['id']}/run", **kw)
        assert r.status_code == status, (kw, r.body)
        assert field in r.json["error"]["fields"], (kw, r.json)
        assert "Traceback" not in r.json["error"]["message"]
        after = w.api.get(f"/jobs/{job['id']}").json["data"]
        assert after["version"] == before["version"] and after["resync_requested"] is None, kw
        assert _messages(w, job["id"]) == [], kw
    # AND a valid "no" is a plain run now (the positive control), as is no body at all
    for kw in ({"body": {"resync": False}}, {"raw": b""}, {"raw": b"", "headers": {"Content-Type": "text/plain"}}):
        r = w.api.post(f"/jobs/{job['id']}/run", **kw)
        assert r.status_code == 200 and r.json["data"]["resync_requested"] is None, (kw, r.body)
        assert [m["trigger"] for m in _messages(w, job["id"])] == ["run"]


def test_resync_is_refused_where_it_cannot_apply(world: World) -> None:
    from tests.api.helpers import create_auth, create_job, make_bucket

    w = world
    people(w, 1, "pro")
    w.stack.deliver()
    job = w.job(w.audience(), ["email"])
    # An import job has nothing to re-send
    imp = create_job(w.api, create_auth(w.api)["id"], make_bucket())
    r = w.api.post(f"/jobs/{imp['id']}/run", RESYNC)
    assert r.status_code == 422 and r.json["error"]["code"] == "job.resync_unsupported", r.body
    assert "resync" in r.json["error"]["fields"]
    # A paused export must be resumed first
    assert w.api.post(f"/jobs/{job['id']}/pause").status_code == 200
    version = w.api.get(f"/jobs/{job['id']}").json["data"]["version"]
    r = w.api.post(f"/jobs/{job['id']}/run", RESYNC)
    assert r.status_code == 409 and r.json["error"]["details"]["status"] == "paused", r.body
    assert w.api.get(f"/jobs/{job['id']}").json["data"]["version"] == version
    # Control: resumed, the same request is accepted
    assert w.api.post(f"/jobs/{job['id']}/resume").status_code == 200
    assert w.api.post(f"/jobs/{job['id']}/run", RESYNC).status_code == 200
    # Another account's job is not found, and nothing changes
    version = w.api.get(f"/jobs/{job['id']}").json["data"]["version"]
    other = next(make_world(w.stack, "Other"))
    r = other.api.post(f"/jobs/{job['id']}/run", RESYNC)
    assert r.status_code == 404, r.body
    assert w.api.get(f"/jobs/{job['id']}").json["data"]["version"] == version



def test_a_resync_cancels_a_run_waiting_to_retry(world: World) -> None:
    from chalicelib.providers.base import ProviderError
    from chalicelib.runs.engine import Delivery, Engine, EngineOptions
    from tests.engine.conftest import Drain

    w = world
    pro = people(w, 3, "pro")
    w.stack.deliver()
    job = w.job(w.audience(), ["email"])
    w.run(job["id"])
    joined = people(w, 1, "pro", start=10)
    w.stack.deliver()
    # GIVEN a plain run whose part step met a transient error: it waits to retry
    seen: list[str] = []

    def throttled(point: str) -> None:
        seen.append(point)
        if point == "before_write" and seen.count("before_write") == 2:  # the part's, after step 0's
            raise ProviderError("throttled", transient=True)

    options = EngineOptions(max_records=1000)
    options.fault = throttled
    assert w.api.post(f"/jobs/{job['id']}/run", {}).status_code == 200
    Drain(w.d, options).run()
    [waiting, _] = w.api.get(f"/jobs/{job['id']}/runs").json["data"]
    assert waiting["status"] == "retrying"
    stored = w.d.jobs.get(w.account_id, job["id"], consistent=True)
    assert stored.fault_count == 1 and stored.current_run_id == waiting["id"]
    # WHEN the job is asked to re-send everything
    assert w.api.post(f"/jobs/{job['id']}/run", RESYNC).status_code == 200
    # THEN the waiting run is cancelled in the same write, and the job forgets its faults
    runs = w.api.get(f"/jobs/{job['id']}/runs").json["data"]
    assert runs[0]["id"] == waiting["id"] and runs[0]["status"] == "cancelled"
    stored = w.d.jobs.get(w.account_id, job["id"], consistent=True)
    assert (stored.fault_count, stored.current_run_id) == (0, None)
    # AND one new run re-sends every member
    run, rows, _ = w.run(job["id"], post=False)
    assert run["id"] != waiting["id"] and run["resync"] is True
    assert rows == Counter(("add", p) for p in [*pro, *joined])
    # AND the retry queued for the cancelled run is dropped as stale: no run starts
    before = len(w.api.get(f"/jobs/{job['id']}/runs").json["data"])
    Engine(w.d, EngineOptions()).handle(Delivery(body={
        "account_id": w.account_id, "job_id": job["id"], "trigger": "retry", "fault_count": 1},
        message_id="old-retry"))
    assert len(w.api.get(f"/jobs/{job['id']}/runs").json["data"]) == before
