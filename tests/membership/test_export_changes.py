"""Scheduled exports read only what changed: once an audience's change log is complete (its
backfill done), a job's run after the first reads the log from the cursor its last run
confirmed, and the profiles that joined or left, instead of every profile of the account
(docs/export.md, "Change log").

The stream is delivered by the test (stack.deliver), the backfill and runs queues drained by
it: states are held by not pumping, never by sleeping.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from tests.api.helpers import create_auth, make_bucket
from tests.conftest import TEST_ACCOUNTS, Api
from tests.membership.conftest import Stack, upsert
from tests.membership.test_backfill import drain as drain_backfill

PRO = {"all": [{"field": "plan", "op": "equals", "value": "pro"}]}
HOURLY = {"type": "interval", "every_minutes": 60}
PREFIX = "switchyard/exports/"


@dataclass
class Reads:
    """DynamoDB requests on the wire, by (operation, table), and keys asked of BatchGetItem."""

    ops: Counter[tuple[str, str]] = field(default_factory=Counter)
    keys: Counter[str] = field(default_factory=Counter)

    def hook(self, model: Any = None, params: Any = None, **_: Any) -> None:  # the API call's own parameters
        op = model.name
        if op == "BatchGetItem":
            for table, req in params["RequestItems"].items():
                self.ops[(op, table)] += 1
                self.keys[table] += len(req["Keys"])
        elif "TableName" in params:
            self.ops[(op, params["TableName"])] += 1

    def of(self, op: str, table: str) -> int:
        return self.ops[(op, table)]


@dataclass
class World:
    stack: Stack
    api: Api
    account_id: str
    bucket: str
    fault: list[Any]

    @property
    def d(self) -> Any:
        return self.stack.deps

    def audience(self, name: str = "Pro", filter_: dict[str, Any] | None = None) -> str:
        r = self.api.post("/audiences", {"name": name, "filter": filter_ or PRO})
        assert r.status_code == 201, r.body
        drain_backfill(self.stack, self.account_id)
        return str(r.json["data"]["id"])

    def job(self, audience_id: str, fields: list[str]) -> dict[str, Any]:
        body = {"provider": "amazon_s3", "job_type": "export", "workflow": "s3_audience_export",
                "authorization_id": create_auth(self.api)["id"], "label": "Pro to S3", "schedule": HOURLY,
                "config": {"audience_id": audience_id, "bucket": self.bucket, "format": "jsonl",
                           "fields": fields}}
        r = self.api.post("/jobs", body)
        assert r.status_code == 201, r.body
        return dict(r.json["data"])

    def edit(self, job_id: str, **config: Any) -> None:
        """Change some of the job's configuration (PATCH with its current version)."""
        job = self.api.get(f"/jobs/{job_id}").json["data"]
        r = self.api.patch(f"/jobs/{job_id}", {"config": {**job["config"], **config}, "version": job["version"]})
        assert r.status_code == 200, r.body

    def state(self, job_id: str) -> dict[str, Any]:
        """The job's stored state: what its last run confirmed (a cursor or a membership set)."""
        job = self.d.jobs.get(self.account_id, job_id, consistent=True)
        assert job is not None
        return dict(job.state)

    def run(self, job_id: str, body: dict[str, Any] | None = None, *,
            post: bool = True) -> tuple[dict[str, Any], Counter[tuple[str, str]], Reads]:
        """Run the job now (`body` {"resync": true} re-sends everything; `post` False: the
        run was asked for already), to the end; its run, the rows its parts hold ((action,
        profile) counted) and the DynamoDB reads it made."""
        from chalicelib.runs.engine import EngineOptions
        from tests.engine.conftest import Drain

        if post:
            r = self.api.post(f"/jobs/{job_id}/run", body or {})
            assert r.status_code in (200, 202), r.body
        options = EngineOptions(max_records=1000)
        options.fault = lambda point: self.fault[0](point) if self.fault else None
        drainer = Drain(self.d, options)
        reads = Reads()
        from chalicelib.store import aws

        events = aws.client("dynamodb").meta.events  # the one client every repository uses
        events.register("before-parameter-build.dynamodb", reads.hook)
        try:
            drainer.run()
        finally:
            events.unregister("before-parameter-build.dynamodb", reads.hook)
        run = self.api.get(f"/jobs/{job_id}/runs").json["data"][0]
        assert run["status"] == "succeeded", run
        return run, self.rows(job_id, run["id"]), reads

    def rows(self, job_id: str, run_id: str) -> Counter[tuple[str, str]]:
        s3 = boto3.client("s3", region_name="us-east-1")
        out: Counter[tuple[str, str]] = Counter()
        folder = f"{PREFIX}{job_id}/{run_id}/"
        for o in s3.list_objects_v2(Bucket=self.bucket, Prefix=folder).get("Contents", []):
            if o["Key"].endswith("manifest.json"):
                continue
            body = s3.get_object(Bucket=self.bucket, Key=o["Key"])["Body"].read().decode()
            out.update((row["_action"], row["_profile_id"]) for row in map(json.loads, body.splitlines()))
        return out

    def step0(self, job_id: str, run_id: str) -> dict[str, Any]:
        lines = self.api.get(f"/jobs/{job_id}/logs").json["data"]
        [line] = [ln for ln in lines if ln.get("run_id") == run_id and ln["message"].startswith("step 0")]
        return dict(line.get("context") or {})


