"""The job<->authorization link under concurrency: DynamoDB conditions decide, not luck.

Each round races a delete of an authorization against a create (or a resume) of a job
using it. Exactly one may win, and no active job may ever point at a deleted authorization.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.domain.access import Principal, Role
from chalicelib.domain.errors import AppError
from chalicelib.domain.statuses import Action, JobStatus
from chalicelib.services import authorizations as auth_svc
from chalicelib.services import jobs as job_svc
from tests.api.helpers import create_auth, drive, make_bucket

ROUNDS = 12


@pytest.fixture()
def deps(aws_endpoint: str) -> Iterator[Any]:
    """Small tables of this test's own: on the shared one, moto's unlocked transactions
    can interleave (tests/tables.py), and a race would be decided by moto, not DynamoDB."""
    from tests.tables import fresh_deps

    yield from fresh_deps()


def _race(*fns: Any) -> list[Any]:
    barrier = threading.Barrier(len(fns))
    results: list[Any] = [None] * len(fns)

    def run(i: int, fn: Any) -> None:
        barrier.wait()
        try:
            results[i] = fn()
        except AppError as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, f)) for i, f in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


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
    outcomes = {"create": set(), "resume": set()}
    for _ in range(ROUNDS):
        # delete vs create
        auth = create_auth(api)
        new = job_svc.NewJob(provider="amazon_s3", job_type="import", workflow="s3_file_import",
                             label="racer", description="", config={"bucket": bucket}, schedule=None,
                             start=True, authorization_id=auth["id"])
        deleted, created = _race(lambda a=auth: auth_svc.delete(deps, p, a["id"]),
                                 lambda n=new: job_svc.create(deps, p, n))
        assert (deleted is None) != (created is not None and not isinstance(created, AppError)), (deleted, created)
        outcomes["create"].add("delete won" if deleted is None else "create won")

        # delete vs resume of a failed job
        auth = create_auth(api)
        job, _ = job_svc.create(deps, p, job_svc.NewJob(
            provider="amazon_s3", job_type="import", workflow="s3_file_import", label="failed",
            description="", config={"bucket": bucket}, schedule=None, start=True,
            authorization_id=auth["id"]))
        drive(deps, tenant.account_id, job.id, Action.RUN_FAILED)
        deleted, resumed = _race(lambda a=auth: auth_svc.delete(deps, p, a["id"]),
                                 lambda j=job: job_svc.act(deps, p, j.id, Action.RESUME))
        assert (deleted is None) != (not isinstance(resumed, AppError)), (deleted, resumed)
        outcomes["resume"].add("delete won" if deleted is None else "resume won")

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
    results = _race(*[lambda i=i: job_svc.edit(deps, p, job.id, {"label": f"edit-{i}"}, 1)
                      for i in range(4)])
    winners = [r for r in results if not isinstance(r, AppError)]
    losers = [r for r in results if isinstance(r, AppError)]
    assert len(winners) == 1 and all(e.code == "conflict.stale_version" for e in losers)
    final = deps.jobs.get(tenant.account_id, job.id, consistent=True)
    assert final.version == 2 and final.label == winners[0].job.label
