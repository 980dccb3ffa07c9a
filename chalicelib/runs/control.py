"""What every stage of a run shares: the delivery being handled, the engine's options, and
`RunControl`, which settles a step that did not commit (a provider error: retry or give up;
a refused commit: re-read and settle), queues the next step and sends the job's alerts."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from chalicelib import logs
from chalicelib.background import in_background
from chalicelib.domain.audiences import Audience, CompiledFilter, parse_filter
from chalicelib.domain.errors import AppError, Invalid
from chalicelib.domain.failures import backoff_seconds, gives_up, why_given_up
from chalicelib.domain.models import Authorization, Job
from chalicelib.domain.runs import LogLine, Run, RunStatus, pending_alert
from chalicelib.domain.statuses import JobStatus
from chalicelib.providers.base import ProviderError
from chalicelib.providers.calls import CallCounter
from chalicelib.providers.roles import StepContext
from chalicelib.services import alerts, health
from chalicelib.services import credentials as creds_svc
from chalicelib.store import aws as aws_clients
from chalicelib.store import metrics as M
from chalicelib.store.dynamo import TransactionFailed

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.services.needs import RunNeeds

log = logging.getLogger("switchyard.engine")

MAX_DELAY = 900  # SQS DelaySeconds ceiling: longer back-offs hop in 15-minute legs
LEASE_MARGIN = 30

Access = tuple[Authorization | None, Any, dict[str, int]]  # authorization, credentials, AWS requests


class PoisonMessage(ValueError):
    """A message no retry can fix; raising it lets SQS move it to the DLQ."""


class StepBusy(RuntimeError):
    """Another delivery holds this run's lease: let SQS redeliver later."""


class AlertNotSent(RuntimeError):
    """The message's work is committed but EventBridge refused its alert: raised at the end
    of the delivery so SQS brings the message back, and that delivery sends the alert."""


@dataclass
class Delivery:
    body: dict[str, Any]
    message_id: str
    remaining_ms: Callable[[], int] = lambda: 60_000
    memory_mb: int = 512
    receive_count: int = 1


