"""The job<->authorization link under concurrency: DynamoDB conditions decide, not luck.

Each round races a delete of an authorization against a create (or a resume) of a job
using it. Exactly one may win, and no active job may ever point at a deleted authorization.
Who wins depends on who commits first, so the rounds take turns: the delete first, the
other call first (each held back by an event until the first one returned, however loaded
the machine), or both released together; both outcomes happen on every machine.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from chalicelib.domain.access import Principal, Role
from chalicelib.domain.statuses import Action, JobStatus
from chalicelib.services import authorizations as auth_svc
from chalicelib.services import jobs as job_svc
from tests.api.helpers import create_auth, drive, make_bucket
from tests.race_kit import Outcome, crashes, race
from tests.seeds import seeded

ROUNDS = 12
ORDERS = ("delete first", "the other first", "together")


@pytest.fixture()
def deps(aws_endpoint: str) -> Iterator[Any]:
    """Small tables of this test's own, behind a DynamoDB endpoint that applies one request
    at a time: otherwise moto's unlocked transactions can interleave (tests/serial_moto.py),
    and a race would be decided by moto, not by the app's conditions."""
    from tests.race_kit import race_deps

    yield from race_deps()


def _delete_against(order: str, delete: Callable[[], Any], other: Callable[[], Any]) -> tuple[Outcome, Outcome]:
    """A delete and another call racing in `order`; neither may crash."""
    deleted, other_done = threading.Event(), threading.Event()

    def first(fn: Callable[[], Any], done: threading.Event) -> Callable[[], Any]:
        def call() -> Any:
            try:
                return fn()
            finally:
                done.set()
        return call

    waits: list[threading.Event | None] | None = {
        "delete first": [None, deleted], "the other first": [other_done, None], "together": None}[order]
    results = race([first(delete, deleted), first(other, other_done)], waits=waits)
    assert not crashes(results), (order, crashes(results))
    return results[0], results[1]


def _winner(order: str, deleted: Outcome, other: Outcome, other_refusal: str, name: str) -> str:
    """Exactly one of the two won, and the loser was refused with the code that says why."""
    assert deleted.ok != other.ok, (order, deleted, other)
    if deleted.ok:
        assert other.error is not None and other.error.code == other_refusal, (order, other.error)
        return "delete won"
    assert deleted.error is not None and deleted.error.code == "authorization.in_use", (order, deleted.error)
    return f"{name} won"


def _active_on_deleted(deps: Any, account_id: str) -> list[str]:
    bad = []
    for job in deps.jobs.page(account_id, limit=200, cursor=None).items:
        active = job.status in (JobStatus.RUNNING, JobStatus.SLEEPING, JobStatus.PAUSED)
        if active and deps.auths.get(account_id, job.authorization_id, consistent=True) is None:
            bad.append(job.id)
    return bad


def test_delete_vs_create_and_resume(api, deps, tenant):
    p = Principal(tenant.account_id, tenant.admin_user_id, Role.ADMIN, "t")
    bucket = make_bucket()
    seen: dict[str, Counter[str]] = {"create": Counter(), "resume": Counter()}
    for r in range(ROUNDS):
        order = ORDERS[r % len(ORDERS)]
        # delete vs create
        auth = create_auth(api)
        new = job_svc.NewJob(provider="amazon_s3", job_type="import", workflow="s3_file_import",
                             label="racer", description="", config={"bucket": bucket}, schedule=None,
                             start=True, authorization_id=auth["id"])
        deleted, created = _delete_against(order, lambda a=auth: auth_svc.delete(deps, p, a["id"]),
                                           lambda n=new: job_svc.create(deps, p, n))
        won = _winner(order, deleted, created, "authorization.not_found", "create")
        assert won == {"delete first": "delete won", "the other first": "create won"}.get(order, won), order
        seen["create"][won] += 1

        # delete vs resume of a failed job
        auth = create_auth(api)
        job, _ = job_svc.create(deps, p, job_svc.NewJob(
            provider="amazon_s3", job_type="import", workflow="s3_file_import", label="failed",
            description="", config={"bucket": bucket}, schedule=None, start=True,
            authorization_id=auth["id"]))
        drive(deps, tenant.account_id, job.id, Action.RUN_FAILED)
        deleted, resumed = _delete_against(order, lambda a=auth: auth_svc.delete(deps, p, a["id"]),
                                           lambda j=job: job_svc.act(deps, p, j.id, Action.RESUME))
        won = _winner(order, deleted, resumed, "job.authorization_deleted", "resume")
        assert won == {"delete first": "delete won", "the other first": "resume won"}.get(order, won), order
        seen["resume"][won] += 1

    # both outcomes of each race happened
    assert set(seen["create"]) == {"delete won", "create won"}, seen
    assert set(seen["resume"]) == {"delete won", "resume won"}, seen
    assert _active_on_deleted(deps, tenant.account_id) == []
    # usage counters equal the real number of jobs per authorization
    for auth in deps.auths.page(tenant.account_id, limit=200, cursor=None).items:
        jobs = deps.jobs.jobs_of_authorization(tenant.account_id, auth.id)
        for status in JobStatus:
            assert auth.usage[status.value] == sum(1 for j in jobs if j.status is status), auth.id


