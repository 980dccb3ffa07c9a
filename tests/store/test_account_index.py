"""The account index: every account is listed by Queries of its sharded sweep-index entry,
written in the account's own creation transaction; accounts made before the index get
theirs from the operator's one-time migration, infra/index_accounts.py (the only Scan of the
project, outside chalicelib)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.services import accounts as S
from chalicelib.store import keys as K
from chalicelib.store.accounts import ACCOUNT_SHARDS
from infra.index_accounts import index_accounts


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


def _scan_client() -> tuple[Any, list[str]]:
    # The operator script's own client, as `make index-accounts` makes it, with its requests listed.
    import boto3

    ddb = boto3.client("dynamodb", region_name="us-east-1")
    ops: list[str] = []
    ddb.meta.events.register("before-call.dynamodb", lambda model, **kw: ops.append(model.name))
    return ddb, ops


def test_the_migration_indexes_accounts_made_before_the_index_once(fresh: Any) -> None:
    # GIVEN two accounts made by the bootstrap and three made before the index existed
    new = [S.create_account(fresh, f"New {n}", f"admin{n}@new.example")[0].id for n in range(2)]
    old = ["acct_old1", "acct_old2", "acct_old3"]
    for account_id in old:
        _pre_index_account(fresh, account_id)
    assert sorted(fresh.accounts.all_account_ids()) == sorted(new)
    ddb, scans = _scan_client()

    # WHEN the operator's migration runs, reading two items a page
    lines: list[str] = []
    writes, stop = _ops(fresh)
    try:
        done = index_accounts(ddb, fresh, page_size=2, say=lines.append)
    finally:
        stop()

    # THEN it found and added the three old ones, one conditional UpdateItem each, and
    # wrote nothing else
    assert (done.unlisted, done.added) == (3, 3)
    assert writes == ["UpdateItem"] * 3
    assert sorted(fresh.accounts.all_account_ids()) == sorted(new + old)
    # AND it read the table by pages of the script's own Scan, a progress line each
    assert set(scans) == {"Scan"} and len(scans) == done.pages > 1
    assert len(lines) == done.pages and lines[-1].endswith("3 added"), lines
    # AND the account items keep what they held
    assert fresh.accounts.get_account("acct_old1").name == "Old"

    # WHEN it runs a second time
    writes, stop = _ops(fresh)
    try:
        again = index_accounts(ddb, fresh, page_size=2, say=lines.append)
    finally:
        stop()

    # THEN it read the table again (the positive control: it did run) and wrote nothing
    assert again.pages == done.pages and again.read == done.read
    assert (again.unlisted, again.added) == (0, 0)
    assert writes == []
    assert sorted(fresh.accounts.all_account_ids()) == sorted(new + old)


def test_a_dry_run_counts_the_unlisted_accounts_and_writes_nothing(fresh: Any) -> None:
    # GIVEN one account made by the bootstrap and two made before the index existed
    new = S.create_account(fresh, "New", "admin@new.example")[0].id
    for account_id in ("acct_dry1", "acct_dry2"):
        _pre_index_account(fresh, account_id)
    ddb, _ = _scan_client()

    # WHEN a dry run goes over the table
    lines: list[str] = []
    writes, stop = _ops(fresh)
    try:
        dry = index_accounts(ddb, fresh, dry_run=True, say=lines.append)
    finally:
        stop()

    # THEN it counts the two and writes nothing: the index still lists the new one only
    assert (dry.unlisted, dry.added) == (2, 0)
    assert lines[-1].endswith("2 would be added"), lines
    assert writes == []
    assert list(fresh.accounts.all_account_ids()) == [new]
    # AND the run it stood for adds exactly those two
    assert index_accounts(ddb, fresh, say=lines.append).added == 2
    assert sorted(fresh.accounts.all_account_ids()) == sorted([new, "acct_dry1", "acct_dry2"])


def test_adding_an_index_entry_changes_nothing_when_there_is_one_or_no_account(fresh: Any) -> None:
    # GIVEN an account with its entry, and one made before the index
    listed = S.create_account(fresh, "Listed", "admin@listed.example")[0].id
    _pre_index_account(fresh, "acct_unlisted")

    # WHEN the entry is added to each, and to an account that does not exist
    added = {a: fresh.accounts.add_to_index(a) for a in (listed, "acct_unlisted", "acct_missing")}

    # THEN only the unlisted one got it (the positive control), and no account item was made
    assert added == {listed: False, "acct_unlisted": True, "acct_missing": False}
    assert fresh.accounts.get_account("acct_missing") is None
    assert sorted(fresh.accounts.all_account_ids()) == sorted([listed, "acct_unlisted"])


def test_make_index_accounts_runs_on_the_stage(aws_endpoint: str, capsys: Any, monkeypatch: Any) -> None:
    from chalicelib.bootstrap import Deps
    from infra.index_accounts import main
    from tests.conftest import STAGE

    monkeypatch.setenv("SWITCHYARD_STAGE", STAGE)  # the script sets it for the stage it is given
    d = Deps()
    # GIVEN an account of the stage made before the index existed
    old = f"acct_cli_{secrets.token_hex(4)}"
    _pre_index_account(d, old)

    # WHEN the operator runs a dry run, then the migration, then the migration again
    assert main(["--stage", STAGE, "--dry-run"]) == 0
    dry = capsys.readouterr().out
    listed_after_dry = old in set(d.accounts.all_account_ids())
    assert main(["--stage", STAGE]) == 0
    first = capsys.readouterr().out
    assert main(["--stage", STAGE]) == 0
    second = capsys.readouterr().out

    # THEN the dry run named it and left it unlisted, the first run listed it, the second added none
    assert "dry run" in dry and "would be added to the account index" in dry, dry
    assert not listed_after_dry
    assert old in set(d.accounts.all_account_ids())
    assert "page 1:" in first and "account(s) have their API key" in first, first
    assert "\n0 account(s) added to the account index" in second, second


def test_a_refused_account_creation_leaves_no_index_entry(fresh: Any) -> None:
    # GIVEN an account
    first = S.create_account(fresh, "First", "admin@first.example", account_id="acct_taken")[0]

    # WHEN another bootstrap asks for the same id, it is refused
    with pytest.raises(Exception, match="already taken"):
        S.create_account(fresh, "Second", "admin@second.example", account_id="acct_taken")

    # THEN the index still names the account once, with its first name
    assert list(fresh.accounts.all_account_ids()) == [first.id]
    assert fresh.accounts.get_account(first.id).name == "First"
