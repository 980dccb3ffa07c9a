"""One contract, two stores: every case runs against the DynamoDB repositories (on moto)
and against the in-memory ones of tests/fakes/memory_store.py. The in-memory store is
what the fast use-case tests run on; if it drifts from what DynamoDB does, it fails here.

Covered: audiences (create/get, tenancy, versioned update, delete refused while in use,
newest-first pages and their cursors), the audit trail (pages, filters), and the unit of
work (all or nothing, refusals named, names unique, one commit).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from chalicelib.domain.audiences import Audience
from chalicelib.domain.errors import AppError
from chalicelib.domain.ids import new_id
from chalicelib.domain.profiles import ProfileRecord
from chalicelib.store.audit import AuditEvent
from chalicelib.store.dynamo import TransactionFailed, now_iso
from chalicelib.store.keys import account_pk, audience_sk


@dataclass
class Store:
    """One store's repositories, and how a test sets what other aggregates' writes keep."""

    audiences: Any
    audit: Any
    transaction: Any
    set_export_jobs: Any
    profiles: Any
    seed_profiles: Any


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
        from tests.fakes.memory_store import (
            MemoryAudiences,
            MemoryAudit,
            MemoryProfiles,
            MemoryTable,
            MemoryTransaction,
        )

        table = MemoryTable()
        audiences = MemoryAudiences(table)
        profiles = MemoryProfiles()
        return Store(audiences, MemoryAudit(table), lambda: MemoryTransaction(table), audiences.set_export_jobs,
                     profiles, profiles.seed)
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

    return Store(AudienceRepo(t), AuditRepo(t), lambda: Transaction(t), set_export_jobs, profiles, seed_profiles)


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
