"""Proof suite: collection is exactly once from acceptance to the profile write.

Requests carrying identify and track messages go through the collector, which is killed at
a random AWS call of a request (before it left or after it came back) or after it finished
but before the client got the answer; the client (as the SDKs do) sends the same request
again until it is answered. The collect handler is killed the same way while it applies
hand-offs, and SQS redelivers them. Then, against a truth computed from the messages sent:
every message reached its profile once (event counts exact, the latest identify's trait
kept), the window runs and activity count each message once as added, and nothing is lost.

Seeded (tests/seeds.py): SWITCHYARD_SEED=<seed> replays a run's kills and messages.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.domain.profiles import ProfileRecord
from chalicelib.services.collect import accept, apply_handoff
from chalicelib.store import aws
from chalicelib.store.collect import COLLECT_QUEUE
from chalicelib.store.dynamo import TransactionFailed
from chalicelib.store.queues import queue_url
from tests.collect.helpers import basic, receive, write_key_job
from tests.engine.fresh import fresh_deps
from tests.proof.crash import Injector, Killed
from tests.proof.record import record, size
from tests.seeds import replay_hint, seeded

REQUESTS = size(12, 120)
USERS = 4
KILL_CAP = 3  # kills per request or hand-off, then it goes through
FORCED = 2  # deliveries of each side killed for sure, at the ack


@pytest.fixture()
def deps(aws_endpoint: str) -> Iterator[Any]:
    yield from fresh_deps()


def _requests(rng: random.Random) -> list[list[dict[str, Any]]]:
    out: list[list[dict[str, Any]]] = []
    n = 0
    for r in range(REQUESTS):
        batch = []
        for _ in range(rng.randint(1, 5)):
            n += 1
            user = f"u{rng.randrange(USERS)}"
            if rng.random() < 0.4:
                batch.append({"type": "identify", "messageId": f"m{n}", "userId": user, "traits": {"n": n}})
            else:
                batch.append({"type": "track", "messageId": f"m{n}", "userId": user,
                              "event": rng.choice(("Viewed", "Bought"))})
        if r and rng.random() < 0.2:
            batch.append(rng.choice(out[-1]))  # a message sent again (an app's own retry)
        out.append(batch)
    return out


@seeded(3, 77)
def test_a_crash_anywhere_neither_loses_nor_double_counts_a_message(
        seed: int, deps: Any, new_tenant: Any, api_for: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    hint = replay_hint(seed)
    tenant = new_tenant("Crash")
    api = api_for(tenant.admin_token)
    account = tenant.account_id
    rng = random.Random(seed)
    injector = Injector(random.Random(rng.random()))
    receive()  # hand-offs of earlier tests
    key, job = write_key_job(api)
    requests = _requests(rng)
    headers = {"authorization": basic(key)}
    answered = 0
    with injector.installed(monkeypatch):
        sqs = aws.client("sqs")
        for r, batch in enumerate(requests):
            raw = json.dumps({"batch": batch}).encode()
            for attempt in range(KILL_CAP + 1):
                drawn = attempt < KILL_CAP and rng.random() < 0.5
                # The first attempts of the first FORCED requests die at the ack, their work
                # done and the answer lost: a drawn slot past a delivery's last call spares it,
                # and the positive control below must not depend on luck.
                forced = r < FORCED and attempt == 0
                with injector.delivery("accept", kill=drawn and not forced, at_ack=forced):
                    try:
                        accept(deps, headers, raw, None)
                        injector.ack()  # the answer reached the client
                        answered += 1
                        break
                    except Killed:
                        continue  # the client sends the same request again
        url = queue_url(COLLECT_QUEUE)
        kills: Counter[str] = Counter()
        applied = 0
        forced_handoffs: set[str] = set()
        for _ in range(20 * REQUESTS):
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=60,
                                      AttributeNames=["All"]).get("Messages", [])
            if not got:
                break
            [msg] = got
            entry = json.loads(msg["Body"])
            kill = kills[entry["handoff"]] < KILL_CAP and rng.random() < 0.6
            # The first deliveries of FORCED distinct hand-offs die at the ack, as on the
            # accepting side.
            forced = len(forced_handoffs) < FORCED and entry["handoff"] not in forced_handoffs
            if forced:
                forced_handoffs.add(entry["handoff"])
            died = False
            with injector.delivery("apply", kill=kill and not forced, at_ack=forced):
                try:
                    apply_handoff(deps, entry)
                    injector.ack()
                except Killed:
                    died = True
            if died:
                # SQS hands it out again once its visibility timeout is over (now, here).
                kills[entry["handoff"]] += 1
                sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"], VisibilityTimeout=0)
                continue
            sqs.delete_message(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"])
            applied += 1
        assert receive() == [], f"hand-offs left on the queue ({hint})"
    # The truth: each distinct message once, in the order first sent.
    unique: dict[str, dict[str, Any]] = {}
    for batch in requests:
        for m in batch:
            unique.setdefault(m["messageId"], m)
    events: Counter[tuple[str, str]] = Counter()
    latest: dict[str, int] = {}
    for m in unique.values():
        if m["type"] == "track":
            events[(m["userId"], m["event"])] += 1
        else:
            latest[m["userId"]] = m["traits"]["n"]
    for u in range(USERS):
        user = f"u{u}"
        prof = deps.profiles.find(account, "user_id", user)
        if not any(k[0] == user for k in events) and user not in latest:
            assert prof is None, hint
            continue
        assert prof is not None, f"{user} lost ({hint})"
        for event in ("Viewed", "Bought"):
            got = prof.fields.get(f"event_{event.lower()}_count", 0)
            assert got == events[(user, event)], f"{user} {event}: {got} != {events[(user, event)]} ({hint})"
        assert prof.fields.get("n") == latest.get(user), f"{user}: latest identify lost ({hint})"
    runs = api.get(f"/jobs/{job['id']}/runs").json["data"]
    added = sum(r["added"] for r in runs)
    assert added == len(unique), f"{added} added for {len(unique)} distinct messages ({hint})"
    assert sum(r["omitted"] for r in runs) == 0, hint
    # The job's totals are committed with the windows: every message handed off counted once
    # (each applied once, or found a duplicate by the engine), whatever was replayed.
    totals = api.get(f"/jobs/{job['id']}").json["data"]["collection"]
    handed_off = sum(r["progress"]["processed"] for r in runs)
    assert totals["accepted"] == handed_off >= len(unique), (totals, handed_off, hint)
    assert totals["rejected"] == 0 and totals["last_received_at"], (totals, hint)
    series = api.get(f"/jobs/{job['id']}/activity?granularity=day").json["data"]["series"]
    assert sum(b["added"] for b in series) == len(unique), hint
    # Positive control: kills did happen on both sides, at least the forced ones at the ack
    # (the drawn ones, before or after a call, are in the record).
    sides = Counter(p.kind for p in injector.points)
    at_ack = Counter(p.kind for p in injector.points if p.phase == "ack")
    assert at_ack["accept"] >= FORCED and at_ack["apply"] >= FORCED, (injector.points, hint)
    record("collect_crash", "Collection: crash from acceptance to profile write", {
        "seed": seed, "requests": len(requests), "distinct messages": len(unique), "answered": answered,
        "hand-offs applied": applied, "kills (accept)": sides["accept"], "kills (apply)": sides["apply"],
        "kill points": len({(p.kind, p.call, p.phase) for p in injector.points}),
    }, order=61)



class _Crash(Exception):
    pass


@pytest.mark.parametrize("crash", ["after_profiles", "mid_profiles"])
@pytest.mark.parametrize("others", [3, 4, 6])
def test_a_hand_off_replayed_after_other_jobs_wrote_its_profiles_counts_each_message_once(
        crash: str, others: int, deps: Any, new_tenant: Any, api_for: Any) -> None:
    """A hand-off dies after writing some or all of its profiles; `others` steps of other
    jobs (import steps) then write the same profile; SQS redelivers the hand-off. With 3
    the profile still remembers the hand-off's step tag (the positive control of the old
    ring); with 4 or more only the per-job sequence mark can tell it was applied."""
    tenant = new_tenant("Replay")
    api = api_for(tenant.admin_token)
    account = tenant.account_id
    receive()  # hand-offs of earlier tests
    key, job = write_key_job(api)
    batch = [{"type": "track", "messageId": "t1", "userId": "u1", "event": "Bought"},
             {"type": "track", "messageId": "t2", "userId": "u2", "event": "Bought"},
             {"type": "identify", "messageId": "i1", "userId": "u1", "traits": {"plan": "pro"}}]
    accept(deps, {"authorization": basic(key)}, json.dumps({"batch": batch}).encode(), None)
    [entry] = receive()

    def fault(point: str) -> None:
        if point == crash:
            raise _Crash(point)

    def checkpoint(writes: int) -> None:
        if crash == "mid_profiles" and writes == 1:
            raise _Crash("mid_profiles")  # one profile item written, the other not

    repo = deps.profiles
    saved = repo.checkpoint, repo.write_batch, repo.parallel
    repo.checkpoint, repo.write_batch, repo.parallel = checkpoint, 1, 1  # one profile a request, in order
    try:
        with pytest.raises(_Crash):
            apply_handoff(deps, entry, fault=fault)
    finally:
        repo.checkpoint, repo.write_batch, repo.parallel = saved
    written = [u for u in ("u1", "u2") if repo.find(account, "user_id", u) is not None]
    # Positive control: the crashed attempt did write (all, or exactly one profile).
    assert len(written) == (2 if crash == "after_profiles" else 1), written
    for n in range(others):
        for u in ("u1", "u2"):
            outcome = repo.upsert_batch(account, [ProfileRecord({"user_id": u}, {f"other_{n}": n}, f"r{n}")],
                                        step_tag=f"run_other{n}#0")
            assert outcome in (["added"], ["updated"]), outcome
    apply_handoff(deps, entry)  # the redelivery
    for u in ("u1", "u2"):
        prof = repo.find(account, "user_id", u)
        assert prof is not None, u
        assert prof.fields.get("event_bought_count") == 1, (u, others, crash, prof.fields)
        assert prof.fields.get(f"other_{others - 1}") == others - 1, prof.fields  # the others' values stay
    assert repo.find(account, "user_id", "u1").fields.get("plan") == "pro"  # type: ignore[union-attr]
    runs = api.get(f"/jobs/{job['id']}/runs").json["data"]
    assert sum(r["added"] for r in runs) == 3 and sum(r["omitted"] for r in runs) == 0, runs
    assert api.get(f"/jobs/{job['id']}").json["data"]["collection"]["accepted"] == 3
    assert apply_handoff(deps, entry) == "already applied"


def test_a_hand_offs_sequence_is_allocated_once_and_later_ones_get_larger_ones(
        deps: Any, new_tenant: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    account, repo = new_tenant("Seq").account_id, deps.collect
    assert [repo.sequence(account, "job_s", h, 0.0) for h in ("h1", "h1", "h2")] == [1, 1, 2]
    # Killed between the counter and the record: the number is lost, the redelivery takes the next.
    real_write_if = repo.t.write_if

    def killed(*args: Any, **kwargs: Any) -> bool:
        monkeypatch.setattr(repo.t, "write_if", real_write_if)
        raise _Crash("between the counter and the record")

    monkeypatch.setattr(repo.t, "write_if", killed)
    with pytest.raises(_Crash):
        repo.sequence(account, "job_s", "h3", 0.0)
    assert [repo.sequence(account, "job_s", "h3", 0.0) for _ in range(2)] == [4, 4]
    # A concurrent delivery of h2 that read before h2's record existed ends with h2's number.
    real_get = repo.t.get

    def missed(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(repo.t, "get", real_get)
        return None

    monkeypatch.setattr(repo.t, "get", missed)
    assert repo.sequence(account, "job_s", "h2", 0.0) == 2
    # Committed: applied, once.
    for attempt in range(2):
        tx = deps.transaction()
        repo.add_applied(tx, account, "job_s", "h2")
        if attempt == 0:
            tx.commit()
        else:
            with pytest.raises(TransactionFailed) as refused:
                tx.commit()
            assert "applied" in refused.value.refused
    assert repo.sequence(account, "job_s", "h2", 0.0) is None
    assert repo.sequence(account, "job_s", "h5", 0.0) == 6  # the concurrent delivery's number is a gap too
