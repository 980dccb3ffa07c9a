"""A seeded crash test of the stream handler: random profile writes, updates and removals
against two audiences, with the handler dying at random points (before a change's
transaction, or after it committed and before the record is reported done). Whatever the
crashes, the recorded members equal the audiences evaluated on the profiles as they are,
and each profile's changes alternate enter/exit (none lost, none repeated).

Replay a failure with SWITCHYARD_SEED=<the printed seed>."""

from __future__ import annotations

import random
from collections import defaultdict
from itertools import pairwise

import pytest

from chalicelib.domain.audiences import Audience, parse_filter
from chalicelib.domain.ids import new_id
from chalicelib.store.audience_members import AudienceMemberRepo
from chalicelib.store.dynamo import now_iso
from chalicelib.store.profiles import profile_key
from tests.membership.conftest import Stack, dying, upsert
from tests.seeds import seeded

FILTERS = {
    "pro": {"all": [{"field": "plan", "op": "equals", "value": "pro"}]},
    "adults": {"all": [{"field": "age", "op": "gte", "value": 18}]},
}


@seeded(1, 2)
def test_crashes_anywhere_leave_the_membership_right(stack: Stack, seed: int,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    d = stack.deps
    acct = "acct_x"
    audiences = {}
    for name, f in FILTERS.items():
        now = now_iso()
        a = Audience(id=new_id("aud"), account_id=acct, name=name, description="", filter=f, owner="usr",
                     created_at=now, updated_at=now)
        d.audiences.create(a)
        audiences[name] = a
    crashes = {"before": 0, "after": 0}
    # Dying before a change's transaction, or after it committed.
    monkeypatch.setattr(AudienceMemberRepo, "record",
                        dying(AudienceMemberRepo.record, rng, crashes, before=("before", 0.15), after=("after", 0.15)))
    emails = [f"u{i}@example.com" for i in range(8)]
    alive: set[str] = set()
    for _round in range(6):
        for _ in range(rng.randrange(3, 9)):
            email = rng.choice(emails)
            if email in alive and rng.random() < 0.2:
                pid = d.profiles.find(acct, "email", email).id
                key = profile_key(acct, pid)
                d.profiles_table.client.delete_item(TableName=d.profiles_table.name,
                                                    Key={k: {"S": v} for k, v in key.items()})
                alive.discard(email)
            else:
                upsert(d, acct, email, plan=rng.choice(["pro", "free"]), age=rng.choice([16, 30]))
                alive.add(email)
        stack.deliver()
    print(f"crashes: {crashes}")
    assert crashes["before"] and crashes["after"]  # the control: both kinds happened
    profiles = list(d.profiles.iterate(acct))
    for name, a in audiences.items():
        member = parse_filter(a.filter)
        expected = {p.id for p in profiles if member(p)}
        assert set(d.audience_members.members(acct, a.id)) == expected, name
        repo = d.audience_members
        log = repo.changes(acct, a.id, after=0, upto=repo.head(acct, a.id))
        assert [c.n for c in log] == list(range(1, len(log) + 1))  # gapless
        per: dict[str, list[str]] = defaultdict(list)
        for c in log:
            per[c.profile_id].append(c.change)
        for pid, seq in per.items():
            assert all(x != y for x, y in pairwise(seq)), (name, pid, seq)
            assert seq[0] == "enter", (name, pid, seq)
            assert (seq[-1] == "enter") == (pid in expected), (name, pid, seq)
