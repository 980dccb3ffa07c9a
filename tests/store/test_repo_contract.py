"""One contract, two stores: every case runs against the DynamoDB repositories (on moto)
and against the in-memory ones of tests/fakes/memory_store.py. The in-memory store is
what the fast use-case tests run on; if it drifts from what DynamoDB does, it fails here.

Covered: audiences (create/get, tenancy, versioned update, delete refused while in use,
newest-first pages and their cursors), the audit trail (pages, filters), the unit of
work (all or nothing, refusals named, names unique, one commit), and what the run pipeline's
unit tests (tests/engine/unit) use: runs (leases, step commits, statuses, queued steps, log
lines, request counts), jobs (created and saved with their usage moves, alerts cleared),
profile upserts (exactly once per step tag), export plans and membership sets, and the answers
of a schedule's sync and removal. A method the in-memory store leaves out raises NotFaked.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib.domain.audiences import Audience, Estimate, SampleMember
from chalicelib.domain.audit import AuditEvent
from chalicelib.domain.errors import AppError
from chalicelib.domain.ids import new_id
from chalicelib.domain.profiles import ProfileRecord
from chalicelib.domain.schedules import ScheduleError
from chalicelib.store.dynamo import TransactionFailed, now_iso
from chalicelib.store.keys import account_pk, audience_sk
from chalicelib.store.profiles import STEP_HISTORY


@dataclass
class Store:
    """One store's repositories, and how a test sets what other aggregates' writes keep."""

    audiences: Any
    audit: Any
    transaction: Any
    set_export_jobs: Any
    profiles: Any
    seed_profiles: Any
    alert_rules: Any
    activity: Any  # record(account, job, at, added, removed, omitted) and activity(...)
    runs: Any
    jobs: Any
    auths: Any
    put_auth: Any  # a new authorization, as the API stores it
    memberships: Any


@pytest.fixture(scope="module")
def dynamo_table(aws_endpoint: str) -> Iterator[Any]:
    from chalicelib.store.dynamo import Table
    from tests.tables import clone

    fresh = Table(clone(Table()))
    yield fresh
    fresh.client.delete_table(TableName=fresh.name)


@pytest.fixture(scope="module")
def dynamo_profiles_table(aws_endpoint: str) -> Iterator[Any]:
    from chalicelib.store.dynamo import Table
    from tests.tables import clone

    fresh = Table(clone(Table(setting="profiles_table_name")))
    yield fresh
    fresh.client.delete_table(TableName=fresh.name)


@pytest.fixture(params=["dynamo", "memory"])
def store(request: pytest.FixtureRequest) -> Store:
    if request.param == "memory":
        from tests.fakes.memory_runs import MemoryAuths, MemoryJobs, MemoryMemberships, MemoryRuns
        from tests.fakes.memory_store import (
            MemoryActivity,
            MemoryAlertRules,
            MemoryAudiences,
            MemoryAudit,
            MemoryProfiles,
            MemoryTable,
            MemoryTransaction,
        )

        table = MemoryTable()
        audiences = MemoryAudiences(table)
        profiles = MemoryProfiles()
        auths = MemoryAuths(table)
        return Store(audiences, MemoryAudit(table), lambda: MemoryTransaction(table), audiences.set_export_jobs,
                     profiles, profiles.seed, MemoryAlertRules(table), MemoryActivity(), MemoryRuns(table),
                     MemoryJobs(table), auths, auths.put, MemoryMemberships())
    from chalicelib.store.audiences import AudienceRepo
    from chalicelib.store.audit import AuditRepo
    from chalicelib.store.dynamo import Transaction

    t = request.getfixturevalue("dynamo_table")

    def set_export_jobs(account_id: str, audience_id: str, n: int) -> None:
        t.client.update_item(TableName=t.name, Key={"PK": {"S": account_pk(account_id)},
                                                     "SK": {"S": audience_sk(audience_id)}},
                             UpdateExpression="SET jobs_using = :n", ExpressionAttributeValues={":n": {"N": str(n)}})

    from chalicelib.store.profiles import ProfileRepo

    profiles = ProfileRepo(request.getfixturevalue("dynamo_profiles_table"))

    def seed_profiles(account_id: str, records: list[ProfileRecord]) -> None:
        assert profiles.upsert_batch(account_id, records, step_tag=f"seed-{uuid.uuid4().hex[:8]}") \
            == ["added"] * len(records)

    from chalicelib.store.alert_rules import AlertRuleRepo
    from chalicelib.store.authorizations import AuthorizationRepo
    from chalicelib.store.jobs import JobRepo
    from chalicelib.store.membership import MembershipRepo
    from chalicelib.store.runs import RunRepo

    auths = AuthorizationRepo(t)

    def put_auth(auth: Any) -> None:
        tx = Transaction(t)
        auths.add_new(tx, auth)
        tx.commit()

    return Store(AudienceRepo(t), AuditRepo(t), lambda: Transaction(t), set_export_jobs, profiles, seed_profiles,
                 AlertRuleRepo(t), DynamoActivity(t), RunRepo(t), JobRepo(t), auths, put_auth, MembershipRepo(t))


class DynamoActivity:
    """The run store's activity, recorded as a step's commit records it."""

    def __init__(self, table: Any) -> None:
        from chalicelib.store.runs import RunRepo

        self.t, self.runs = table, RunRepo(table)

    def record(self, account_id: str, job_id: str, at: datetime, added: int, removed: int, omitted: int) -> None:
        self.t.transact(self.runs.activity_ops(account_id, job_id, at, added, removed, omitted))

    def activity(self, account_id: str, job_id: str, granularity: str, now: datetime) -> list[dict[str, Any]]:
        return self.runs.activity(account_id, job_id, granularity, now=now)


def _account() -> str:
    return uuid.uuid4().hex[:10]


def _audience(account_id: str, name: str = "Pro customers") -> Audience:
    now = now_iso()
    return Audience(id=new_id("aud"), account_id=account_id, name=name, description="",
                    filter={"all": [{"field": "plan", "op": "equals", "value": "pro"}]},
                    owner="user_1", created_at=now, updated_at=now)


def _code(exc: pytest.ExceptionInfo[AppError]) -> str:
    return exc.value.code


def test_an_audience_reads_back_as_created_and_only_in_its_account(store: Store) -> None:
    account = _account()
    a = _audience(account)
    store.audiences.create(a)
    assert store.audiences.get(account, a.id) == a
    assert store.audiences.get(_account(), a.id) is None
    assert store.audiences.get(account, "aud_missing") is None


def test_an_update_needs_the_version_read_and_bumps_it(store: Store) -> None:
    account = _account()
    a = _audience(account)
    store.audiences.create(a)
    saved = store.audiences.update(account, a.id, {"name": "Renamed", "filter": {"all": []}}, expected_version=1)
    assert (saved.name, saved.filter, saved.version) == ("Renamed", {"all": []}, 2)
    assert store.audiences.get(account, a.id) == saved
    with pytest.raises(AppError) as stale:
        store.audiences.update(account, a.id, {"name": "Lost update"}, expected_version=1)
    assert _code(stale) == "conflict.stale_version"
    assert store.audiences.get(account, a.id) == saved  # the refused update changed nothing
    with pytest.raises(AppError) as gone:
        store.audiences.update(_account(), a.id, {"name": "Other account"}, expected_version=2)
    assert _code(gone) == "audience.not_found"
    # An update never resurrects a deleted audience.
    store.audiences.delete(account, a.id)
    with pytest.raises(AppError) as deleted:
        store.audiences.update(account, a.id, {"name": "back"}, expected_version=2)
    assert _code(deleted) == "audience.not_found"
    assert store.audiences.get(account, a.id) is None


def test_an_audience_in_use_is_not_deleted(store: Store) -> None:
    account = _account()
    a = _audience(account)
    store.audiences.create(a)
    store.set_export_jobs(account, a.id, 2)
    with pytest.raises(AppError) as used:
        store.audiences.delete(account, a.id)
    assert _code(used) == "audience.in_use"
    assert "used by 2 export jobs" in str(used.value)
    assert store.audiences.get(account, a.id) is not None
    store.set_export_jobs(account, a.id, 0)
    assert store.audiences.delete(account, a.id).id == a.id
    assert store.audiences.get(account, a.id) is None
    with pytest.raises(AppError) as gone:
        store.audiences.delete(account, a.id)
    assert _code(gone) == "audience.not_found"


def test_audiences_page_newest_first_and_cursors_stay_in_their_account(store: Store) -> None:
    account, other = _account(), _account()
    made = []
    for i in range(5):
        a = _audience(account, f"A{i}")
        store.audiences.create(a)
        made.append(a.id)
    store.audiences.create(_audience(other, "not mine"))
    seen: list[list[str]] = []
    cursor = None
    while True:
        page = store.audiences.page(account, limit=2, cursor=cursor)
        seen.append([a.id for a in page.items])
        cursor = page.next_cursor
        if cursor is None:
            break
    newest = sorted(made, reverse=True)  # ids sort by time, then at random within a millisecond
    assert seen == [newest[0:2], newest[2:4], newest[4:5]]
    assert [a.id for a in store.audiences.all(account)] == newest[::-1]  # every one, oldest first
    # Exactly a page's worth left: no cursor to an empty page.
    assert store.audiences.page(account, limit=5, cursor=None).next_cursor is None
    first = store.audiences.page(account, limit=2, cursor=None)
    with pytest.raises(AppError) as foreign:
        store.audiences.page(other, limit=2, cursor=first.next_cursor)
    assert _code(foreign) == "request.invalid_cursor"


def test_the_audit_trail_pages_newest_first_and_filters(store: Store) -> None:
    account = _account()
    base = 1_700_000_000_000_000_000
    for i, (user, obj) in enumerate([("u1", "o1"), ("u2", "o1"), ("u1", "o2"), ("u1", "o1")]):
        store.audit.put(AuditEvent(account, user, "changed", "audience", obj, f"L{i}",
                                   {"name": {"before": i, "after": i + 1}}, at_ns=base + i * 1_000_000))
    store.audit.put(AuditEvent(_account(), "u1", "created", "audience", "o1", "elsewhere"))
    everything = store.audit.page(account, limit=10, cursor=None)
    assert [e["label"] for e in everything.items] == ["L3", "L2", "L1", "L0"]
    assert everything.next_cursor is None
    assert everything.items[0]["diff"] == {"name": {"before": 3, "after": 4}}
    assert [e["label"] for e in store.audit.page(account, limit=10, cursor=None, object_id="o1",
                                                 user_id="u1").items] == ["L3", "L0"]
    first = store.audit.page(account, limit=3, cursor=None)
    rest = store.audit.page(account, limit=3, cursor=first.next_cursor)
    assert [e["label"] for e in first.items + rest.items] == ["L3", "L2", "L1", "L0"]
    assert rest.next_cursor is None


def _claim(account: str) -> dict[str, Any]:
    return {"PK": account_pk(account), "SK": "CLAIM#one", "type": "claim"}


def test_a_refused_condition_cancels_the_whole_unit_and_is_named(store: Store) -> None:
    account = _account()
    # Positive control: the same unit with the key free commits, audit event and all.
    ok = store.transaction()
    store.audit.add(ok, AuditEvent(account, "u1", "created", "claim", "one", "first"))
    ok.put("claim", _claim(account), condition="attribute_not_exists(PK)")
    ok.commit()
    assert [e["label"] for e in store.audit.page(account, limit=10, cursor=None).items] == ["first"]
    # The key is taken now: the second claim refuses, by its name, and its audit event is dropped.
    tx = store.transaction()
    store.audit.add(tx, AuditEvent(account, "u1", "created", "claim", "one", "second"))
    tx.put("claim", _claim(account), condition="attribute_not_exists(PK)")
    assert tx.names == ["audit:0", "claim"]
    with pytest.raises(TransactionFailed) as refused:
        tx.commit()
    assert refused.value.refused == ["claim"]
    assert not refused.value.conflict
    assert [e["label"] for e in store.audit.page(account, limit=10, cursor=None).items] == ["first"]


def test_a_refused_unit_commits_on_retry_without_the_refused_write(store: Store) -> None:
    account = _account()
    taken = store.transaction()
    taken.put("claim", _claim(account))
    taken.commit()
    tx = store.transaction()
    store.audit.add(tx, AuditEvent(account, "u1", "created", "claim", "one", "retried"))
    tx.put("claim", _claim(account), condition="attribute_not_exists(PK)")
    with pytest.raises(TransactionFailed) as refused:
        tx.commit()
    assert refused.value.refused == ["claim"]
    assert store.audit.page(account, limit=10, cursor=None).items == []
    tx.drop("claim")
    assert tx.names == ["audit:0"]
    tx.commit()
    assert [e["label"] for e in store.audit.page(account, limit=10, cursor=None).items] == ["retried"]


def test_a_unit_names_each_write_once_and_commits_once(store: Store) -> None:
    account = _account()
    tx = store.transaction()
    tx.put("claim", _claim(account))
    with pytest.raises(ValueError):
        tx.put("claim", _claim(account))
    assert tx.numbered("audit:") == "audit:0"
    store.audit.add(tx, AuditEvent(account, "u1", "created", "claim", "one"))
    assert tx.numbered("audit:") == "audit:1"
    assert len(tx) == 2 and "claim" in tx
    tx.commit()
    with pytest.raises(RuntimeError):
        tx.commit()
    with pytest.raises(RuntimeError):
        tx.put("later", _claim(_account()))


def test_new_profiles_read_back_as_the_audience_estimate_sees_them(store: Store) -> None:
    account, other = _account(), _account()
    records = [ProfileRecord(identifiers={"email": f" P{i}@Acme.example ", "user_id": f"u{i}"},
                             fields={"plan": "pro" if i % 2 else "free", "age": 20 + i, "tags": ["a", "b"]},
                             ref=str(i)) for i in range(5)]
    store.seed_profiles(account, records)
    store.seed_profiles(other, records[:1])
    seen = sorted(((p.account_id, p.identifiers, p.fields) for p in store.profiles.iterate(account, page_size=2)),
                  key=lambda t: t[1]["email"])
    # Identifiers as given: normalizing them is the import mapping's job, before the store.
    assert seen == [(account, {"email": [f" P{i}@Acme.example "], "user_id": [f"u{i}"]},
                     {"plan": "pro" if i % 2 else "free", "age": 20 + i, "tags": ["a", "b"]}) for i in range(5)]
    assert list(store.profiles.iterate(_account())) == []


# -- alert rules and the activity they watch ---------------------------------------------------


def _job(store: Store, account: str) -> str:
    """A job item, as far as alert rules look at it: its key exists."""
    from chalicelib.store.keys import job_sk

    job_id = f"job_{uuid.uuid4().hex[:8]}"
    tx = store.transaction()
    tx.put("job", {"PK": account_pk(account), "SK": job_sk(job_id), "type": "job"})
    tx.commit()
    return job_id


def _rule(account: str, job_id: str, **kw: Any) -> Any:
    from chalicelib.domain.alert_rules import AlertRule

    return AlertRule(account, job_id, kw.pop("metric", "added"), kw.pop("granularity", "hour"), kw.pop("min", None),
                     kw.pop("max", 100), 0, created_at="2026-01-01T00:00:00Z", **kw)


def _create(store: Store, rule: Any, label: str = "rule") -> Any:
    tx = store.transaction()
    store.audit.add(tx, AuditEvent(rule.account_id, "u1", "created", "alert_rule", rule.job_id, label))
    return store.alert_rules.create(rule, tx=tx)


def _labels(store: Store, account: str) -> list[str]:
    return [e["label"] for e in store.audit.page(account, limit=50, cursor=None).items]


def test_a_rule_needs_its_job_and_a_free_place_among_ten(store: Store) -> None:
    from chalicelib.store.alert_rules import JobGone, RuleLimit

    account = _account()
    with pytest.raises(JobGone):
        _create(store, _rule(account, "job_missing"), "orphan")
    assert _labels(store, account) == []  # its audit event went with it
    job_id = _job(store, account)
    made = [_create(store, _rule(account, job_id), f"r{i}") for i in range(10)]
    assert all(r.id and r.created_at for r in made)
    assert sorted(r.id for r in store.alert_rules.list_for_job(account, job_id)) == sorted(r.id for r in made)
    assert store.alert_rules.get(account, job_id, made[0].id) == made[0]
    with pytest.raises(RuleLimit):
        _create(store, _rule(account, job_id), "eleventh")
    assert "eleventh" not in _labels(store, account) and len(_labels(store, account)) == 10
    # A delete frees a place; a second delete of the same rule answers False.
    assert store.alert_rules.delete(made[0], tx=store.transaction()) is True
    assert store.alert_rules.delete(made[0], tx=store.transaction()) is False
    assert store.alert_rules.get(account, job_id, made[0].id) is None
    _create(store, _rule(account, job_id), "tenth again")
    assert len(store.alert_rules.list_for_job(account, job_id)) == 10


def test_a_rule_moves_state_once_and_clears_only_its_own_alert(store: Store) -> None:
    account = _account()
    job_id = _job(store, account)
    made = _create(store, _rule(account, job_id))
    first, second = (store.alert_rules.get(account, job_id, made.id) for _ in range(2))
    alert = {"transition_id": "t1", "detail_json": "{}"}
    assert store.alert_rules.move_state(first, "breached", "2026-01-01T01:00:00Z", alert=alert) is True
    assert (first.alert_state, first.pending_alert) == ("breached", alert)
    assert store.alert_rules.move_state(second, "breached", "2026-01-01T01:00:01Z") is False
    stored = store.alert_rules.get(account, job_id, made.id)
    assert (stored.alert_state, stored.state_changed_at, stored.pending_alert) == \
        ("breached", "2026-01-01T01:00:00Z", alert)
    store.alert_rules.clear_alert(stored, "t0")  # another transition's: the pending one stays
    assert store.alert_rules.get(account, job_id, made.id).pending_alert == alert
    store.alert_rules.clear_alert(stored, "t1")
    assert store.alert_rules.get(account, job_id, made.id).pending_alert is None
    assert store.alert_rules.move_state(stored, "ok", "2026-01-01T02:00:00Z") is True


def test_the_sweep_finds_every_rule_once_and_a_jobs_rules_go_with_it(store: Store) -> None:
    from chalicelib.store.alert_rules import RULE_SHARDS

    account = _account()
    job_id, other_job = _job(store, account), _job(store, account)
    mine = {_create(store, _rule(account, job_id)).id for _ in range(3)}
    kept = _create(store, _rule(account, other_job)).id

    def swept() -> list[str]:
        out = []
        for shard in range(RULE_SHARDS):
            start = None
            while True:
                rules, start = store.alert_rules.sweep_page(shard, start, limit=2)
                out += [r.id for r in rules if r.account_id == account]
                if not start:
                    break
        return out

    assert sorted(swept()) == sorted(mine | {kept})
    # A rule created after the job's count was read makes the job's delete refuse, by name.
    tx = store.transaction()
    store.alert_rules.add_deletes_for_job(tx, account, job_id)
    late = _create(store, _rule(account, job_id)).id
    with pytest.raises(TransactionFailed) as refused:
        tx.commit()
    assert refused.value.refused == ["rule_count"]
    assert len(store.alert_rules.list_for_job(account, job_id)) == 4
    tx = store.transaction()
    store.alert_rules.add_deletes_for_job(tx, account, job_id)
    tx.commit()
    assert store.alert_rules.list_for_job(account, job_id) == []
    assert swept() == [kept] and late not in swept()
    # A job without rules: its delete checks no count appeared meanwhile (positive control: commits).
    tx = store.transaction()
    store.alert_rules.add_deletes_for_job(tx, account, _job(store, account))
    tx.commit()


@pytest.mark.parametrize("granularity", ["hour", "day", "week"])
def test_activity_series_are_the_same_buckets(store: Store, granularity: str) -> None:
    account, job_id = _account(), "job_activity"
    now = datetime(2026, 3, 12, 14, 35, tzinfo=UTC)  # a Thursday
    for at, counts in ((now - timedelta(minutes=20), (5, 1, 0)), (now - timedelta(hours=1, minutes=50), (7, 0, 2)),
                       (now - timedelta(hours=2), (3, 0, 0)), (now - timedelta(days=1, hours=3), (40, 4, 0)),
                       (now - timedelta(days=4), (100, 0, 1)), (now - timedelta(days=9), (8, 8, 8)),
                       (now - timedelta(days=60), (1, 1, 1)), (now - timedelta(days=200), (9, 9, 9)),
                       (now + timedelta(hours=12), (1000, 0, 0))):  # tomorrow: in no bucket yet
        store.activity.record(account, job_id, at, *counts)
    series = store.activity.activity(account, job_id, granularity, now=now)
    assert series == store.activity.activity(account, job_id, granularity, now=now)
    first, last = series[0]["start"], series[-1]["start"]
    totals = {k: sum(p[k] for p in series) for k in ("added", "removed", "omitted")}
    expected = {
        "hour": (48, "2026-03-10T15:00:00Z", "2026-03-12T14:00:00Z", {"added": 55, "removed": 5, "omitted": 2}),
        "day": (30, "2026-02-11T00:00:00Z", "2026-03-12T00:00:00Z",
                {"added": 163, "removed": 13, "omitted": 11}),
        "week": (13, "2025-12-15T00:00:00Z", "2026-03-09T00:00:00Z",
                 {"added": 164, "removed": 14, "omitted": 12}),
    }[granularity]
    assert (len(series), first, last, totals) == expected
    if granularity == "hour":
        assert series[-3:] == [{"start": "2026-03-12T12:00:00Z", "added": 10, "removed": 0, "omitted": 2},
                               {"start": "2026-03-12T13:00:00Z", "added": 0, "removed": 0, "omitted": 0},
                               {"start": "2026-03-12T14:00:00Z", "added": 5, "removed": 1, "omitted": 0}]
    if granularity == "week":  # Monday to Sunday: the 4 days ago (a Sunday) are last week's
        assert series[-2:] == [{"start": "2026-03-02T00:00:00Z", "added": 108, "removed": 8, "omitted": 9},
                               {"start": "2026-03-09T00:00:00Z", "added": 55, "removed": 5, "omitted": 2}]


def test_kept_sizes_read_back_until_they_expire_and_only_in_their_account(store: Store) -> None:
    a, b = _account(), _account()
    kept = Estimate(size=3, sample=[SampleMember("p_1", "a@x.example")], scanned=9, truncated=False,
                    computed_at="2030-01-01T00:00:00Z")
    store.audiences.cache_sizes(a, {"f1": kept}, expires_at=1_000)
    # a kept size reads back whole, marked as kept, before its expiry, and not at or after it (TTL deletes late)
    assert store.audiences.cached_sizes(a, ["f1", "f2"], now=999) == {"f1": dataclasses.replace(kept, cached=True)}
    assert store.audiences.cached_sizes(a, ["f1"], now=1_000) == {}
    # another account never sees it
    assert store.audiences.cached_sizes(b, ["f1"], now=0) == {}
    # get_many answers only this account's audiences among the ids asked
    mine = _audience(a)
    store.audiences.create(mine)
    assert store.audiences.get_many(a, [mine.id, "aud_missing"]) == {mine.id: store.audiences.get(a, mine.id)}
    assert store.audiences.get_many(b, [mine.id]) == {}


# -- the run pipeline: runs, jobs, profiles, plans ----------------------------------------------


def _run(account: str, job_id: str = "job_1", origin: str = "m0") -> Any:
    from chalicelib.domain.runs import Run, RunStatus

    return Run(id=new_id("run"), job_id=job_id, account_id=account, trigger="run", status=RunStatus.RUNNING,
               started_at="2026-03-02T09:00:00Z", origin=origin)


def _new_run(store: Store, run: Any, lease_seconds: int | None = 60) -> None:
    tx = store.transaction()
    store.runs.add_new_run(tx, run, lease_seconds=lease_seconds)
    tx.commit()


def _step(n: int, **kw: Any) -> Any:
    from chalicelib.domain.runs import StepCommit

    return StepCommit(step=n, cursor={"i": 10 * (n + 1)}, processed=10 * (n + 1), total=30, total_unit="rows",
                      read=10 * (n + 1), **kw)


def test_a_run_is_created_once_holding_its_first_lease(store: Store) -> None:
    from chalicelib.domain.runs import RunStatus

    account = _account()
    run = _run(account)
    _new_run(store, run)
    got = store.runs.get(account, "job_1", run.id)
    assert (got.status, got.step, got.added, got.cursor, got.lease_owner, got.origin, got.enqueued_step) == (
        RunStatus.RUNNING, 0, 0, None, "m0", "m0", 0)
    assert store.runs.get(_account(), "job_1", run.id) is None
    with pytest.raises(TransactionFailed) as refused:
        _new_run(store, run)
    assert refused.value.refused == ["run"]
    assert [r.id for r in store.runs.page(account, "job_1", limit=5, cursor=None).items] == [run.id]


def test_a_lease_is_one_deliverys_until_it_lapses_and_only_for_the_current_step(store: Store) -> None:
    account = _account()
    run = _run(account)
    _new_run(store, run)
    assert not store.runs.acquire(run, "m1", 60)  # held by m0
    assert store.runs.acquire(run, "m0", 60)  # its own delivery takes it back at once
    assert not store.runs.acquire(dataclasses.replace(run, step=1), "m0", 60)  # not the current step
    assert store.runs.acquire(run, "m0", -1)  # m0's lease lapses at once...
    assert store.runs.acquire(run, "m1", 60)  # ...so another delivery takes it
    assert store.runs.get(account, "job_1", run.id).lease_owner == "m1"
    assert not store.runs.acquire(_run(account), "m1", 60)  # no such run


def test_a_step_commits_once_from_its_step_under_its_lease_with_everything_added_to_it(store: Store) -> None:
    from chalicelib.domain.runs import LogLine, RunStatus

    account, at = _account(), datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    run = _run(account)
    _new_run(store, run)

    def commit(c: Any, owner: str = "m0") -> None:
        tx = store.transaction()
        store.runs.add_commit(tx, run, owner, c, "2026-03-02T09:30:00Z")
        store.runs.add_activity(tx, account, "job_1", at, c.added, c.removed, sum(c.omitted_reasons.values()))
        store.runs.add_requests(tx, account, "auth_1", at, 2, 1)
        # A second apart: lines of one millisecond come back in no set order from DynamoDB.
        store.runs.add_logs(tx, account, "job_1", [LogLine("info", "run.step", f"step {c.step}", run_id=run.id)],
                            at + timedelta(seconds=c.step))
        tx.commit()

    commit(_step(0, added=7, omitted_reasons={"unchanged": 2}, cost={"steps": 1.0, "lambda_ms": 2.5}))
    with pytest.raises(TransactionFailed) as refused:  # the same step again: nothing of it lands
        commit(_step(0, added=7))
    assert refused.value.refused == ["run"]
    assert store.runs.acquire(run, "m1", 60) is False  # the next step's lease is on step 1 now
    run.step = 1
    with pytest.raises(TransactionFailed):  # step 1 without its lease
        commit(_step(1, added=1))
    assert store.runs.acquire(run, "m1", 60)
    commit(_step(1, added=3, removed=1, omitted_reasons={"unchanged": 1, "invalid": 4},
                 cost={"steps": 1.0, "lambda_ms": 1.5}, status=RunStatus.SUCCEEDED), owner="m1")
    got = store.runs.get(account, "job_1", run.id)
    assert (got.step, got.status, got.finished_at, got.lease_owner) == (
        2, RunStatus.SUCCEEDED, "2026-03-02T09:30:00Z", None)
    assert (got.added, got.removed, got.omitted, got.omitted_reasons) == (10, 1, 7, {"unchanged": 3, "invalid": 4})
    assert (got.cursor, got.processed, got.read, got.total, got.cost) == (
        {"i": 20}, 20, 20, 30, {"steps": 2.0, "lambda_ms": 4.0})
    hour = store.runs.activity(account, "job_1", "hour", now=at)[-1]
    assert (hour["added"], hour["removed"], hour["omitted"]) == (10, 1, 7)
    requests = store.runs.request_activity(account, "auth_1", "hour", now=at)[-1]
    assert (requests["api_requests"], requests["errors"]) == (4, 2)
    codes = [(r["code"], r["message"]) for r in store.runs.logs(account, "job_1", limit=10, cursor=None,
                                                                 level=None).items]
    assert codes == [("run.step", "step 1"), ("run.step", "step 0")]


def test_a_run_status_moves_only_from_the_step_expected_and_ends_the_lease(store: Store) -> None:
    from chalicelib.domain.runs import RunStatus

    account = _account()
    run = _run(account)
    _new_run(store, run)

    def status(to: RunStatus, **kw: Any) -> None:
        tx = store.transaction()
        store.runs.add_status(tx, run, to, now="2026-03-02T10:00:00Z", **kw)
        tx.commit()

    with pytest.raises(TransactionFailed):
        status(RunStatus.PAUSED, error=None, expect_step=1)
    status(RunStatus.RETRYING, error="rate limited", expect_step=0)
    got = store.runs.get(account, "job_1", run.id)
    assert (got.status, got.error, got.finished_at, got.lease_owner) == (RunStatus.RETRYING, "rate limited", None,
                                                                         None)
    status(RunStatus.RUNNING, error=None, origin="m9")
    status(RunStatus.FAILED, error="gone", expect_step=0)
    got = store.runs.get(account, "job_1", run.id)
    assert (got.status, got.error, got.finished_at, got.origin) == (
        RunStatus.FAILED, "gone", "2026-03-02T10:00:00Z", "m9")
    with pytest.raises(TransactionFailed):  # no such run
        tx = store.transaction()
        store.runs.add_status(tx, _run(account), RunStatus.PAUSED, error=None, now="2026-03-02T10:00:00Z")
        tx.commit()


def test_a_next_step_is_marked_queued_once(store: Store) -> None:
    account = _account()
    run = _run(account)
    _new_run(store, run)
    assert store.runs.mark_enqueued(run, 1)
    assert not store.runs.mark_enqueued(run, 1)
    assert not store.runs.mark_enqueued(run, 0)
    assert store.runs.mark_enqueued(run, 2)
    assert store.runs.get(account, "job_1", run.id).enqueued_step == 2
    assert not store.runs.mark_enqueued(_run(account), 1)


def test_log_lines_page_newest_first_and_filter_by_level(store: Store) -> None:
    from chalicelib.domain.runs import LogLine

    account, at = _account(), datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    tx = store.transaction()
    store.runs.add_logs(tx, account, "job_1", [LogLine("info", "a", "first", context={"n": 1}),
                                               LogLine("warning", "b", "second", run_id="run_1"),
                                               LogLine("debug", "c", "third")], at)
    tx.commit()
    tx = store.transaction()
    store.runs.add_logs(tx, account, "job_1", [LogLine("error", "d", "fourth", user="u1")], at + timedelta(seconds=1))
    store.runs.add_logs(tx, account, "job_2", [LogLine("error", "x", "other job")], at)
    tx.commit()
    first = store.runs.logs(account, "job_1", limit=3, cursor=None, level=None)
    assert [r["code"] for r in first.items] == ["d", "c", "b"] and first.next_cursor
    rest = store.runs.logs(account, "job_1", limit=3, cursor=first.next_cursor, level=None)
    assert [(r["code"], r["timestamp"], r["context_json"]) for r in rest.items] == [
        ("a", "2026-03-02T09:00:00.000Z", '{"n": 1}')] and rest.next_cursor is None
    warned = store.runs.logs(account, "job_1", limit=10, cursor=None, level="warning").items
    assert [(r["code"], r["level"], r.get("run_id"), r.get("user")) for r in warned] == [
        ("d", "error", None, "u1"), ("b", "warning", "run_1", None)]


def _auth(account: str, provider: str = "test_source") -> Any:
    from chalicelib.domain.models import Authorization, Health, HealthStatus

    return Authorization(id=new_id("auth"), account_id=account, provider=provider, method="api_key", label="k",
                         description="", owner="u1", created_at="2026-03-01T00:00:00Z",
                         updated_at="2026-03-01T00:00:00Z", secret_name="s", health=Health(HealthStatus.HEALTHY,
                                                                                             None, None))


def _new_job(account: str, auth_id: str, **kw: Any) -> Any:
    from chalicelib.domain.catalog import JobType
    from chalicelib.domain.models import Job
    from chalicelib.domain.statuses import JobStatus

    return Job(id=new_id("job"), account_id=account, provider="test_source", job_type=JobType.IMPORT,
               workflow="list_import", authorization_id=auth_id, label="Import", description="",
               config={"dataset": "people"}, schedule=None, status=JobStatus.SLEEPING, owner="u1",
               created_at="2026-03-01T00:00:00Z", updated_at="2026-03-01T00:00:00Z", **kw)


def _usage(store: Store, account: str, auth_id: str) -> dict[str, int]:
    return {k: v for k, v in store.auths.get(account, auth_id).usage.items() if v}


def test_a_job_is_saved_over_the_version_and_status_read_with_its_usage_moved(store: Store) -> None:
    from chalicelib.domain.runs import LogLine
    from chalicelib.domain.statuses import JobStatus
    from chalicelib.store.jobs import AuthorizationGone

    account = _account()
    auth = _auth(account)
    store.put_auth(auth)
    job = _new_job(account, auth.id)
    store.jobs.create(job, auth_provider="test_source")
    assert _usage(store, account, auth.id) == {"sleeping": 1}
    with pytest.raises(AuthorizationGone):  # no job starts on an authorization that is not there
        store.jobs.create(_new_job(account, "auth_missing"), auth_provider="test_source")
    with pytest.raises(AuthorizationGone):  # nor on one of another provider
        store.jobs.create(_new_job(account, auth.id), auth_provider="mailchimp")
    running = store.jobs.save(job, job.run_started("run_1"), expected_version=None,
                              expected_status=JobStatus.SLEEPING)
    got = store.jobs.get(account, job.id)
    assert (got.version, got.status, got.current_run_id) == (2, JobStatus.RUNNING, "run_1")
    assert _usage(store, account, auth.id) == {"running": 1}
    # A save over what was read before that one (version 1), or expecting another status,
    # is refused with what the caller added to its unit (a log line): none of it lands.
    for before, expected in ((job, None), (running, JobStatus.SLEEPING)):
        tx = store.transaction()
        store.runs.add_logs(tx, account, job.id, [LogLine("info", "run.step", "not kept")],
                            datetime(2026, 3, 2, tzinfo=UTC))
        with pytest.raises(AppError) as stale:
            store.jobs.save(before, dataclasses.replace(before, label="late"), expected_version=None,
                            expected_status=expected, tx=tx)
        assert _code(stale) == "conflict.stale_version"
    assert store.runs.logs(account, job.id, limit=5, cursor=None, level=None).items == []
    with pytest.raises(AppError) as stale:
        store.jobs.save(running, dataclasses.replace(running, label="x"), expected_version=1)
    assert _code(stale) == "conflict.stale_version"
    assert store.jobs.get(account, job.id).label == "Import"
    with pytest.raises(AppError) as gone:
        store.jobs.save(dataclasses.replace(job, id="job_missing"), dataclasses.replace(job, id="job_missing"),
                        expected_version=None)
    assert _code(gone) == "job.not_found"


def test_a_jobs_pending_alert_is_cleared_only_for_its_transition(store: Store) -> None:
    account = _account()
    auth = _auth(account)
    store.put_auth(auth)
    job = _new_job(account, auth.id, pending_alert={"transition_id": "t2", "type": "Job Failed", "detail_json": "{}"})
    store.jobs.create(job, auth_provider="test_source")
    store.jobs.clear_alert(account, job.id, "t1")
    assert store.jobs.get(account, job.id).pending_alert["transition_id"] == "t2"
    store.jobs.clear_alert(account, job.id, "t2")
    got = store.jobs.get(account, job.id)
    assert (got.pending_alert, got.version) == (None, 1)


def test_profile_upserts_land_exactly_once_per_step_tag(store: Store) -> None:
    account = _account()
    records = [ProfileRecord({"email": "a@example.com"}, {"plan": "pro", "n": 1}, "1"),
               ProfileRecord({"email": "b@example.com"}, {"plan": "free"}, "2")]
    assert store.profiles.upsert_batch(account, records, step_tag="run_1#0") == ["added", "added"]
    # a replay of the tag answers what it gave each profile and changes nothing, whatever it carries now
    assert store.profiles.upsert_batch(account, records, step_tag="run_1#0") == ["added", "added"]
    changed = [ProfileRecord({"email": "a@example.com"}, {"plan": "gold"}, "1")]
    assert store.profiles.upsert_batch(account, changed, step_tag="run_1#0") == ["added"]
    assert store.profiles.find(account, "email", "a@example.com").fields == {"plan": "pro", "n": 1}
    assert store.profiles.upsert_batch(account, records, step_tag="run_2#0") == ["unchanged", "unchanged"]
    assert store.profiles.upsert_batch(account, changed, step_tag="run_3#0") == ["updated"]
    a = store.profiles.find(account, "email", " A@Example.com ")
    assert (a.fields, a.identifiers) == ({"plan": "gold", "n": 1}, {"email": ["a@example.com"]})
    b = store.profiles.find(account, "email", "b@example.com")
    found, written = store.profiles.get_many(account, [a.id, b.id, "prof_missing"], step_tag="run_3#0")
    assert sorted(found) == sorted([a.id, b.id]) and written == {a.id}
    assert store.profiles.find(_account(), "email", "a@example.com") is None
    # merge rules: "first" keeps a stored value, fields not carried are left alone
    kept = [ProfileRecord({"email": "a@example.com"}, {"plan": "free", "city": "Oslo"}, "1")]
    assert store.profiles.upsert_batch(account, kept, step_tag="run_4#0", rules={"plan": "first"}) == ["updated"]
    assert store.profiles.get(account, a.id).fields == {"plan": "gold", "n": 1, "city": "Oslo"}


def test_a_watermarked_step_is_found_after_its_tag_left_the_profiles_history(store: Store) -> None:
    account = _account()
    hit = [ProfileRecord({"user_id": "u1"}, {"hits": 1}, "1"), ProfileRecord({"user_id": "u1"}, {"x": 1}, "2")]
    rules = {"hits": "add"}
    assert store.profiles.upsert_batch(account, hit, step_tag="job_c#h1", rules=rules,
                                       watermark=("job_c", 1)) == ["added", "updated"]
    for n in range(STEP_HISTORY + 2):  # other jobs' steps push job_c#h1 out of the history
        other = [ProfileRecord({"user_id": "u1"}, {f"o{n}": n}, "1")]
        assert store.profiles.upsert_batch(account, other, step_tag=f"run_{n}#0") == ["updated"]
    # the replay answers what it gave and adds nothing; without the watermark it would add again
    assert store.profiles.upsert_batch(account, hit, step_tag="job_c#h1", rules=rules,
                                       watermark=("job_c", 1)) == ["added", "updated"]
    assert store.profiles.find(account, "user_id", "u1").fields["hits"] == 1
    # another job's mark, or the job's next sequence, merges
    assert store.profiles.upsert_batch(account, hit[:1], step_tag="job_d#h1", rules=rules,
                                       watermark=("job_d", 1)) == ["updated"]
    assert store.profiles.upsert_batch(account, hit[:1], step_tag="job_c#h2", rules=rules,
                                       watermark=("job_c", 2)) == ["updated"]
    assert store.profiles.find(account, "user_id", "u1").fields["hits"] == 3
    # a step below the mark (never redelivered in practice) merges nothing and reports nothing new
    assert store.profiles.upsert_batch(account, hit[:1], step_tag="job_c#h0", rules=rules,
                                       watermark=("job_c", 1)) == ["unchanged"]
    assert store.profiles.find(account, "user_id", "u1").fields["hits"] == 3
    with pytest.raises(ValueError, match="sequence"):
        store.profiles.upsert_batch(account, hit, step_tag="job_c#h3", watermark=("job_c", 0))


def test_an_upsert_through_a_lease_taken_ahead_lands_once_and_only_for_its_step(store: Store) -> None:
    account = _account()
    records = [ProfileRecord({"email": "t@example.com"}, {"plan": "pro"}, "1")]
    for expected in (["added"], ["added"]):  # the step, then its replay with a new ticket
        ticket = store.profiles.lease_ahead(account, "run_1#0")
        try:
            assert store.profiles.upsert_batch(account, records, step_tag="run_1#0", ticket=ticket) == expected
        finally:
            ticket.release()
    ticket = store.profiles.lease_ahead(account, "run_1#1")
    try:
        with pytest.raises(ValueError, match="another account or step"):
            store.profiles.upsert_batch(account, records, step_tag="run_1#2", ticket=ticket)
    finally:
        ticket.release()
    assert store.profiles.find(account, "email", "t@example.com").fields == {"plan": "pro"}


def test_membership_sets_and_plans_read_back_as_written(store: Store) -> None:
    from chalicelib.store.membership import MissingChunk, new_set_id

    account, job_id = _account(), "job_1"
    first = store.memberships.write_set(account, job_id, 1, new_set_id(), ["p3", "p1", "p2", "p1"])
    assert (first.generation, first.chunks, first.members) == (1, 1, 3)
    assert store.memberships.read_set(account, job_id, first) == {"p1", "p2", "p3"}
    empty = store.memberships.write_set(account, job_id, 2, new_set_id(), [])
    assert (empty.chunks, empty.members) == (0, 0) and store.memberships.read_set(account, job_id, empty) == set()
    second = store.memberships.write_set(account, job_id, 2, new_set_id(), ["p4"])
    assert store.memberships.sweep(account, job_id, keep=second) == 1  # the first set's one chunk
    assert store.memberships.sweep(account, job_id, keep=second) == 0  # already given its TTL
    rows = [("add", f"p{i}", [f"p{i}@example.com", i]) for i in range(7)] + [("remove", "p9", [None, None])]
    set_id = new_set_id()
    ref = store.memberships.write_plan(account, "run_1", set_id, rows)
    assert (ref.set_id, ref.rows, ref.starts) == (set_id, 8, (0,))
    assert store.memberships.read_plan(account, "run_1", ref, 0, 3) == rows[:3]
    assert store.memberships.read_plan(account, "run_1", ref, 6, 5) == rows[6:]
    store.memberships.delete_plan(account, "run_1", ref)
    with pytest.raises(MissingChunk):
        store.memberships.read_plan(account, "run_1", ref, 0, 3)


@pytest.fixture(params=["moto", "memory"])
def schedules(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        from tests.fakes.memory_runs import MemoryScheduler

        return MemoryScheduler()
    import boto3

    from chalicelib.store.scheduler import SchedulerStore

    request.getfixturevalue("aws_endpoint")
    store = SchedulerStore()
    # moto's CloudFormation skips the template's schedule group: create it by API.
    client = boto3.client("scheduler", region_name="us-east-1")
    if store.group not in [g["Name"] for g in client.list_schedule_groups()["ScheduleGroups"]]:
        client.create_schedule_group(Name=store.group)
    return store


def test_a_schedule_synced_and_removed_answers_alike_in_both(schedules: Any) -> None:
    daily = {"type": "daily", "at": "07:15", "timezone": "Europe/Paris", "quiet_hours": None}
    weekly = {"type": "weekly", "day": "fri", "at": "18:00", "timezone": "America/New_York"}
    account, job_id = _account(), new_id("job")
    answers = [schedules.sync(account, job_id, daily, True), schedules.sync(account, job_id, daily, True),
               schedules.sync(account, job_id, weekly, True), schedules.sync(account, job_id, weekly, False),
               schedules.sync(account, job_id, weekly, False), schedules.sync(account, job_id, None, True),
               schedules.sync(account, job_id, daily, True)]
    assert answers == ["created", "unchanged", "updated", "deleted", "absent", "absent", "created"]
    assert (schedules.remove(account, job_id), schedules.remove(account, job_id)) == (True, False)
    # What counts is the expression: a key left out that means the same is no change.
    assert schedules.sync(account, job_id, daily, True) == "created"
    assert schedules.sync(account, job_id, {k: v for k, v in daily.items() if k != "quiet_hours"}, True) == "unchanged"
    # A real-time job, and a one-time run whose time has passed, have no schedule.
    assert schedules.sync(account, job_id, {"type": "realtime"}, True) == "deleted"
    past = {"type": "once", "at": "2026-01-01T00:00:00Z"}
    assert schedules.sync(account, job_id, past, True, now=datetime(2026, 2, 1, tzinfo=UTC)) == "absent"
    with pytest.raises(ScheduleError):
        schedules.sync(account, job_id, {"type": "cron", "expression": "every day"}, True)


def test_a_method_the_memory_store_leaves_out_fails_by_name() -> None:
    from tests.fakes.memory_store import NotFaked, memory_deps

    d = memory_deps()
    assert d.auths.get(_account(), "auth_1") is None  # the positive control: a kept method answers
    with pytest.raises(NotFaked, match=r"^Authorizations\.page$"):
        d.auths.page(_account(), limit=10, cursor=None)
    account = _account()
    auth = _auth(account)
    with pytest.raises(NotFaked, match=r"^Jobs\.create with an inline new authorization$"):
        d.jobs.create(_new_job(account, auth.id), new_auth=auth, auth_provider="test_source")
