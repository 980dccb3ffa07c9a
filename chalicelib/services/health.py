"""Authorization health: the daily sweep, the health handler, "check now", and what a run
learns about its credentials (SPEC rule 7, docs/health.md).

The sweep reads every authorization from the sharded sweep index (a Query per page, never
a Scan) and fans them out to the health queue, one message each, 10 per SendMessageBatch.
The handler checks up to 10 at once, each in its own thread with a hard timeout, so one
provider that hangs never stalls the others. Only a change of status writes a transition.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextvars
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chalicelib import logs
from chalicelib.domain.errors import AppError
from chalicelib.domain.models import Authorization, CheckResult, HealthStatus, Job
from chalicelib.providers.base import ProviderError
from chalicelib.services import alerts
from chalicelib.services import credentials as creds_svc
from chalicelib.store import metrics as M
from chalicelib.store.authorizations import HEALTH_SHARDS, PendingHealthAlert
from chalicelib.store.dynamo import now_iso

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.services.needs import HealthNeeds

log = logging.getLogger("switchyard.health")

SWEEP_PAGE = 100


@dataclass
class Verdict:
    auth_id: str
    status: HealthStatus | None  # None: nothing could be concluded (transient); nothing stored
    reason: str | None
    changed: bool = False
    timed_out: bool = False
    crashed: bool = False


def sweep(d: HealthNeeds) -> tuple[int, int]:
    """Queue every authorization for a check. Returns (authorizations, SQS requests)."""
    queued = requests = 0
    for shard in range(HEALTH_SHARDS):
        start: dict[str, Any] | None = None
        while True:
            found, start = d.auths.sweep_page(shard, start, limit=SWEEP_PAGE)
            if found:
                requests += d.health_queue.send_batch(
                    [{"account_id": a, "authorization_id": i} for a, i in found])
                queued += len(found)
            if not start:
                break
    log.info("health sweep queued", extra={"authorizations": queued, "sqs_requests": requests})
    M.metrics().count(M.SWEEP_QUEUED, queued)
    return queued, requests


def _check(d: HealthNeeds, auth: Authorization) -> CheckResult:
    provider = d.registry.get(auth.provider)
    spec = provider.spec.method(auth.method)
    if not spec.verifiable:
        return CheckResult(HealthStatus.UNKNOWN, f"{provider.spec.name} offers no way to verify")
    try:
        credentials = creds_svc.load(d, auth, provider.spec)
    except ProviderError as exc:
        if not exc.auth:
            raise
        return CheckResult(HealthStatus.UNHEALTHY, exc.reason)  # a refresh refused: access revoked
    return provider.check(auth.method, credentials, {})


def record(d: HealthNeeds, auth: Authorization, check: CheckResult, *, by: str) -> bool:
    recorded = d.auths.record_health(auth, check.status, check.reason, at=now_iso(), by=by,
                                     provider_account=check.provider_account,
                                     alert_when=lambda prev, new: _alert_kind(prev, new) is not None)
    if recorded.changed:
        log.info("authorization health changed", extra={
            "account_id": auth.account_id, "authorization_id": auth.id,
            "from": auth.health.status.value, "to": check.status.value})
    if recorded.pending is not None:
        # This change's alert, or one an earlier checker recorded but never sent (it died
        # first, or EventBridge refused): at least once per transition, its id in the event.
        _alert(d, auth, recorded.pending)
    return recorded.changed


def _alert_kind(prev: HealthStatus, new: HealthStatus) -> str | None:
    if new == HealthStatus.UNHEALTHY:
        return alerts.AUTH_UNHEALTHY
    if new == HealthStatus.HEALTHY and prev == HealthStatus.UNHEALTHY:
        return alerts.AUTH_HEALTHY
    return None


def _alert(d: HealthNeeds, auth: Authorization, pending: PendingHealthAlert) -> None:
    kind = _alert_kind(pending.from_status, pending.to_status)
    sent = kind is None or alerts.emit(d, auth.account_id, kind, {
        "authorization_id": auth.id, "label": auth.label, "provider": auth.provider,
        "reason": pending.reason, "transition_id": pending.transition_id})
    if sent:
        d.auths.clear_health_alert(auth.account_id, auth.id, pending.transition_id)


def check_many(d: HealthNeeds, targets: list[tuple[str, str]], *, by: str = "sweep",
               timeout: float | None = None) -> list[Verdict]:
    """Check (account_id, auth_id) pairs concurrently, each bounded by `timeout` (default
    `d.health_check_timeout`)."""
    timeout = d.health_check_timeout if timeout is None else timeout
    auths: list[Authorization] = []
    verdicts: list[Verdict] = []
    # One consistent BatchGetItem for the batch, not a GetItem each.
    found = d.auths.get_pairs(targets, consistent=True)
    for account_id, auth_id in targets:
        auth = found.get(auth_id)
        if auth is None or auth.account_id != account_id:
            verdicts.append(Verdict(auth_id, None, "deleted since it was queued"))
        else:
            auths.append(auth)
    if not auths:
        return verdicts
    # Not a `with` block: leaving it would wait for a thread that hangs.
    pool = cf.ThreadPoolExecutor(max_workers=len(auths), thread_name_prefix="health")
    # Each check runs in a copy of this invocation's context (its log keys) plus its own ids.
    futures = {pool.submit(contextvars.copy_context().run, _check_logged, d, a): a for a in auths}
    done, _hung = cf.wait(futures, timeout=timeout)
    pool.shutdown(wait=False, cancel_futures=True)
    for fut, auth in futures.items():
        with logs.scope(account_id=auth.account_id, authorization_id=auth.id):
            verdicts.append(_settle(d, fut, auth, fut in done, timeout, by))
    _count(verdicts)
    return verdicts


def _check_logged(d: HealthNeeds, auth: Authorization) -> CheckResult:
    with logs.scope(account_id=auth.account_id, authorization_id=auth.id):
        return _check(d, auth)


def _settle(d: HealthNeeds, fut: cf.Future[CheckResult], auth: Authorization, finished: bool, timeout: float,
            by: str) -> Verdict:
    if not finished:
        # The issue counts a provider that never answers as unreachable, not unknown.
        check = CheckResult(HealthStatus.UNHEALTHY, f"unreachable: no answer within {timeout:g} s")
        timed_out = True
    else:
        timed_out = False
        exc = fut.exception()
        if isinstance(exc, ProviderError):
            # Throttling or an outage says nothing about the credentials.
            return Verdict(auth.id, None, exc.reason)
        if exc is not None:
            log.error("health check crashed", exc_info=exc)
            return Verdict(auth.id, None, "the check failed unexpectedly", crashed=True)
        check = fut.result()
    try:
        changed = record(d, auth, check, by=by)
    except AppError:
        return Verdict(auth.id, None, "deleted while being checked")
    return Verdict(auth.id, check.status, check.reason, changed, timed_out)


def _count(verdicts: list[Verdict]) -> None:

    m = M.metrics()
    m.count(M.SWEEP_CHECKED, sum(1 for v in verdicts if v.status is not None))
    m.count(M.SWEEP_HEALTHY, sum(1 for v in verdicts if v.status == HealthStatus.HEALTHY))
    m.count(M.SWEEP_UNHEALTHY, sum(1 for v in verdicts if v.status == HealthStatus.UNHEALTHY))
    m.count(M.SWEEP_INCONCLUSIVE, sum(1 for v in verdicts if v.status in (None, HealthStatus.UNKNOWN)))
    m.count(M.SWEEP_TIMEOUTS, sum(1 for v in verdicts if v.timed_out))
    m.count(M.SWEEP_ERRORS, sum(1 for v in verdicts if v.crashed))


def mark_job_authorization_unhealthy(d: HealthNeeds, job: Job, reason: str, *, run_id: str) -> bool:
    """A job's run (or real-time delivery) met known-bad credentials (401/403, revoked
    keys): its authorization says so now, not at the next sweep."""
    auth = d.auths.get(job.account_id, job.authorization_id, consistent=True)
    if auth is None:
        return False
    try:
        return record(d, auth, CheckResult(HealthStatus.UNHEALTHY, reason), by=f"run {run_id}")
    except AppError:
        return False


__all__ = ["Verdict", "check_many", "mark_job_authorization_unhealthy", "record", "sweep"]
