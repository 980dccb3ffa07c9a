"""Creating or editing an audience backfills its membership: paged through the backfill
queue, resumable, idempotent, and correct after a crash anywhere in a page."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from chalicelib.domain.access import Principal, Role
from chalicelib.domain.profiles import ProfileRecord
from chalicelib.services import audience_members as S
from chalicelib.services import audiences as A
from tests.membership.conftest import Stack
from tests.seeds import seeded

PRO = {"all": [{"field": "plan", "op": "equals", "value": "pro"}]}
FREE = {"all": [{"field": "plan", "op": "equals", "value": "free"}]}


class Crash(Exception):
    """The Lambda dying mid-page."""


def drain(stack: Stack, account_id: str, *, crash_after: int | None = None) -> tuple[int, int]:
    """Deliver the backfill queue's messages of `account_id` to its handler, as SQS and Lambda
    do (a message whose handler raised comes back). `crash_after`: the handler dies at that
    many recorded changes (once). Returns (pages handled, crashes)."""
    from app import app
    from chalicelib.store import aws, queues
    from devserver.events import LambdaContext, sqs_record

    sqs = aws.client("sqs")
    url = queues.queue_url("switchyard-backfill")
    handler = app.handler_map["backfill_audience"]
    recorded, crashes, pages = [0], [0], 0
    real = S.record_verdict

    def counting(*a: Any, **kw: Any) -> Any:
        if crash_after is not None and not crashes[0] and recorded[0] >= crash_after:
            crashes[0] += 1
            raise Crash()
        n = real(*a, **kw)
        recorded[0] += n is not None
        return n

    S.record_verdict = counting  # type: ignore[assignment]
    try:
        while True:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=0,
                                      VisibilityTimeout=0, MessageSystemAttributeNames=["All"]).get("Messages", [])
            if not got:
                return pages, crashes[0]
            [m] = got
            if json.loads(m["Body"]).get("account_id") != account_id:  # an earlier test's
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
                continue
            try:
                handler({"Records": [sqs_record(m, "arn:aws:sqs:us-east-1:123456789012:switchyard-backfill",
                                                "us-east-1")]},
                        LambdaContext("backfill_audience", 60, 512, "us-east-1", "123456789012"))
            except Crash:
                continue  # not deleted: SQS delivers it again
            pages += 1
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    finally:
        S.record_verdict = real  # type: ignore[assignment]


def changes(d: Any, account_id: str, audience_id: str) -> list[tuple[str, str]]:
    repo = d.audience_members
    return [(c.change, c.profile_id) for c in
            repo.changes(account_id, audience_id, after=0, upto=repo.head(account_id, audience_id))]


def seed_people(d: Any, account_id: str, n: int) -> dict[str, set[str]]:
    """n profiles written in one import step; their ids by plan."""
    d.profiles.upsert_batch(account_id, [ProfileRecord(identifiers={"email": f"p{i}@example.com"},
                                                       fields={"plan": "pro" if i % 3 else "free"}, ref="t")
                                         for i in range(n)], step_tag=f"seed-{account_id}")
    out: dict[str, set[str]] = {"pro": set(), "free": set()}
    for p in d.profiles.iterate(account_id):
        out[p.fields["plan"]].add(p.id)
    assert sum(len(v) for v in out.values()) == n
    return out


@pytest.fixture(params=[S.BACKFILL_PAGE, 1], ids=["page-200", "page-1"])
def page(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """The backfill's page size: as shipped, and one profile, so that every shard holding
    more than one takes several pages (its continuation key is then used and must be right)."""
    monkeypatch.setattr(S, "BACKFILL_PAGE", request.param)
    return int(request.param)


def test_a_new_audience_is_backfilled_and_an_edited_one_again(stack: Stack, page: int) -> None:
    d = stack.deps
    me = Principal("acct_b", "usr_b", Role.ADMIN, "t")
    drain(stack, "acct_b")
    # GIVEN profiles written before the audience existed (the stream is not delivered)
    people = seed_people(d, "acct_b", 24)
    # WHEN the audience is created
    aud = A.create(d, me, A.NewAudience("Pro", "", PRO))
    pages, _ = drain(stack, "acct_b")
    # THEN every shard was paged (pages of one profile: one page or more for each), and the
    # pro profiles entered, once each
    assert pages >= (16 if page > 1 else 24)
    assert set(d.audience_members.members("acct_b", aud.id)) == people["pro"]
    assert sorted(changes(d, "acct_b", aud.id)) == sorted(("enter", p) for p in people["pro"])
    # WHEN its filter is edited
    A.edit(d, me, aud.id, {"filter": FREE}, aud.version)
    drain(stack, "acct_b")
    # THEN the pro members exited and the free ones entered
    assert set(d.audience_members.members("acct_b", aud.id)) == people["free"]
    log = changes(d, "acct_b", aud.id)
    assert sorted(log[len(people["pro"]):]) == sorted([("exit", p) for p in people["pro"]]
                                                      + [("enter", p) for p in people["free"]])
    # AND backfilling the same version again changes nothing
    n = d.audience_members.head("acct_b", aud.id)
    saved = A.get(d, me, aud.id)
    S.start_backfill(d, saved)
    drain(stack, "acct_b")
    assert d.audience_members.head("acct_b", aud.id) == n


@seeded(5, 11)
def test_a_crash_mid_page_neither_loses_nor_repeats_a_change(stack: Stack, seed: int,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # Pages of 2: the crash can land in a shard's second or later page too.
    monkeypatch.setattr(S, "BACKFILL_PAGE", 2)
    rng = random.Random(seed)
    d = stack.deps
    me = Principal("acct_c", "usr_c", Role.ADMIN, "t")
    drain(stack, "acct_c")
    people = seed_people(d, "acct_c", 30)
    crash_after = rng.randrange(0, len(people["pro"]))
    print(f"crash after {crash_after} recorded changes")
    # WHEN the backfill's Lambda dies after a seeded number of recorded changes
    aud = A.create(d, me, A.NewAudience("Pro", "", PRO))
    _, crashes = drain(stack, "acct_c", crash_after=crash_after)
    # THEN it crashed (the control), resumed, and every pro member entered exactly once
    assert crashes == 1
    log = changes(d, "acct_c", aud.id)
    assert sorted(log) == sorted(("enter", p) for p in people["pro"])
    assert set(d.audience_members.members("acct_c", aud.id)) == people["pro"]