def make_world(stack: Stack, name: str) -> Iterator[World]:
    from chalice.test import Client

    from app import app
    from chalicelib.services.accounts import create_account, token_cache

    token_cache.clear()
    account, _, issued = create_account(stack.deps, name, f"admin@{name.lower()}.example")
    TEST_ACCOUNTS.add(account.id)
    with Client(app, stage_name="local") as c:
        yield World(stack, Api(c, issued.plaintext), account.id, make_bucket(), [])


@pytest.fixture()
def world(stack: Stack) -> Iterator[World]:
    TEST_ACCOUNTS.clear()
    yield from make_world(stack, "Changes")
    TEST_ACCOUNTS.clear()


def people(w: World, n: int, plan: str, start: int = 0) -> list[str]:
    return [upsert(w.d, w.account_id, f"p{i}@example.com", plan=plan) for i in range(start, start + n)]


def test_a_second_run_reads_only_the_changes_since_the_first(world: World) -> None:
    w = world
    # GIVEN 12 pro and 8 free profiles written before the audience, then the audience backfilled
    pro = people(w, 12, "pro")
    people(w, 8, "free", start=100)
    w.stack.deliver()
    job = w.job(w.audience(), ["email", "plan"])
    # WHEN the job runs for the first time
    run1, rows1, reads1 = w.run(job["id"])
    # THEN it read every profile (the full path) and sent every member
    assert rows1 == Counter(("add", p) for p in pro)
    assert w.step0(job["id"], run1["id"])["full"] is True
    assert reads1.of("Query", w.d.profiles_table.name) >= 16  # one per shard at least
    # WHEN 2 profiles join, 1 member leaves, and 5 members change a field the audience ignores
    joined = people(w, 2, "pro", start=200)
    upsert(w.d, w.account_id, "p0@example.com", plan="free")
    for i in range(1, 6):
        upsert(w.d, w.account_id, f"p{i}@example.com", plan="pro", city="Lyon")
    w.stack.deliver()
    run2, rows2, reads2 = w.run(job["id"])
    # THEN the second run sent exactly those changes
    assert rows2 == Counter([("add", p) for p in joined] + [("remove", pro[0])])
    ctx = w.step0(job["id"], run2["id"])
    assert ctx["full"] is False and ctx["changes_read"] == 3
    # AND read no page of profiles: only the 3 changed ones, by key
    assert reads2.of("Query", w.d.profiles_table.name) == 0
    assert reads2.keys[w.d.profiles_table.name] == 3
    # AND a third run with nothing new reads nothing and sends nothing
    run3, rows3, reads3 = w.run(job["id"])
    assert rows3 == Counter() and run3["status"] == "succeeded"
    assert reads3.keys[w.d.profiles_table.name] == 0 and reads3.of("Query", w.d.profiles_table.name) == 0


