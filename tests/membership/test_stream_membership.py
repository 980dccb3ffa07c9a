"""Audience membership kept current from the profiles table's stream: enter and exit on
insert, modify and remove; redelivery changes nothing; another account's profile never
enters; a partial failure is retried from the failed record."""

from __future__ import annotations

from typing import Any

from chalicelib.domain.audiences import Audience
from chalicelib.domain.ids import new_id
from chalicelib.store.dynamo import now_iso
from chalicelib.store.profiles import profile_key
from tests.membership.conftest import Stack, upsert

PRO = {"all": [{"field": "plan", "op": "equals", "value": "pro"}]}


def audience(deps: Any, account_id: str, filter_: dict[str, Any] = PRO) -> Audience:
    now = now_iso()
    a = Audience(id=new_id("aud"), account_id=account_id, name="Pro", description="", filter=filter_,
                 owner="usr_t", created_at=now, updated_at=now)
    deps.audiences.create(a)  # the repository: no backfill, the stream alone is under test
    return a


def log_of(deps: Any, a: Audience) -> list[tuple[str, str]]:
    repo = deps.audience_members
    return [(c.change, c.profile_id) for c in repo.changes(a.account_id, a.id, after=0,
                                                          upto=repo.head(a.account_id, a.id))]


def test_a_profile_enters_on_insert_and_exits_on_modify_and_on_remove(stack: Stack) -> None:
    d = stack.deps
    a = audience(d, "acct_1")
    # GIVEN a new profile on the pro plan and one on free
    alice = upsert(d, "acct_1", "alice@example.com", plan="pro")
    bob = upsert(d, "acct_1", "bob@example.com", plan="free")
    stack.deliver()
    # THEN alice entered, bob did not
    assert log_of(d, a) == [("enter", alice)]
    assert set(d.audience_members.members("acct_1", a.id)) == {alice}
    # WHEN bob upgrades and alice downgrades
    upsert(d, "acct_1", "bob@example.com", plan="pro")
    upsert(d, "acct_1", "alice@example.com", plan="free")
    stack.deliver()
    assert log_of(d, a) == [("enter", alice), ("enter", bob), ("exit", alice)]
    # WHEN bob's profile is removed
    key = profile_key("acct_1", bob)
    d.profiles_table.client.delete_item(TableName=d.profiles_table.name,
                                        Key={k: {"S": v} for k, v in key.items()})
    stack.deliver()
    assert log_of(d, a)[-1] == ("exit", bob)
    assert list(d.audience_members.members("acct_1", a.id)) == []
    # AND a change that keeps a member a member records nothing
    upsert(d, "acct_1", "carol@example.com", plan="pro")
    stack.deliver()
    n = d.audience_members.head("acct_1", a.id)
    upsert(d, "acct_1", "carol@example.com", plan="pro", city="Lyon")
    assert stack.deliver() >= 1  # the change was delivered...
    assert d.audience_members.head("acct_1", a.id) == n  # ...and recorded nothing


def test_redelivering_a_batch_changes_nothing(stack: Stack) -> None:
    d = stack.deps
    a = audience(d, "acct_1")
    upsert(d, "acct_1", "alice@example.com", plan="pro")
    upsert(d, "acct_1", "bob@example.com", plan="pro")
    upsert(d, "acct_1", "alice@example.com", plan="free")
    # GIVEN the batch delivered once (positive control: it records three changes)
    shard = next(iter(_shards(stack)))
    delivered = stack.deliver()  # the profiles and the account's write lease
    first = log_of(d, a)
    assert [c for c, _ in first] == ["enter", "enter", "exit"]
    # WHEN the mapping delivers the same records again (its checkpoint lost)
    shard.after, shard.iterator = None, None
    assert stack.deliver() == delivered
    # THEN the log and the members are as they were
    assert log_of(d, a) == first
    assert d.audience_members.head("acct_1", a.id) == 3


def test_another_accounts_profile_never_enters(stack: Stack) -> None:
    d = stack.deps
    mine = audience(d, "acct_1", {"all": []})  # every profile of acct_1
    theirs = audience(d, "acct_2", {"all": []})
    # WHEN acct_2 gets a profile
    other = upsert(d, "acct_2", "eve@example.com", plan="pro")
    # AND acct_1 one (the positive control)
    me = upsert(d, "acct_1", "alice@example.com", plan="pro")
    stack.deliver()
    # THEN each enters its own account's audience only
    assert log_of(d, mine) == [("enter", me)]
    assert log_of(d, theirs) == [("enter", other)]


def test_a_failed_record_is_retried_from_where_it_failed(stack: Stack, monkeypatch: Any) -> None:
    from chalicelib.services import audience_members as S

    d = stack.deps
    a = audience(d, "acct_1")
    alice = upsert(d, "acct_1", "alice@example.com", plan="pro")
    bob = upsert(d, "acct_1", "bob@example.com", plan="pro")
    real = S.record_verdict
    failed: list[str] = []

    def flaky(deps: Any, account_id: str, verdict: Any, **kw: Any) -> Any:
        if verdict.profile_id == bob and not failed:
            failed.append(bob)
            raise RuntimeError("DynamoDB throttled the write")
        return real(deps, account_id, verdict, **kw)

    monkeypatch.setattr(S, "record_verdict", flaky)
    # WHEN bob's record fails once
    stack.deliver()
    # THEN it was reported, retried, and both entered once, in stream order
    assert failed == [bob]
    assert log_of(d, a) == [("enter", alice), ("enter", bob)]


def _shards(stack: Stack) -> list[Any]:
    [source] = stack.poller.sources
    stack.poller._discover(source)
    return list(source.shards.values())