@dataclass
class EngineOptions:
    max_records: int = 5_000
    step_seconds: float = 60.0  # ceiling, lowered by the Lambda's remaining time
    # Crash injection for tests: called with a point name; raising simulates a crash there.
    fault: Callable[[str], None] = field(default=lambda point: None)
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(dt: str) -> datetime:
    return datetime.strptime(dt, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def count_requests(job: Job, requests: int) -> None:
    """Provider API requests of a committed step, as a CloudWatch metric per provider (the
    product's own per-authorization counts are in DynamoDB)."""
    if requests:
        M.metrics().count(M.PROVIDER_REQUESTS, requests, provider=job.provider)


def recovery_alert(job: Job, run: Run) -> dict[str, Any] | None:
    """A run of `job` succeeded: a job that had been failing has recovered (one alert);
    otherwise an alert still pending stays so."""
    if job.fault_count > 0 or (job.last_run or {}).get("status") in (RunStatus.FAILED, RunStatus.RETRYING):
        return pending_alert(alerts.JOB_RECOVERED, {
            "job_id": job.id, "label": job.label, "run_id": run.id,
            "previous_error": (job.last_run or {}).get("error")})
    return job.pending_alert


class RunControl:
    """The engine's dependencies and options for one delivery, and what a stage may ask of
    it besides its commit (runs/commit.py)."""

    def __init__(self, d: RunNeeds, options: EngineOptions) -> None:
        self.d = d
        self.o = options
        self.unsent = False  # this delivery's job alert was refused (AlertNotSent)
        self.access_read: tuple[tuple[str, str, str], Future[Access]] | None = None

    # -- the job's authorization -----------------------------------------------------------

    def read_access(self, job: Job) -> None:
        """Start reading the job's authorization and credentials on another thread, while
        this one takes the run's lease: the step needs them first, and all of it waits on
        AWS. `access` takes the result (or reads them itself if nothing was started)."""
        self.access_read = (self._access_key(job), in_background(lambda: self._load_access(job), "step-access"))

    def access(self, job: Job) -> tuple[Authorization | None, Any]:
        """The job's authorization (None when deleted) and its credentials."""
        started, self.access_read = self.access_read, None
        if started is not None and started[0] == self._access_key(job):
            auth, credentials, requests = started[1].result()
            aws_clients.add_requests(requests)  # the step's cost counts them
            return auth, credentials
        auth, credentials, _ = self._load_access(job, tally=False)
        return auth, credentials

    @staticmethod
    def _access_key(job: Job) -> tuple[str, str, str]:
        return job.account_id, job.id, job.authorization_id

    def _load_access(self, job: Job, tally: bool = True) -> Access:
        counter = self.d.request_counter() if tally else None
        ahead = creds_svc.SecretAhead(self.d, job.account_id, job.authorization_id)
        try:
            auth = self.d.auths.get(job.account_id, job.authorization_id)
            credentials = None
            if auth is not None:
                provider = self.d.registry.get(job.provider)
                # Loading refreshes an OAuth token about to expire (services/oauth.py).
                credentials = creds_svc.load(self.d, auth, provider.spec, ahead)
        finally:
            ahead.settle()  # its request counts in this step's cost, used or not
        return auth, credentials, counter.by_service() if counter is not None else {}

    # -- queueing ------------------------------------------------------------------------

    def send(self, msg: dict[str, Any], delay: float = 0) -> None:
        self.d.runs_queue.send(msg, delay_seconds=int(min(MAX_DELAY, max(0, delay))))

    def continue_run(self, run: Run) -> None:
        """Queue the run's next step (`run.step`), then note it queued."""
        self.o.fault("before_enqueue")
        self.send({"account_id": run.account_id, "job_id": run.job_id, "trigger": "continue",
                   "run_id": run.id, "step": run.step})
        self.o.fault("after_enqueue")
        self.d.runs.mark_enqueued(run, run.step)

    def requeue_if_lost(self, run: Run) -> None:
        # The step was committed but its successor may not have been queued (crash between).
        if run.enqueued_step < run.step:
            self.continue_run(run)

    # -- settling --------------------------------------------------------------------------

    def interrupt(self, job: Job, run: Run) -> None:
        """The job was paused (or deleted) while this run was between steps."""
        status = RunStatus.PAUSED if job.status is JobStatus.PAUSED else RunStatus.CANCELLED
        logs.bind(run_id=run.id, step=run.step)
        log.info("run interrupted: the job is %s", job.status.value)
        # Refused when another delivery settled the run first: nothing left to do then.
        tx = self.d.transaction()
        self.d.runs.add_status(tx, run, status, error=None, now=iso(self.o.now()), expect_step=run.step)
        self.d.runs.add_logs(tx, job.account_id, job.id,
                             [LogLine("info", f"run.{status}", f"run {status} at step {run.step}", run_id=run.id)],
                             self.o.now())
        with contextlib.suppress(TransactionFailed):
            tx.commit()

    def commit_refused(self, job: Job, run: Run, exc: Exception) -> None:
        """The commit's conditions failed: the step was already committed by an earlier
        delivery, or the job changed under us (paused, deleted). Re-read and settle."""
        fresh = self.d.runs.get(run.account_id, run.job_id, run.id)
        if fresh is None or fresh.step > run.step:
            return  # an earlier delivery committed it: nothing to add
        current = self.d.jobs.get(job.account_id, job.id, consistent=True)
        if current is None or current.status is not JobStatus.RUNNING:
            if current is not None:
                self.interrupt(current, fresh)
            return
        raise exc  # something else: let SQS redeliver

    def finished(self, after: Job) -> None:
        """A run succeeded and `after` is the job it committed: send its recovery alert, if
        the commit recorded one (`recovery_alert`)."""
        M.metrics().count(M.RUN_SUCCEEDED, provider=after.provider)
        self.send_alert(after)

    def send_alert(self, job: Job) -> bool:
        """`alerts.send_job_alert`, remembering a refusal (the step reports it)."""
        if not alerts.send_job_alert(self.d, job):
            self.unsent = True
            return False
        job.pending_alert = None
        return True

    def failed_step(self, job: Job, run: Run, delivery: Delivery, exc: ProviderError,
                    calls: CallCounter | None = None) -> None:
        """The step met a provider error: retry after a back-off, or give up (a permanent
        error, or errors for longer than the failure window)."""
        now = self.o.now()
        first = parse_iso(job.first_fault_at) if job.first_fault_at else now
        faulted = job.step_faulted(iso(first))
        give_up = gives_up(exc.transient, first, now, job.failure_window_hours)
        if give_up:
            why = why_given_up(exc.transient, job.failure_window_hours)
            code = "run.config_error" if not exc.transient else "run.failure_window_passed"
            run_status, delay = RunStatus.FAILED, None
            message = f"run failed: {exc.reason} — {why}; fix it, then resume the job"
            after = faulted.gave_up(run.summary(run_status, iso(now), error=exc.reason),
                                    pending_alert(alerts.JOB_FAILED, {
                                        "job_id": job.id, "label": job.label, "run_id": run.id,
                                        "reason": exc.reason, "fault_count": faulted.fault_count}))
        else:
            delay = backoff_seconds(faulted.fault_count, retry_after=exc.retry_after)
            code, run_status = "run.transient_error", RunStatus.RETRYING
            message = (f"transient error: {exc.reason}; retry {faulted.fault_count} in "
                       f"{delay:.0f} s (run resumes from its last checkpoint)")
            after = faulted.retries_at(iso(now + timedelta(seconds=delay)),
                                       run.summary(run_status, None, error=exc.reason))
        tx = self.d.transaction()
        self.d.runs.add_status(tx, run, run_status, error=exc.reason, now=iso(now), expect_step=run.step)
        self.d.runs.add_logs(tx, job.account_id, job.id,
                             [LogLine("error" if give_up else "warning", code, message, run_id=run.id,
                                      context={"fault_count": after.fault_count})], now)
        if calls is not None:
            # The failed step's requests were made too; this transaction is conditional on
            # the step like a commit, so a redelivery cannot count them twice.
            self.d.runs.add_requests(tx, job.account_id, job.authorization_id, now, calls.total,
                                     calls.error_total)
        try:
            self.d.jobs.save(job, after, expected_version=None, expected_status=JobStatus.RUNNING, tx=tx)
        except (AppError, TransactionFailed) as err:
            self.commit_refused(job, run, err)
            return
        if calls is not None:
            count_requests(job, calls.total)
        # The reason is the provider's words, redacted: the job's own log shows it to users.
        log.warning("step failed", extra={"code": code, "reason": exc.reason, "transient": exc.transient,
                                          "fault_count": after.fault_count})
        if give_up:
            M.metrics().count(M.RUN_FAILED, provider=job.provider)
        if give_up and job.schedule is not None:
            self.d.scheduler.remove(job.account_id, job.id)  # a failed job waits for a resume
        if give_up:
            self.send_alert(after)
        if exc.auth:
            health.mark_job_authorization_unhealthy(self.d, job, exc.reason, run_id=run.id)
        if delay is not None:
            self.send({"account_id": job.account_id, "job_id": job.id, "trigger": "retry",
                       "not_before": after.next_run_at, "fault_count": after.fault_count}, delay=delay)

    def log_line(self, job: Job, level: str, code: str, message: str) -> None:
        """A job log line outside any run's transaction (a trigger ignored or skipped)."""
        self.d.runs.write_logs(job.account_id, job.id, [LogLine(level, code, message)])


# -- what a stage reads with ----------------------------------------------------------------


def step_context(ctl: RunControl, job: Job, run: Run, started: float, budget: float,
                 calls: CallCounter) -> StepContext:
    """The StepContext of a run step: the job's authorization and credentials, its config
    and cursor, and the step's deadline."""
    auth, credentials = ctl.access(job)
    if auth is None:
        raise ProviderError("the job's authorization was deleted; change it, then resume")
    return StepContext(
        account_id=job.account_id, job_id=job.id, run_id=run.id, step=run.step, method=auth.method,
        credentials=credentials, config=job.config, cursor=run.cursor, state=job.state,
        max_records=ctl.o.max_records, deadline=started + budget, counter=calls,
    )


class RunLease:
    """Keeps the run's lease while a step 0 reads every profile (it may outlast one lease)."""

    def __init__(self, ctl: RunControl, run: Run, owner: str, budget: float) -> None:
        self.ctl, self.run, self.owner = ctl, run, owner
        self.seconds = int(budget) + LEASE_MARGIN
        self.renewed = time.monotonic()

    def keep(self) -> None:
        if time.monotonic() - self.renewed < self.seconds / 3:
            return
        if not self.ctl.d.runs.acquire(self.run, self.owner, self.seconds):
            raise StepBusy(f"run {self.run.id} step 0 was taken over by another delivery")
        self.renewed = time.monotonic()


def audience_filter(audience: Audience) -> CompiledFilter:
    """The job's audience's filter, compiled; a ProviderError on the job's audience_id when it
    no longer compiles (the run cannot choose its profiles)."""
    try:
        return parse_filter(audience.filter)
    except Invalid as exc:
        raise ProviderError(f"audience {audience.name!r} has a filter that is not valid ({exc.message})",
                            field="audience_id") from None