def test_concurrent_edits_with_the_same_version_lose_no_update(api, deps, tenant):
    p = Principal(tenant.account_id, tenant.admin_user_id, Role.ADMIN, "t")
    bucket = make_bucket()
    auth = create_auth(api)
    job, _ = job_svc.create(deps, p, job_svc.NewJob(
        provider="amazon_s3", job_type="import", workflow="s3_file_import", label="v1",
        description="", config={"bucket": bucket}, schedule=None, start=False,
        authorization_id=auth["id"]))
    results = race([lambda i=i: job_svc.edit(deps, p, job.id, {"label": f"edit-{i}"}, 1) for i in range(4)])
    assert not crashes(results), crashes(results)
    winners = [r.value for r in results if r.ok]
    losers = [r.error for r in results if not r.ok]
    # one edit wins whatever the timing, the other three read as stale
    assert len(winners) == 1 and [e.code for e in losers if e] == ["conflict.stale_version"] * 3, results
    final = deps.jobs.get(tenant.account_id, job.id, consistent=True)
    assert final.version == 2 and final.label == winners[0].job.label


def test_a_create_whose_authorization_is_deleted_while_it_checks_it_is_told_not_found(
        api, deps, tenant, monkeypatch):
    """Regression: a create that read the authorization, then found its secret scheduled for
    deletion by a delete that committed meanwhile, answered 503 "credentials could not be
    read" instead of the not-found it gets when the delete comes first."""
    from chalicelib.domain.errors import AppError
    from chalicelib.services import credentials as creds_svc

    p = Principal(tenant.account_id, tenant.admin_user_id, Role.ADMIN, "t")
    auth = create_auth(api)
    original = creds_svc.load

    def deleted_meanwhile(d: Any, a: Any, spec: Any, ahead: Any = None) -> Any:
        auth_svc.delete(deps, p, a.id)  # the delete commits between the read and the check
        return original(d, a, spec, ahead)

    # GIVEN a create of a job on an authorization that is deleted while the create checks it
    monkeypatch.setattr(creds_svc, "load", deleted_meanwhile)
    # WHEN the create goes on
    with pytest.raises(AppError) as refused:
        job_svc.create(deps, p, job_svc.NewJob(
            provider="amazon_s3", job_type="import", workflow="s3_file_import", label="late",
            description="", config={"bucket": make_bucket()}, schedule=None, start=True,
            authorization_id=auth["id"]))
    # THEN it is told the authorization is gone, on its field, and no job was made
    assert (refused.value.code, refused.value.fields) == ("authorization.not_found", {"authorization_id": "not found"})
    assert "deleted meanwhile" in refused.value.message
    assert deps.jobs.page(tenant.account_id, limit=10, cursor=None).items == []


# -- SPEC rule 10 under 50 concurrent attempts --------------------------------------------

DELETERS, RESUMERS, CREATORS = 5, 30, 15  # 50 attempts a round


def _fifty_attempts(deps: Any, p: Principal, bucket: str, rng: Any, mode: str) -> dict[str, Any]:
    """One authorization with 30 failed jobs (they do not block a delete); 5 deletes race
    30 resumes of those jobs and 15 creates of new jobs on it.

    `mode` sets who goes first: "delete first" (the others wait for a delete to return, then
    race the other four), "after a win" (the deletes wait for the first resume or create to
    return), "even" (everyone released together, each after up to 20 ms of jitter). The
    first two do not hang on thread timing, so both outcomes of rule 10 happen however loaded
    the machine is."""
    from tests.race_kit import new_auth, seed_jobs

    auth_id = new_auth(deps, p)
    template, _ = job_svc.create(deps, p, job_svc.NewJob(
        provider="amazon_s3", job_type="import", workflow="s3_file_import", label="failed",
        description="", config={"bucket": bucket}, schedule=None, start=True, authorization_id=auth_id))
    drive(deps, p.account_id, template.id, Action.RUN_FAILED)
    failed = [template, *seed_jobs(deps, template, [JobStatus.FAILED] * (RESUMERS - 1))]
    first_other = threading.Event()
    first_delete = threading.Event()

    def delete() -> Any:
        try:
            return auth_svc.delete(deps, p, auth_id)
        finally:
            first_delete.set()

    def resume(job_id: str) -> Any:
        try:
            return job_svc.act(deps, p, job_id, Action.RESUME)
        finally:
            first_other.set()

    def create() -> Any:
        try:
            return job_svc.create(deps, p, job_svc.NewJob(
                provider="amazon_s3", job_type="import", workflow="s3_file_import", label="new",
                description="", config={"bucket": bucket}, schedule=None, start=True,
                authorization_id=auth_id))
        finally:
            first_other.set()

    calls = ([delete] * DELETERS
             + [lambda j=j: resume(j.id) for j in failed]
             + [create] * CREATORS)
    others = RESUMERS + CREATORS
    delays = [rng.uniform(0, 0.02) for _ in calls]
    waits: list[threading.Event | None] | None = None
    if mode == "delete first":
        waits = [None] * DELETERS + [first_delete] * others
    elif mode == "after a win":
        waits = [first_other] * DELETERS + [None] * others
    results = race(calls, delays=delays, waits=waits)
    return {"auth_id": auth_id, "deletes": results[:DELETERS],
            "resumes": results[DELETERS:DELETERS + RESUMERS], "creates": results[DELETERS + RESUMERS:],
            "resumed_ids": [j.id for j in failed]}