def test_enter_and_exit_between_runs_cancel_out_and_a_member_waiting_for_values_is_sent_later(
        world: World) -> None:
    w = world
    stays = people(w, 3, "pro")
    w.stack.deliver()
    # The exported field is `nickname`: a member without one cannot be sent (omitted).
    job = w.job(w.audience(), ["nickname"])
    for i in range(len(stays)):
        upsert(w.d, w.account_id, f"p{i}@example.com", plan="pro", nickname=f"n{i}")
    w.stack.deliver()
    _, rows1, _ = w.run(job["id"])
    assert rows1 == Counter(("add", p) for p in stays)
    # GIVEN between two runs: a newcomer joins and leaves; a member leaves and comes back;
    # another newcomer joins without a nickname; a third joins with one
    flicker = upsert(w.d, w.account_id, "f@example.com", plan="pro", nickname="f")
    w.stack.deliver()
    upsert(w.d, w.account_id, "f@example.com", plan="free")
    upsert(w.d, w.account_id, "p0@example.com", plan="free", nickname="n0")
    w.stack.deliver()
    upsert(w.d, w.account_id, "p0@example.com", plan="pro", nickname="n0")
    bare = upsert(w.d, w.account_id, "bare@example.com", plan="pro")
    named = upsert(w.d, w.account_id, "named@example.com", plan="pro", nickname="nm")
    w.stack.deliver()
    assert w.d.audience_members.head(w.account_id, job["config"]["audience_id"]) >= 3 + 6
    run2, rows2, _ = w.run(job["id"])
    # THEN only the named newcomer is sent: the round trips cancel out, the bare one waits
    assert rows2 == Counter([("add", named)])
    assert run2["omitted"] == 1 and flicker not in {p for _, p in rows2}
    # WHEN the waiting member gets a nickname (no change of membership: nothing in the log)
    head = w.d.audience_members.head(w.account_id, job["config"]["audience_id"])
    upsert(w.d, w.account_id, "bare@example.com", plan="pro", nickname="b")
    w.stack.deliver()
    assert w.d.audience_members.head(w.account_id, job["config"]["audience_id"]) == head
    _, rows3, _ = w.run(job["id"])
    # THEN the next run sends it, once
    assert rows3 == Counter([("add", bare)])
    _, rows4, _ = w.run(job["id"])
    assert rows4 == Counter()


def test_a_crash_after_the_destination_accepted_resends_the_same_rows_once(world: World) -> None:
    w = world
    pro = people(w, 4, "pro")
    w.stack.deliver()
    job = w.job(w.audience(), ["email"])
    w.run(job["id"])
    joined = people(w, 2, "pro", start=50)
    upsert(w.d, w.account_id, "p1@example.com", plan="free")
    w.stack.deliver()
    # GIVEN the part step dies once after its object is written, before its commit
    points: list[str] = []

    class Crash(Exception):
        pass

    def crash(point: str) -> None:
        points.append(point)
        if point == "after_write" and points.count("after_write") == 2:  # step 0's, then the part's
            raise Crash()

    w.fault.append(crash)
    run2, rows2, _ = w.run(job["id"])
    # THEN the redelivered step wrote the same object again: each change once, nothing more
    assert points.count("after_write") == 3
    assert rows2 == Counter([("add", p) for p in joined] + [("remove", pro[1])])
    assert run2["added"] == 2 and run2["removed"] == 1
    # AND the cursor moved once, with the run's commit: the next run has nothing to send
    w.fault.clear()
    _, rows3, _ = w.run(job["id"])
    assert rows3 == Counter()


def test_another_accounts_changes_are_not_read_and_its_job_is_not_found(stack: Stack) -> None:
    TEST_ACCOUNTS.clear()
    a_gen, b_gen = make_world(stack, "Alpha"), make_world(stack, "Beta")
    a, b = next(a_gen), next(b_gen)
    try:
        upsert(a.d, a.account_id, "a0@example.com", plan="pro")
        upsert(b.d, b.account_id, "b0@example.com", plan="pro")
        stack.deliver()
        job_a, job_b = a.job(a.audience(), ["email"]), b.job(b.audience(), ["email"])
        a.run(job_a["id"])
        b.run(job_b["id"])
        # WHEN only account B changes
        joined_b = upsert(b.d, b.account_id, "b1@example.com", plan="pro")
        stack.deliver()
        _, rows_a, reads_a = a.run(job_a["id"])
        _, rows_b, _ = b.run(job_b["id"])
        # THEN A's run reads and sends nothing, B's sends its change (the positive control)
        assert rows_a == Counter() and reads_a.keys[a.d.profiles_table.name] == 0
        assert rows_b == Counter([("add", joined_b)])
        # AND A's job is not found with B's token
        assert b.api.get(f"/jobs/{job_a['id']}").status_code == 404
        assert b.api.post(f"/jobs/{job_a['id']}/run", {}).status_code == 404
    finally:
        a_gen.close()
        b_gen.close()
        TEST_ACCOUNTS.clear()


