"""The profile store on moto: outcomes, identifier linking, duplicates, exactly-once replays,
the write lease, listing without Scan, and the request budget per 1,000 profiles.

Most tests use a table of their own (same keys as the main table): moto copies a whole
table for every TransactWriteItems item, so thousands of profiles in the shared table
would slow every other test's transactions. One test goes through `deps.profiles`.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from chalicelib.domain.errors import BadRequest
from chalicelib.domain.profiles import Mapping, ProfileRecord, map_record
from chalicelib.store.dynamo import Table
from chalicelib.store.profiles import SHARDS, ProfileRepo, ProfilesBusy, StoreStats, writer_key

MAPPING = Mapping(identifier_fields=("email", "user_id"), merge_rules={"tags": "append", "source": "first"})


class Crash(Exception):
    """Raised by an injected checkpoint: the process 'dies' there."""


@pytest.fixture(scope="module")
def table(aws_endpoint: str) -> Iterator[Table]:
    from chalicelib.store import aws

    name = f"switchyard-test-profiles-{uuid.uuid4().hex[:8]}"
    ddb = aws.client("dynamodb")
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"},
                              {"AttributeName": "SK", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    yield Table(name)
    ddb.delete_table(TableName=name)


def account() -> str:
    return f"acct_t{uuid.uuid4().hex[:16]}"


def rec(ref: str = "r", mapping: Mapping = MAPPING, **row: Any) -> ProfileRecord:
    out = map_record(row, mapping, ref)
    assert isinstance(out, ProfileRecord), out
    return out


def snapshot(repo: ProfileRepo, acct: str) -> list[tuple[str, str]]:
    """Profiles as (identifiers, fields), independent of ids; and every identifier a profile
    lists must find that very profile (no orphan, no dangling link)."""
    profiles = list(repo.iterate(acct, page_size=7))
    listed = {(kind, v): p.id for p in profiles for kind, values in p.identifiers.items() for v in values}
    assert repo.lookup(acct, list(listed)) == listed
    return sorted((json.dumps(p.identifiers, sort_keys=True), json.dumps(p.fields, sort_keys=True))
                  for p in profiles)


# -- outcomes -----------------------------------------------------------------------------


def test_new_then_changed_then_unchanged(table: Table) -> None:
    # GIVEN an empty account
    repo, acct = ProfileRepo(table), account()

    # WHEN two new profiles are imported, then one changes and one comes again as it was
    first = repo.upsert_batch(acct, [rec(email="ada@x.io", name="Ada"), rec(email="bob@x.io", name="Bob")],
                              step_tag="run1#0")
    second = repo.upsert_batch(acct, [rec(email="ADA@x.io", name="Ada L."), rec(email="bob@x.io", name="Bob")],
                               step_tag="run2#0")

    # THEN the outcomes say so, and the stored profile carries the latest value
    assert first == ["added", "added"]
    assert second == ["updated", "unchanged"]
    ada = repo.find(acct, "email", "Ada@X.io")
    assert ada is not None and ada.fields == {"name": "Ada L."} and ada.version == 2
    assert ada.identifiers == {"email": ["ada@x.io"]}
    assert repo.get(acct, ada.id) == ada
    assert repo.count(acct) == 2


def test_merge_rules_first_and_append_are_applied(table: Table) -> None:
    # GIVEN a profile imported with a source and tags
    repo, acct = ProfileRepo(table), account()
    repo.upsert_batch(acct, [rec(email="a@x.io", source="ads", tags=["vip"], plan="free")],
                      step_tag="s1", rules=MAPPING.merge_rules)

    # WHEN another import brings other values
    out = repo.upsert_batch(acct, [rec(email="a@x.io", source="web", tags=["beta"], plan="pro")],
                            step_tag="s2", rules=MAPPING.merge_rules)

    # THEN source keeps the first value, tags collect, plan takes the latest
    p = repo.find(acct, "email", "a@x.io")
    assert out == ["updated"]
    assert p is not None and p.fields == {"source": "ads", "tags": ["beta", "vip"], "plan": "pro"}


# -- identifiers --------------------------------------------------------------------------


def test_identifiers_link_a_profile_known_by_either(deps: Any) -> None:
    # GIVEN the app's repository and a profile known only by its email
    repo, acct = deps.profiles, account()
    assert repo.upsert_batch(acct, [rec(email="ada@x.io", name="Ada")], step_tag="s1") == ["added"]

    # WHEN a record brings user_id and email, then one brings the user_id alone
    joined = repo.upsert_batch(acct, [rec(email="ada@x.io", user_id="u-1", plan="pro")], step_tag="s2")
    by_user = repo.upsert_batch(acct, [rec(user_id="u-1", city="Paris")], step_tag="s3")

    # THEN all three land on one profile, reachable by either identifier
    assert joined == ["updated"] and by_user == ["updated"]
    p = repo.find(acct, "user_id", "u-1")
    assert p is not None and p == repo.find(acct, "email", "ada@x.io")
    assert p.identifiers == {"email": ["ada@x.io"], "user_id": ["u-1"]}
    assert p.fields == {"name": "Ada", "plan": "pro", "city": "Paris"}
    assert repo.count(acct) == 1


def test_a_new_email_for_a_known_user_id_is_linked_too(table: Table) -> None:
    # GIVEN a profile known by user_id and email
    repo, acct = ProfileRepo(table), account()
    repo.upsert_batch(acct, [rec(email="old@x.io", user_id="u-1")], step_tag="s1")

    # WHEN the user comes with another email
    out = repo.upsert_batch(acct, [rec(email="new@x.io", user_id="u-1")], step_tag="s2")

    # THEN the new email joins the same profile; both emails find it
    p = repo.find(acct, "email", "new@x.io")
    assert out == ["updated"]
    assert p is not None and p.identifiers == {"email": ["new@x.io", "old@x.io"], "user_id": ["u-1"]}
    assert repo.find(acct, "email", "old@x.io") == p


@pytest.mark.parametrize(("order", "winner"), [(("email", "user_id"), "email"), (("user_id", "email"), "user_id")])
def test_conflicting_identifiers_keep_the_first_in_mapping_order_and_steal_nothing(
    table: Table, order: tuple[str, ...], winner: str
) -> None:
    # GIVEN one profile known by an email and another known by a user_id
    repo, acct = ProfileRepo(table), account()
    m = Mapping(identifier_fields=order)
    repo.upsert_batch(acct, [rec(mapping=m, email="a@x.io", name="by email"),
                             rec(mapping=m, user_id="u-9", name="by user")], step_tag="s1")

    # WHEN a record names both
    out = repo.upsert_batch(acct, [rec(mapping=m, email="a@x.io", user_id="u-9", plan="pro")], step_tag="s2")

    # THEN it updates the profile of the identifier that comes first; links stay where they were
    by_email, by_user = repo.find(acct, "email", "a@x.io"), repo.find(acct, "user_id", "u-9")
    assert by_email is not None and by_user is not None and by_email.id != by_user.id
    chosen, other = (by_email, by_user) if winner == "email" else (by_user, by_email)
    assert out == ["updated"]
    assert chosen.fields["plan"] == "pro" and "plan" not in other.fields
    assert by_email.identifiers == {"email": ["a@x.io"]} and by_user.identifiers == {"user_id": ["u-9"]}
    assert repo.count(acct) == 2


def test_duplicates_in_one_batch_merge_in_order(table: Table) -> None:
    # GIVEN an empty account
    repo, acct = ProfileRepo(table), account()

    # WHEN one batch holds the same person several times (once with a second identifier)
    out = repo.upsert_batch(acct, [
        rec("l1", email="ada@x.io", name="A1"),
        rec("l2", email="ada@x.io", name="A2"),
        rec("l3", email="ada@x.io", name="A2"),
        rec("l4", user_id="u-1", email="ada@x.io"),
        rec("l5", user_id="u-1", name="A3"),
        rec("l6", email="bob@x.io"),
    ], step_tag="s1")

    # THEN the first is added, later ones update or change nothing, all on one profile
    assert out == ["added", "updated", "unchanged", "updated", "updated", "added"]
    p = repo.find(acct, "user_id", "u-1")
    assert p is not None and p.fields == {"name": "A3"}
    assert p.identifiers == {"email": ["ada@x.io"], "user_id": ["u-1"]}
    assert repo.count(acct) == 2


# -- exactly once -------------------------------------------------------------------------

SETUP = [
    {"email": "keep@x.io", "name": "Keep"},
    {"email": "change@x.io", "name": "Old", "tags": ["a"]},
    {"user_id": "u-conflict", "name": "By user"},
    {"email": "conflict@x.io", "name": "By email"},
    {"user_id": "u-link", "name": "Link me"},
]
BATCH = [
    {"email": "keep@x.io", "name": "Keep"},  # unchanged
    {"email": "change@x.io", "name": "New", "tags": ["b"]},  # updated (latest + append)
    {"email": "new1@x.io", "name": "N1", "source": "web"},  # added
    {"email": "new1@x.io", "source": "ads", "tags": ["c"]},  # duplicate: updated (first keeps web)
    {"email": "new2@x.io", "user_id": "u-new2"},  # added with two identifiers
    {"user_id": "u-new2", "name": "N2"},  # joins it by user_id
    {"email": "linked@x.io", "user_id": "u-link"},  # links an email to an existing profile
    {"email": "conflict@x.io", "user_id": "u-conflict", "plan": "pro"},  # conflict: email wins
    {"email": "new3@x.io"},  # added
    {"email": "keep@x.io", "name": "Keep"},  # unchanged again
    {"user_id": "u-new4", "name": "N4"},  # added by user_id...
    {"email": "new4@x.io", "user_id": "u-new4"},  # ...then an email joins it
]
EXPECTED = ["unchanged", "updated", "added", "updated", "added", "updated", "updated", "updated", "added",
            "unchanged", "added", "updated"]


def _setup(repo: ProfileRepo, acct: str) -> None:
    records = [rec(f"setup#{i}", **row) for i, row in enumerate(SETUP)]
    assert repo.upsert_batch(acct, records, step_tag="setup#0", rules=MAPPING.merge_rules) == ["added"] * 5


def _batch() -> list[ProfileRecord]:
    return [rec(f"batch#{i}", **row) for i, row in enumerate(BATCH)]


@dataclass
class Reference:
    account: str
    outcomes: list[str]
    state: list[tuple[str, str]]
    writes: int  # write requests at one item per request


@pytest.fixture(scope="module")
def reference(table: Table) -> Reference:
    """The outcomes and final state of a crash-free run of BATCH over SETUP."""
    acct = account()
    _setup(ProfileRepo(table), acct)
    writes: list[int] = []
    counting = ProfileRepo(table, write_batch=1, checkpoint=writes.append)
    outcomes = counting.upsert_batch(acct, _batch(), step_tag="run#1", rules=MAPPING.merge_rules)
    assert outcomes == EXPECTED
    return Reference(acct, outcomes, snapshot(counting, acct), writes[-1])


@pytest.mark.parametrize("parallel", [1, 4])
def test_records_planned_while_later_reads_are_in_flight_resolve_as_after_every_read(
    table: Table, reference: Reference, parallel: int
) -> None:
    # GIVEN the batch over SETUP, read one profile per request so that most records are
    # planned while later reads are still out: known profiles first, then a new one, then
    # known ones again, links found through identifier items, and a record whose second
    # identifier only comes in a later read
    acct = account()
    _setup(ProfileRepo(table), acct)
    repo = ProfileRepo(table, read_batch=1, parallel=parallel)

    # WHEN it is upserted
    outcomes = repo.upsert_batch(acct, _batch(), step_tag="run#1", rules=MAPPING.merge_rules)

    # THEN outcomes and profiles are those of the reference run (100 ids a read)
    assert outcomes == EXPECTED
    assert snapshot(repo, acct) == reference.state


def test_one_batch_ends_as_its_records_upserted_one_at_a_time(table: Table) -> None:
    # GIVEN random batches over a few emails and user ids, half of them stored already
    # (seed printed; PROFILE_BATCH_SEED replays it), read 3 ids a request
    seed = int(os.environ.get("PROFILE_BATCH_SEED") or random.randrange(1 << 30))
    print(f"PROFILE_BATCH_SEED={seed}")
    rnd = random.Random(seed)

    def row() -> dict[str, Any]:
        ids = rnd.choice([("email",), ("user_id",), ("email", "user_id"), ("user_id", "email")])
        out: dict[str, Any] = {"email": f"p{rnd.randrange(8)}@x.io"} if "email" in ids else {}
        if "user_id" in ids:
            out["user_id"] = f"u{rnd.randrange(6)}"
        if ids[0] == "user_id":
            out = {"user_id": out.pop("user_id"), **out}
        out[rnd.choice(["name", "plan", "source"])] = rnd.choice(["a", "b"])
        if rnd.random() < 0.3:
            out["tags"] = [rnd.choice(["t1", "t2", "t3"])]
        return out

    for attempt in range(3):
        seed_rows = [row() for _ in range(6)]
        batch = [rec(f"b{i}", **row()) for i in range(24)]
        one, each = account(), account()
        for acct in (one, each):
            ProfileRepo(table).upsert_batch(acct, [rec(f"s{i}", **r) for i, r in enumerate(seed_rows)],
                                            step_tag="seed#0", rules=MAPPING.merge_rules)

        # WHEN one account takes the batch in one upsert, the other record by record
        batched = ProfileRepo(table, read_batch=3, parallel=4)
        together = batched.upsert_batch(one, batch, step_tag="run#0", rules=MAPPING.merge_rules)
        single = ProfileRepo(table)
        apart = [single.upsert_batch(each, [r], step_tag=f"run#{i}", rules=MAPPING.merge_rules)[0]
                 for i, r in enumerate(batch)]

        # THEN outcomes and profiles are the same (a record planned before a later read
        # landed would resolve as new, or miss a link)
        assert together == apart, (seed, attempt)
        assert snapshot(batched, one) == snapshot(single, each), (seed, attempt)


@pytest.mark.parametrize("parallel", [1, 4])
def test_replaying_a_step_after_a_crash_at_any_point_changes_nothing(
    table: Table, reference: Reference, parallel: int
) -> None:
    # GIVEN a crash-free run's outcomes and state, written one item per request so that
    # every prefix of the writes is a possible crash point
    expected, expected_state, total = reference.outcomes, reference.state, reference.writes
    assert total >= 10  # identifiers and profiles

    for crash_at in range(total + 1):  # 0 = before any write ... total = after the last one
        acct = account()
        _setup(ProfileRepo(table), acct)

        def die(done: int, crash_at: int = crash_at) -> None:
            if done == crash_at:
                raise Crash(crash_at)

        # WHEN the step crashes at that point, then is delivered again with the same tag
        with pytest.raises(Crash):
            ProfileRepo(table, write_batch=1, checkpoint=die, parallel=parallel).upsert_batch(
                acct, _batch(), step_tag="run#1", rules=MAPPING.merge_rules)
        replay = ProfileRepo(table, parallel=parallel)
        got = replay.upsert_batch(acct, _batch(), step_tag="run#1", rules=MAPPING.merge_rules)

        # THEN outcomes and profiles are those of the crash-free run
        assert got == expected, f"crash after {crash_at} writes"
        assert snapshot(replay, acct) == expected_state, f"crash after {crash_at} writes"

    # AND replaying a step that had finished reports the same outcomes and writes nothing
    again = ProfileRepo(table)
    assert again.upsert_batch(reference.account, _batch(), step_tag="run#1", rules=MAPPING.merge_rules) == expected
    assert "BatchWriteItem" not in again.last_stats.requests
    assert snapshot(again, reference.account) == expected_state


class _PartialWrites:
    """A DynamoDB client that, on its n-th BatchWriteItem, processes only the items `keep`
    selects and hands back the others as UnprocessedItems (as DynamoDB does when it
    throttles), then dies when they are retried."""

    def __init__(self, real: Any, nth: int, keep: Any) -> None:
        self.real, self.nth, self.keep, self.calls = real, nth, keep, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def batch_write_item(self, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        if self.calls == self.nth + 1:
            raise Crash("died retrying unprocessed items")
        if self.calls != self.nth:
            return dict(self.real.batch_write_item(**kwargs))
        [(name, requests)] = kwargs["RequestItems"].items()
        done = [r for i, r in enumerate(requests) if self.keep(i, len(requests))]
        rest = [r for i, r in enumerate(requests) if not self.keep(i, len(requests))]
        if done:
            self.real.batch_write_item(RequestItems={name: done})
        return {"UnprocessedItems": {name: rest} if rest else {}}


class _PartialTable(Table):
    def __init__(self, name: str, client: _PartialWrites) -> None:
        super().__init__(name)
        self._client = client

    @property
    def client(self) -> Any:
        return self._client


# nth: 1 = the request with the new identifiers, 2 = the one with the profiles
@pytest.mark.parametrize(("nth", "keep"), [(1, "all_but_first"), (1, "odd"), (1, "last_only"), (2, "odd")])
def test_replaying_after_dynamodb_wrote_any_part_of_a_batch_changes_nothing(
    table: Table, reference: Reference, nth: int, keep: str
) -> None:
    # GIVEN the outcomes and state of a crash-free run
    expected, expected_state = reference.outcomes, reference.state
    select = {"all_but_first": lambda i, n: i > 0, "odd": lambda i, n: i % 2 == 1,
              "last_only": lambda i, n: i == n - 1}[keep]

    # WHEN DynamoDB processes only part of one BatchWriteItem and the process dies retrying
    acct = account()
    _setup(ProfileRepo(table), acct)
    flaky = _PartialTable(table.name, _PartialWrites(table.client, nth, select))
    with pytest.raises(Crash):
        ProfileRepo(flaky, sleep=lambda s: None).upsert_batch(
            acct, _batch(), step_tag="run#1", rules=MAPPING.merge_rules)
    replay = ProfileRepo(table)
    got = replay.upsert_batch(acct, _batch(), step_tag="run#1", rules=MAPPING.merge_rules)

    # THEN the replay ends where the crash-free run did
    assert got == expected
    assert snapshot(replay, acct) == expected_state


def test_a_replay_after_another_step_touched_the_profile_does_not_merge_twice(table: Table) -> None:
    # GIVEN step A wrote a profile and crashed before its commit, then step B changed it
    repo, acct = ProfileRepo(table), account()
    assert repo.upsert_batch(acct, [rec(email="a@x.io", plan="free")], step_tag="A#0") == ["added"]
    assert repo.upsert_batch(acct, [rec(email="a@x.io", plan="pro")], step_tag="B#0") == ["updated"]

    # WHEN step A is delivered again
    out = repo.upsert_batch(acct, [rec(email="a@x.io", plan="free")], step_tag="A#0")

    # THEN it reports its own outcome and does not undo B's newer value
    p = repo.find(acct, "email", "a@x.io")
    assert out == ["added"]
    assert p is not None and p.fields == {"plan": "pro"}


# -- the write lease ----------------------------------------------------------------------


def test_another_step_waits_for_the_lease_and_the_same_step_takes_it_over(table: Table) -> None:
    # GIVEN step "A#0" holds the account's profile write lease
    acct = account()
    holder = ProfileRepo(table)
    slept: list[float] = []
    other = ProfileRepo(table, lease_wait_seconds=0.5, sleep=slept.append)
    with holder.lease(acct, "A#0"):
        # WHEN another step tries to write
        with pytest.raises(ProfilesBusy):
            other.upsert_batch(acct, [rec(email="b@x.io")], step_tag="B#0")
        # AND the same step is redelivered (its first delivery died holding the lease)
        replay = ProfileRepo(table).upsert_batch(acct, [rec(email="a@x.io")], step_tag="A#0")

    # THEN the other step backed off and wrote nothing; the replay went through
    assert slept and sum(slept) >= 0.5
    assert replay == ["added"]
    assert repo_emails(ProfileRepo(table), acct) == {"a@x.io"}
    # AND once released, the other step writes
    assert ProfileRepo(table).upsert_batch(acct, [rec(email="b@x.io")], step_tag="B#0") == ["added"]


def _writer(table: Table, acct: str) -> dict[str, Any] | None:
    item: dict[str, Any] | None = table.client.get_item(
        TableName=table.name, Key={k: {"S": v} for k, v in writer_key(acct).items()}, ConsistentRead=True,
    ).get("Item")
    return item


class SourceBroke(RuntimeError):
    pass


def test_a_lease_taken_ahead_is_held_while_the_source_is_read_and_freed_on_every_exit(table: Table) -> None:
    acct = account()
    repo = ProfileRepo(table)
    slept: list[float] = []
    other = ProfileRepo(table, lease_wait_seconds=0.3, sleep=slept.append)

    # GIVEN a step that takes the lease ahead, then its source raises mid-read
    ticket = repo.lease_ahead(acct, "A#0")
    with pytest.raises(SourceBroke):
        try:
            ticket.hold(acct, "A#0")  # (the read starts once it was sent; here: wait for it)
            # THEN while the source is being read the lease is held: another step waits
            assert _writer(table, acct) is not None and _writer(table, acct)["owner"]["S"] == "A#0"
            with pytest.raises(ProfilesBusy):
                other.upsert_batch(acct, [rec(email="b@x.io")], step_tag="B#0")
            assert slept
            raise SourceBroke("the file went away")
        finally:
            ticket.release()
    # AND the failed step left no writer item behind
    assert _writer(table, acct) is None

    # control: a step that writes through its ticket also frees it, and wrote under it
    ticket = repo.lease_ahead(acct, "A#1")
    try:
        assert repo.upsert_batch(acct, [rec(email="a@x.io")], step_tag="A#1", ticket=ticket) == ["added"]
        assert _writer(table, acct) is not None  # still held until the step lets go
    finally:
        ticket.release()
    assert _writer(table, acct) is None
    # AND a page with no records writes nothing, and its ticket still frees the lease
    ticket = repo.lease_ahead(acct, "A#2")
    assert repo.upsert_batch(acct, [], step_tag="A#2", ticket=ticket) == []
    ticket.release()
    assert _writer(table, acct) is None
    assert other.upsert_batch(acct, [rec(email="b@x.io")], step_tag="B#0") == ["added"]
    # AND a ticket is for its own step only
    ticket = repo.lease_ahead(acct, "A#3")
    with pytest.raises(ValueError, match="another account or step"):
        repo.upsert_batch(acct, [rec(email="c@x.io")], step_tag="A#4", ticket=ticket)
    ticket.release()
    assert _writer(table, acct) is None


def repo_emails(repo: ProfileRepo, acct: str) -> set[str]:
    return {e for p in repo.iterate(acct) for e in p.identifiers.get("email", [])}


def test_an_expired_lease_is_taken_and_its_old_holder_stops_writing(table: Table) -> None:
    # GIVEN a slow step whose clock runs past its 60 s lease in the middle of a batch
    acct = account()
    now = {"t": 1_000.0}
    fast = ProfileRepo(table, clock=lambda: now["t"] + 100)  # another step, 100 s later

    def stall(done: int) -> None:
        if done == 1:
            now["t"] += 70  # the lease (60 s) expired while this step was stalled...
            assert fast.upsert_batch(acct, [rec(email="fast@x.io")], step_tag="fast#0") == ["added"]

    slow = ProfileRepo(table, clock=lambda: now["t"], write_batch=1, checkpoint=stall)

    # WHEN the slow step goes on writing / THEN it notices it lost the lease and stops
    with pytest.raises(ProfilesBusy):
        slow.upsert_batch(acct, [rec(email=f"s{i}@x.io") for i in range(3)], step_tag="slow#0")
    assert slow.last_stats.requests["BatchWriteItem"] == 1  # nothing written after the take-over


# -- reading ------------------------------------------------------------------------------


def test_listing_pages_through_every_shard_once_with_a_cursor_bound_to_the_account(table: Table) -> None:
    # GIVEN 24 profiles (spread over the 16 shards) and another account with one
    repo, acct, other = ProfileRepo(table), account(), account()
    repo.upsert_batch(acct, [rec(email=f"p{i}@x.io") for i in range(24)], step_tag="s1")
    repo.upsert_batch(other, [rec(email="z@x.io")], step_tag="s1")

    # WHEN the account's profiles are listed 7 at a time
    seen, cursor, pages = [], None, 0
    while True:
        page = repo.page(acct, limit=7, cursor=cursor)
        assert repo.last_stats.total_requests <= SHARDS + 1
        assert len(page.items) <= 7
        seen += [p.id for p in page.items]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break

    # THEN every profile comes exactly once, never another account's
    assert len(seen) == 24 and len(set(seen)) == 24
    assert set(seen) == {p.id for p in repo.iterate(acct)}
    assert pages >= 4
    assert repo.count(acct) == 24
    # AND a cursor of this account is refused in the other account's listing
    cursor = repo.page(acct, limit=3, cursor=None).next_cursor
    assert cursor is not None
    with pytest.raises(BadRequest) as err:
        repo.page(other, limit=3, cursor=cursor)
    assert err.value.code == "request.invalid_cursor" and err.value.fields == {"cursor": "invalid"}


def test_get_and_find_miss_cleanly(table: Table) -> None:
    # GIVEN an account with one profile
    repo, acct = ProfileRepo(table), account()
    repo.upsert_batch(acct, [rec(email="a@x.io")], step_tag="s1")
    pid = next(repo.iterate(acct)).id

    # WHEN looked up with wrong ids, another account, or bad values / THEN nothing is found
    assert repo.get(acct, pid) is not None
    assert repo.get(account(), pid) is None
    assert repo.get(acct, "prof_not-an-id") is None
    assert repo.find(acct, "email", "b@x.io") is None
    assert repo.find(acct, "email", "not an email") is None
    assert repo.find(account(), "email", "a@x.io") is None


def test_a_profile_that_would_pass_350kb_is_not_written(table: Table) -> None:
    # GIVEN a profile of about 300 KB, built by five imports of 60 KB each
    repo, acct = ProfileRepo(table), account()
    for n in range(5):
        fields = {f"f{n}_{i}": "x" * 2000 for i in range(30)}
        assert repo.upsert_batch(acct, [rec(email="big@x.io", **fields)], step_tag=f"s{n}") == [
            "added" if n == 0 else "updated"]
    before = repo.find(acct, "email", "big@x.io")

    # WHEN a sixth import would add 60 KB more
    out = repo.upsert_batch(acct, [rec(email="big@x.io", **{f"g_{i}": "y" * 2000 for i in range(30)})],
                            step_tag="s5")

    # THEN the record is reported too large and the profile stays as it was
    assert out == ["too_large"]
    assert repo.find(acct, "email", "big@x.io") == before


# -- budget -------------------------------------------------------------------------------


class WireCount:
    """Counts the HTTP attempts of the app's DynamoDB client (botocore before-send)."""

    def __init__(self) -> None:
        from chalicelib.store import aws

        self.events = aws.client("dynamodb").meta.events
        self.ops: Counter[str] = Counter()

    def __call__(self, event_name: str = "", **_: Any) -> None:
        self.ops[event_name.rsplit(".", 1)[-1]] += 1

    def __enter__(self) -> WireCount:
        self.events.register("before-send.dynamodb", self, unique_id="profile-budget")
        return self

    def __exit__(self, *exc: object) -> None:
        self.events.unregister("before-send.dynamodb", unique_id="profile-budget")


