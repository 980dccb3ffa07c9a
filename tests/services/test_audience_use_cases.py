"""Audience use cases (services/audiences.py) on the in-memory store: sizes and previews,
edits that change nothing, roles. No moto: the store's side of these (conditional writes,
Queries, cursors) is proven against DynamoDB by tests/store/test_repo_contract.py, and the
HTTP side by tests/api/test_audiences.py."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from chalicelib.domain.access import Principal, Role
from chalicelib.domain.errors import AppError
from chalicelib.domain.profiles import ProfileRecord
from chalicelib.services import audiences as svc
from tests.fakes.memory_store import memory_deps

PRO = {"all": [{"field": "plan", "op": "equals", "value": "pro"}]}
ACCOUNT = "acct_memory"


@pytest.fixture()
def d() -> Any:
    return memory_deps()


def _as(role: Role, account_id: str = ACCOUNT) -> Principal:
    return Principal(account_id, f"user_{role.value}", role, "tok_test")


ADMIN = _as(Role.ADMIN)


def add_profiles(d: Any, account_id: str, count: int) -> None:
    """`count` profiles keyed by email; every third is on the pro plan; ages 20, 21, ..."""
    d.profiles.seed(account_id, [
        ProfileRecord(identifiers={"email": f"p{i}@acme.example"},
                      fields={"plan": "pro" if i % 3 == 0 else "free", "age": 20 + i}, ref=str(i))
        for i in range(count)])


def _new(filter_: Any = None, name: str = "Pro customers") -> svc.NewAudience:
    return svc.NewAudience(name=name, description="", filter=filter_ or PRO)


def test_preview_combines_conditions(d: Any) -> None:
    # GIVEN 30 profiles aged 20..49, and 9 in another account
    add_profiles(d, ACCOUNT, 30)
    add_profiles(d, "acct_other", 9)
    # WHEN previewing "pro, or older than 45, but not p0"
    f = {"all": [{"any": [{"field": "plan", "op": "equals", "value": "pro"}, {"field": "age", "op": "gt", "value": 45}]},
                 {"field": "email", "op": "not_equals", "value": "P0@Acme.example"}]}
    # THEN pro profiles p3..p27 (9) and those over 45 not on pro (p26, p28, p29) are counted
    e = svc.preview(d, ADMIN, f)
    assert (e.size, e.scanned, e.truncated) == (12, 30, False)
    assert {m.email for m in e.sample} <= {f"p{i}@acme.example" for i in (*range(3, 30, 3), 26, 28, 29)}
    # AND an "everyone" filter counts them all, and only this account's
    assert svc.preview(d, ADMIN, {"all": []}).size == 30


def test_saved_audience_size_follows_its_filter(d: Any) -> None:
    # GIVEN 12 profiles (4 on pro) and a saved audience
    add_profiles(d, ACCOUNT, 12)
    made = svc.create(d, ADMIN, _new())
    # (its members are backfilled: the first page of its version is queued)
    assert d.backfill_queue.messages == [{"account_id": ACCOUNT, "audience_id": made.id, "version": 1, "page": 0}]
    # WHEN its size is asked THEN the preview of the same filter gives the same count, kept
    first = svc.size(d, ADMIN, made.id)
    assert svc.preview(d, ADMIN, PRO) == dataclasses.replace(first, cached=True) and not first.cached
    assert svc.size(d, ADMIN, made.id).size == 4
    # AND after the filter changes, so does the size
    svc.edit(d, ADMIN, made.id, {"filter": {"all": [{"field": "age", "op": "lt", "value": 25}]}}, 1)
    assert svc.size(d, ADMIN, made.id).size == 5
    # AND the new filter's members are backfilled again, for version 2; a rename is not
    svc.edit(d, ADMIN, made.id, {"name": "Young"}, 2)
    assert [(m["version"], m["page"]) for m in d.backfill_queue.messages] == [(1, 0), (2, 0)]


def test_an_account_without_profiles_has_empty_audiences(d: Any) -> None:
    add_profiles(d, "acct_other", 3)  # positive control: profiles exist, in another account
    assert svc.preview(d, _as(Role.ADMIN, "acct_other"), PRO).size == 1
    e = svc.preview(d, ADMIN, PRO)
    assert (e.size, e.sample, e.scanned, e.truncated) == (0, [], 0, False)


def test_size_stops_at_the_scan_limit(d: Any) -> None:
    # GIVEN 25 profiles and an "everyone" audience
    add_profiles(d, ACCOUNT, 25)
    made = svc.create(d, ADMIN, _new({"all": []}))
    me = _as(Role.OBSERVER)
    # WHEN sizing with a scan limit of 20 THEN it stops after 20 profiles and says so
    e = svc.size(d, me, made.id, max_scan=20)
    assert (e.size, e.scanned, e.truncated) == (20, 20, True)
    # AND exactly as many profiles as the limit is not truncated
    assert svc.size(d, me, made.id, max_scan=25).truncated is False


def test_an_edit_with_no_change_keeps_the_version_and_records_nothing(d: Any) -> None:
    made = svc.create(d, ADMIN, _new())
    # WHEN the same values are sent back (the filter spelled with other column spellings)
    same = svc.edit(d, ADMIN, made.id, {"name": made.name, "filter": {"all": [
        {"field": "Plan", "op": "equals", "value": "pro"}]}}, 1)
    # THEN nothing is written: same version, and only the creation is in the audit trail
    assert same == made and svc.get(d, ADMIN, made.id).version == 1
    assert [e["action"] for e in d.audit.events(ACCOUNT)] == ["created"]
    # Positive control: a real change is written and recorded
    changed = svc.edit(d, ADMIN, made.id, {"name": "Renamed"}, 1)
    assert changed.version == 2
    assert [e["action"] for e in d.audit.events(ACCOUNT)] == ["changed", "created"]
    assert d.audit.events(ACCOUNT)[0]["diff"] == {"name": {"before": "Pro customers", "after": "Renamed"}}


def test_edits_need_the_current_version(d: Any) -> None:
    made = svc.create(d, ADMIN, _new())
    with pytest.raises(AppError) as missing:
        svc.edit(d, ADMIN, made.id, {"name": "Renamed"}, None)
    assert missing.value.code == "validation.version_required"
    svc.edit(d, ADMIN, made.id, {"name": "Renamed"}, 1)
    with pytest.raises(AppError) as stale:
        svc.edit(d, ADMIN, made.id, {"description": "stale"}, 1)
    assert stale.value.code == "conflict.stale_version"
    with pytest.raises(AppError) as unknown:
        svc.edit(d, ADMIN, made.id, {"owner": "me"}, 2)
    assert "owner" in (unknown.value.fields or {})
    assert svc.get(d, ADMIN, made.id).name == "Renamed" and svc.get(d, ADMIN, made.id).version == 2


def test_observers_read_but_never_write_and_other_accounts_see_nothing(d: Any) -> None:
    add_profiles(d, ACCOUNT, 3)
    made = svc.create(d, ADMIN, _new())
    observer = _as(Role.OBSERVER)
    # Observers read, list, size and preview
    assert svc.get(d, observer, made.id) == made
    assert [a.id for a in svc.list_(d, observer, limit=10, cursor=None).items] == [made.id]
    assert svc.size(d, observer, made.id).size == 1
    # but never write
    for write in (lambda: svc.create(d, observer, _new(name="x")),
                  lambda: svc.edit(d, observer, made.id, {"name": "x"}, 1),
                  lambda: svc.delete(d, observer, made.id)):
        with pytest.raises(AppError) as refused:
            write()
        assert refused.value.code == "auth.forbidden"
    # Data managers do
    dm = _as(Role.DATA_MANAGER)
    assert svc.edit(d, dm, made.id, {"description": "mine"}, 1).version == 2
    # Another account's admin gets "not found", as for an id that never existed
    stranger = _as(Role.ADMIN, "acct_stranger")
    for call in (lambda: svc.get(d, stranger, made.id), lambda: svc.size(d, stranger, made.id),
                 lambda: svc.edit(d, stranger, made.id, {"name": "mine"}, 2),
                 lambda: svc.delete(d, stranger, made.id)):
        with pytest.raises(AppError) as hidden:
            call()
        assert hidden.value.code == "audience.not_found"
    assert svc.get(d, ADMIN, made.id).description == "mine"
    svc.delete(d, dm, made.id)
    with pytest.raises(AppError):
        svc.get(d, ADMIN, made.id)