def test_an_edited_audience_goes_back_to_the_full_path_and_then_to_the_log_again(world: World) -> None:
    w = world
    pro = people(w, 3, "pro")
    free = people(w, 2, "free", start=10)
    w.stack.deliver()
    aud = w.audience()
    job = w.job(aud, ["email"])
    w.run(job["id"])
    joined = people(w, 1, "pro", start=20)
    w.stack.deliver()
    _, rows2, _ = w.run(job["id"])
    assert rows2 == Counter([("add", joined[0])])
    # WHEN the audience's filter changes, and a run comes before its backfill is done
    version = w.api.get(f"/audiences/{aud}").json["data"]["version"]
    r = w.api.patch(f"/audiences/{aud}", {"filter": {"all": [{"field": "plan", "op": "equals", "value": "free"}]},
                                          "version": version})
    assert r.status_code == 200, r.body
    run3, rows3, _ = w.run(job["id"])
    # THEN that run reads every profile and sends the difference from what the destination has
    assert w.step0(job["id"], run3["id"])["full"] is True
    assert rows3 == Counter([("remove", p) for p in [*pro, *joined]] + [("add", p) for p in free])
    # WHEN the backfill has run: the next run takes the log's view again, with nothing to send
    drain_backfill(w.stack, w.account_id)
    run4, rows4, _ = w.run(job["id"])
    assert rows4 == Counter() and w.step0(job["id"], run4["id"])["full"] is True
    # AND the one after reads only what changed
    late = people(w, 1, "free", start=30)
    w.stack.deliver()
    run5, rows5, reads5 = w.run(job["id"])
    assert rows5 == Counter([("add", late[0])])
    assert w.step0(job["id"], run5["id"])["full"] is False
    assert reads5.of("Query", w.d.profiles_table.name) == 0


LYON = {"all": [{"field": "city", "op": "equals", "value": "Lyon"}]}


def test_a_job_moved_to_another_audience_rebuilds_from_its_cursor_then_reads_the_new_log(world: World) -> None:
    w = world
    # GIVEN profiles in both audiences, in each one only, and in neither
    both = [upsert(w.d, w.account_id, f"b{i}@example.com", plan="pro", city="Lyon") for i in range(2)]
    pro_only = upsert(w.d, w.account_id, "p@example.com", plan="pro", city="Paris")
    lyon_only = upsert(w.d, w.account_id, "l@example.com", plan="free", city="Lyon")
    neither = upsert(w.d, w.account_id, "n@example.com", plan="free", city="Paris")
    w.stack.deliver()
    pro, lyon = w.audience(), w.audience("Lyon", LYON)
    job = w.job(pro, ["email"])
    _, rows1, _ = w.run(job["id"])
    assert rows1 == Counter(("add", p) for p in [*both, pro_only])
    joined = upsert(w.d, w.account_id, "j@example.com", plan="pro", city="Paris")
    w.stack.deliver()
    run2, rows2, _ = w.run(job["id"])
    # (control: the job holds a cursor in the first audience's log and reads only what changed)
    assert rows2 == Counter([("add", joined)]) and w.step0(job["id"], run2["id"])["full"] is False
    assert w.state(job["id"])["changes"]["audience_id"] == pro
    # WHEN the job is moved to the other audience
    w.edit(job["id"], audience_id=lyon)
    run3, rows3, _ = w.run(job["id"])
    # THEN the run reads every profile and sends only the difference from what the destination
    # has (rebuilt from the old cursor): the members of both are not sent again
    assert w.step0(job["id"], run3["id"])["full"] is True
    assert rows3 == Counter([("remove", pro_only), ("remove", joined), ("add", lyon_only)])
    # AND it holds a cursor in the new audience's log from then on
    assert w.state(job["id"])["changes"]["audience_id"] == lyon
    upsert(w.d, w.account_id, "n@example.com", plan="free", city="Lyon")
    upsert(w.d, w.account_id, "p@example.com", plan="pro", city="Rome")  # a change of the old audience only
    w.stack.deliver()
    run4, rows4, reads4 = w.run(job["id"])
    assert rows4 == Counter([("add", neither)])
    assert w.step0(job["id"], run4["id"])["full"] is False
    assert reads4.of("Query", w.d.profiles_table.name) == 0


