"""The account index: every account is listed by Queries of its sharded sweep-index entry,
written in the account's own creation transaction; accounts made before the index get
theirs from the operator's one-time migration (the only Scan in chalicelib)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.services import accounts as S
from chalicelib.store import keys as K
from chalicelib.store.accounts import ACCOUNT_SHARDS


@pytest.fixture()
def fresh(aws_endpoint: str) -> Iterator[Any]:
    from tests.tables import fresh_deps

    yield from fresh_deps()


def _ops(d: Any) -> tuple[list[str], Any]:
    ops: list[str] = []
    events = d.table.client.meta.events
    events.register("before-call.dynamodb", lambda model, **kw: ops.append(model.name), unique_id="account-index-ops")
    return ops, lambda: events.unregister("before-call.dynamodb", unique_id="account-index-ops")


def _pre_index_account(d: Any, account_id: str) -> None:
    # An account item as the code wrote it before the index existed: no GSI2 keys.
    d.table.put({"PK": K.account_pk(account_id), "SK": K.ACCOUNT_SK, "type": "account", "id": account_id,
                 "name": "Old", "created_at": "2026-01-01T00:00:00Z"})


def test_accounts_are_listed_by_queries_of_the_index_never_a_scan(fresh: Any) -> None:
    # GIVEN five accounts made by the bootstrap, and one made before the index existed
    made = {S.create_account(fresh, f"Acme {n}", f"admin{n}@acme.example")[0].id for n in range(5)}
    _pre_index_account(fresh, "acct_old")

    # WHEN the operator's key backfill lists every account
    ops, stop = _ops(fresh)
    try:
        listed = list(fresh.accounts.all_account_ids())
        checked = S.backfill_usage_keys(fresh)
    finally:
        stop()

    # THEN the five are listed once each (the old one is not: it has no entry yet)
    assert sorted(listed) == sorted(made)
    assert checked == 5
    # AND only Queries of the index were made: one per shard and listing, never a Scan
    assert ops.count("Query") == 2 * ACCOUNT_SHARDS
    assert "Scan" not in ops and set(ops) <= {"Query"}


def test_the_migration_lists_accounts_made_before_the_index_once(fresh: Any) -> None:
    # GIVEN one account made by the bootstrap and two made before the index existed
    new = S.create_account(fresh, "New", "admin@new.example")[0].id
    for old in ("acct_old1", "acct_old2"):
        _pre_index_account(fresh, old)
    assert list(fresh.accounts.all_account_ids()) == [new]

    # WHEN the operator's migration runs
    ops, stop = _ops(fresh)
    try:
        added = S.index_existing_accounts(fresh)
    finally:
        stop()

    # THEN it added the two old ones (one Scan, one conditional update each), not the new one
    assert added == 2
    assert ops.count("Scan") == 1 and ops.count("UpdateItem") == 2
    assert sorted(fresh.accounts.all_account_ids()) == sorted([new, "acct_old1", "acct_old2"])
    # AND the account items keep what they held
    assert fresh.accounts.get_account("acct_old1").name == "Old"
    # AND running it again adds nothing
    assert S.index_existing_accounts(fresh) == 0


def test_a_refused_account_creation_leaves_no_index_entry(fresh: Any) -> None:
    # GIVEN an account
    first = S.create_account(fresh, "First", "admin@first.example", account_id="acct_taken")[0]

    # WHEN another bootstrap asks for the same id, it is refused
    with pytest.raises(Exception, match="already taken"):
        S.create_account(fresh, "Second", "admin@second.example", account_id="acct_taken")

    # THEN the index still names the account once, with its first name
    assert list(fresh.accounts.all_account_ids()) == [first.id]
    assert fresh.accounts.get_account(first.id).name == "First"