@pytest.fixture()
def serial(aws_endpoint: str) -> Iterator[Any]:
    from tests.serial_moto import serial_dynamodb

    with serial_dynamodb() as endpoint:
        yield endpoint


def test_a_delete_whose_answer_was_lost_still_completes(serial):
    """Regression: DeleteItem has no idempotency token, so when its answer was lost after
    it deleted (a timeout on the way back), the SDK's retry failed the condition on the
    missing item: the user got 404 and the secret was never scheduled for deletion nor
    the deletion audited. The delete is now a transaction, whose ClientRequestToken makes
    the retry answer as the first attempt did."""
    from tests.race_kit import fresh_round, new_auth

    with fresh_round() as (deps, p):
        # GIVEN an unused authorization
        auth_id = new_auth(deps, p)
        secret = deps.auths.get(p.account_id, auth_id).secret_name
        # WHEN it is deleted and DynamoDB's answer to the deleting request is lost
        serial.lose_answer |= {"DeleteItem", "TransactWriteItems"}
        auth_svc.delete(deps, p, auth_id)
        serial.lose_answer.clear()
        # THEN the user sees a success, the secret is scheduled for deletion, the deletion audited
        assert deps.auths.get(p.account_id, auth_id, consistent=True) is None
        described = deps.secrets.client.describe_secret(SecretId=secret)
        assert described.get("DeletedDate"), described
        events = deps.audit.page(p.account_id, limit=20, cursor=None, object_id=auth_id).items
        assert [e for e in events if e["action"] == "deleted"], events


@seeded(5)
def test_fifty_concurrent_attempts_delete_or_refuse_exactly_per_rule_10(serial, seed):
    # GIVEN an authorization whose jobs all failed (rule 10: they do not block its deletion)
    import random

    from tests.race_kit import audit, fresh_round

    bucket = make_bucket()
    rng = random.Random(seed)
    seen: dict[str, int] = {"delete won": 0, "delete refused": 0}
    for mode in ["delete first", "after a win", "even"]:
        with fresh_round() as (deps, p):
            # WHEN 5 deletes race 30 resumes and 15 creates on it
            r = _fifty_attempts(deps, p, bucket, rng, mode)
            crashed = crashes(r["deletes"] + r["resumes"] + r["creates"])
            assert not crashed, (mode, crashed[:3])
            won = [o for o in r["deletes"] if o.ok]
            winners = [o for o in r["resumes"] + r["creates"] if o.ok]
            gone = deps.auths.get(p.account_id, r["auth_id"], consistent=True) is None
            # THEN at most one delete succeeds, and a deletion never coexists with a resume or a create
            assert len(won) <= 1, mode
            # AND an imposed order decides: a delete that went first wins, one that waited for a
            # resume or a create is refused
            assert gone == {"delete first": True, "after a win": False}.get(mode, gone), mode
            if gone:
                seen["delete won"] += 1
                assert winners == [], (mode, len(winners))
                # the other deletes: already gone (404) or, had they come first, in use. (A delete
                # whose first attempt timed out client-side and was retried also reads 404.)
                assert all(o.error is not None and o.error.code in ("authorization.not_found", "authorization.in_use")
                           for o in r["deletes"] if not o.ok)
                # every resume and create got a clear refusal naming the deletion
                for o in r["resumes"]:
                    assert o.error is not None and o.error.code == "job.authorization_deleted", o.error
                    assert "deleted" in o.error.message
                for o in r["creates"]:
                    assert o.error is not None and o.error.code == "authorization.not_found", o.error
            else:
                seen["delete refused"] += 1
                assert won == []
                # the authorization stays, so every resume and create went through
                assert len(winners) == RESUMERS + CREATORS, [o.error.code for o in r["resumes"] + r["creates"]
                                                             if o.error]
                ok_ids = set(r["resumed_ids"]) | {o.value[0].id for o in r["creates"]}
                for o in r["deletes"]:
                    assert o.error is not None and o.error.code == "authorization.in_use", o.error
                    blocking = {j["id"] for j in o.error.details["blocking_jobs"]}
                    # the refusal names blocking jobs, and only jobs that really became active
                    assert blocking and blocking <= ok_ids, (blocking - ok_ids)
            # AND afterwards: no active job on a deleted authorization, counters equal the jobs
            found = audit(deps, p.account_id, [r["auth_id"]])
            assert found.violations == 0, found
    # both branches of rule 10 were exercised under the race
    assert seen["delete won"] and seen["delete refused"], seen