def test_more_members_waiting_for_values_than_a_cursor_carries_are_neither_lost_nor_sent_twice(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.runs import export

    # The job item carries at most PENDING_MAX waiting members; 2 here, so a handful of
    # profiles crosses it both ways.
    monkeypatch.setattr(export, "PENDING_MAX", 2)
    w = world

    def bare(i: int) -> str:
        return upsert(w.d, w.account_id, f"w{i}@example.com", plan="pro")

    def named(i: int) -> None:
        upsert(w.d, w.account_id, f"w{i}@example.com", plan="pro", nickname=f"w{i}")

    sent: Counter[tuple[str, str]] = Counter()

    def run() -> tuple[dict[str, Any], dict[str, Any]]:
        w.stack.deliver()
        r, rows, _ = w.run(job["id"])
        sent.update(rows)
        return w.step0(job["id"], r["id"]), w.state(job["id"])

    s = [upsert(w.d, w.account_id, f"s{i}@example.com", plan="pro", nickname=f"s{i}") for i in range(2)]
    waiting = [bare(i) for i in range(4)]
    w.stack.deliver()
    job = w.job(w.audience(), ["nickname"])
    # GIVEN a first run that leaves 4 members waiting for a nickname (over the 2 a cursor carries)
    ctx, state = run()
    assert sent == Counter(("add", p) for p in s)
    assert "changes" not in state and "membership" in state  # the set, not a cursor
    # WHEN 2 of them get one and a sent member leaves
    named(0)
    named(1)
    upsert(w.d, w.account_id, "s0@example.com", plan="free", nickname="s0")
    ctx, state = run()
    # THEN those are sent, and with 2 left waiting the job holds a cursor again
    assert sent == Counter([*(("add", p) for p in [*s, *waiting[:2]]), ("remove", s[0])])
    assert state["changes"]["pending"] == sorted(waiting[2:]) and "membership" not in state
    # WHEN one more member joins with a nickname and 3 without, read from the log
    late = upsert(w.d, w.account_id, "late@example.com", plan="pro", nickname="late")
    more = [bare(i) for i in range(4, 7)]
    ctx, state = run()
    # THEN the named one is sent, and with 5 waiting the job keeps the set again
    assert ctx["full"] is False and sent[("add", late)] == 1
    assert "changes" not in state and "membership" in state
    # WHEN every waiting member but one gets a nickname, and that one leaves
    for i in (2, 3, 4, 5):
        named(i)
    upsert(w.d, w.account_id, "w6@example.com", plan="free")
    ctx, state = run()
    # THEN each is sent once, the one that left never (it was never sent), and the job holds a cursor
    assert ctx["full"] is True and state["changes"]["pending"] == []
    # AND a last change goes through the log
    last = upsert(w.d, w.account_id, "last@example.com", plan="pro", nickname="z")
    ctx, state = run()
    assert ctx["full"] is False
    members = [*s[1:], *waiting, late, *more[:2], last]
    assert sent == Counter([*(("add", p) for p in [s[0], *members]), ("remove", s[0])])
    assert max(sent.values()) == 1
    # AND what the destination holds (added, less removed) is exactly the audience
    held = {p for (action, p) in sent if action == "add"} - {p for (action, p) in sent if action == "remove"}
    assert held == set(w.d.audience_members.members(w.account_id, job["config"]["audience_id"])) == set(members)


def test_include_removals_turned_off_after_a_cursor_sends_no_removal_but_still_adds(world: World) -> None:
    w = world
    pro = people(w, 4, "pro")
    w.stack.deliver()
    job = w.job(w.audience(), ["email"])
    w.run(job["id"])
    upsert(w.d, w.account_id, "p0@example.com", plan="free")
    w.stack.deliver()
    run2, rows2, _ = w.run(job["id"])
    # (control: with the cursor, a member who leaves is removed)
    assert rows2 == Counter([("remove", pro[0])]) and w.step0(job["id"], run2["id"])["full"] is False
    # WHEN removals are turned off, then a member leaves and a profile joins
    w.edit(job["id"], include_removals=False)
    upsert(w.d, w.account_id, "p1@example.com", plan="free")
    joined = people(w, 1, "pro", start=10)
    w.stack.deliver()
    run3, rows3, _ = w.run(job["id"])
    # THEN the join is sent and the leave is not
    assert rows3 == Counter([("add", joined[0])])
    assert w.step0(job["id"], run3["id"])["full"] is True  # it needs the set the destination was sent
    # AND on later runs too; a member who left and comes back is not sent again (the destination kept it)
    upsert(w.d, w.account_id, "p2@example.com", plan="free")
    upsert(w.d, w.account_id, "p1@example.com", plan="pro")
    again = people(w, 1, "pro", start=11)
    w.stack.deliver()
    _, rows4, _ = w.run(job["id"])
    assert rows4 == Counter([("add", again[0])])
    # WHEN removals are turned on again THEN the members who left meanwhile are removed, once
    w.edit(job["id"], include_removals=True)
    _, rows5, _ = w.run(job["id"])
    assert rows5 == Counter([("remove", pro[2])])
    _, rows6, _ = w.run(job["id"])
    assert rows6 == Counter()