def _rows(n: int, version: int, *, user_ids: bool = False) -> list[ProfileRecord]:
    return [rec(f"f.csv#{i}", email=f"person{i}@example.com",
                **({"user_id": f"u{i}"} if user_ids else {}),
                first_name=f"First{i}", last_name="Last", country="FR", plan=("pro", "free")[i % 2],
                ltv=round(i * 1.37, 2), visits=version, tags=[f"t{version}"])
            for i in range(n)]


def test_1000_profiles_cost_at_most_100_requests_first_and_again_with_changes(table: Table) -> None:
    # GIVEN an empty account
    repo, acct = ProfileRepo(table), account()

    # WHEN 1,000 profiles are imported, then imported again with changes
    with WireCount() as first_wire:
        first = repo.upsert_batch(acct, _rows(1000, 1), step_tag="r1#0", rules=MAPPING.merge_rules)
    first_stats: StoreStats = repo.last_stats
    with WireCount() as again_wire:
        again = repo.upsert_batch(acct, _rows(1000, 2), step_tag="r2#0", rules=MAPPING.merge_rules)
    again_stats: StoreStats = repo.last_stats

    # THEN both stay within 100 AWS requests, counted on the wire and by the repository
    assert first == ["added"] * 1000 and again == ["updated"] * 1000
    assert sum(first_wire.ops.values()) <= 100, first_wire.ops
    assert sum(again_wire.ops.values()) <= 100, again_wire.ops
    assert first_stats.requests == dict(first_wire.ops)
    assert again_stats.requests == dict(again_wire.ops)
    assert "Scan" not in first_wire.ops and "Scan" not in again_wire.ops
    # AND capacity units are reported for the run's cost figures
    assert first_stats.write_units > 0 and first_stats.read_units > 0
    p = repo.find(acct, "email", "person7@example.com")
    assert p is not None and p.fields["visits"] == 2 and p.fields["tags"] == ["t1", "t2"]
