"""The job engine: one step of one run per SQS message (docs/engine.md).

A run is a chain of steps. Each step reads from its run's checkpoint, writes profiles with
idempotent upserts tagged by the step, then commits the checkpoint, the run's counters,
the activity counters and its log lines in ONE transaction conditional on the step number
(chalicelib/runs/commit.py). A crash anywhere before the commit replays the step with the
same tag (no double count); a crash after it finds the step committed and only re-queues
the next one.

The engine alone drives a run: it starts or resumes it, takes the step's lease, calls the
job type's stage (an import, export, enrichment or task step, which returns a
`StepOutcome`) and commits that outcome.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from chalicelib import logs
from chalicelib.domain.errors import AppError
from chalicelib.domain.ids import new_id
from chalicelib.domain.models import Job
from chalicelib.domain.runs import RESUMABLE, LogLine, Run, RunStatus
from chalicelib.domain.schedules import in_quiet_hours
from chalicelib.domain.statuses import JobStatus
from chalicelib.providers.base import ProviderError
from chalicelib.providers.calls import CallCounter
from chalicelib.runs.commit import commit_step
from chalicelib.runs.control import (
    LEASE_MARGIN,
    AlertNotSent,
    Delivery,
    EngineOptions,
    PoisonMessage,
    RunControl,
    StepBusy,
    iso,
    parse_iso,
)
from chalicelib.runs.enrichment import enrichment_stage
from chalicelib.runs.export import export_stage
from chalicelib.runs.imports import import_stage
from chalicelib.runs.outcome import StepOutcome
from chalicelib.runs.tasks import task_stage
from chalicelib.store.jobs import AuthorizationGone

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.services.needs import RunNeeds

log = logging.getLogger("switchyard.engine")

TRIGGERS = ("create", "run", "resume", "schedule", "retry")

Stage = Callable[[RunControl, Job, Run, Delivery, float, float, CallCounter], StepOutcome]
# The stage of each job type (docs/engine.md); a job type not listed imports.
STAGES: dict[str, Stage] = {"export": export_stage, "enrichment": enrichment_stage, "other": task_stage}


def parse_message(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise PoisonMessage("message body is not an object")
    for key in ("account_id", "job_id", "trigger"):
        if not isinstance(body.get(key), str) or not body[key]:
            raise PoisonMessage(f"message has no {key}")
    if body["trigger"] not in (*TRIGGERS, "continue"):
        raise PoisonMessage(f"unknown trigger {body['trigger']!r}")
    if body["trigger"] == "continue" and not (
        isinstance(body.get("run_id"), str) and isinstance(body.get("step"), int)
    ):
        raise PoisonMessage("a continuation names its run and step")
    return body


def stale_retry(job: Job, msg: dict[str, Any]) -> bool:
    """A retry names the fault it was queued after; the job has moved on when its fault
    count differs (retries queued before the count was carried are never stale)."""
    queued_for = msg.get("fault_count")
    return isinstance(queued_for, int) and queued_for != job.fault_count


def backing_off(job: Job, now: datetime) -> bool:
    """Sleeping after a transient error, its retry not due yet."""
    return job.fault_count > 0 and bool(job.next_run_at) and parse_iso(str(job.next_run_at)) > now


class Engine:
    def __init__(self, d: RunNeeds, options: EngineOptions | None = None) -> None:
        self.d = d
        self.o = options or EngineOptions()
        self.ctl = RunControl(d, self.o)

    # -- entry ---------------------------------------------------------------------------

    def handle(self, delivery: Delivery) -> None:
        msg = parse_message(delivery.body)
        self.ctl.unsent = False
        self.ctl.access_read = None
        # Every line about this message carries its job (and run and step once known);
        # the scope ends with the message, so the next one on this Lambda starts clean.
        with logs.scope(account_id=msg["account_id"], job_id=msg["job_id"], trigger=msg["trigger"],
                        run_id=msg.get("run_id"), step=msg.get("step")):
            self._handle(msg, delivery)
            if self.ctl.unsent:
                raise AlertNotSent("EventBridge refused the job's alert; it stays pending on the job")

    def _handle(self, msg: dict[str, Any], delivery: Delivery) -> None:
        job = self.d.jobs.get(msg["account_id"], msg["job_id"], consistent=True)
        if job is None:
            log.info("message for a job that no longer exists: %s", msg["job_id"])
            return
        if job.pending_alert:
            # A delivery that committed the state change died (or EventBridge refused)
            # before its alert left: this one, usually its redelivery, sends it. The read
            # above is needed anyway, so finding it costs nothing.
            self.ctl.send_alert(job)
        if msg["trigger"] == "continue":
            run = self.d.runs.get(job.account_id, job.id, msg["run_id"])
            if run is None or run.status is not RunStatus.RUNNING:
                return
            if msg["step"] < run.step:
                self.ctl.requeue_if_lost(run)
                return
            if msg["step"] > run.step:
                return
            if job.status is not JobStatus.RUNNING or job.current_run_id != run.id:
                self.ctl.interrupt(job, run)
                return
            self._step(job, run, delivery)
            return
        if msg["trigger"] == "retry" and stale_retry(job, msg):
            # Another attempt came since this retry was queued (run now, resume, a success):
            # that attempt queued its own retry if it needed one. Running this one too would
            # make two retry chains, and a run nobody asked for after the recovery.
            log.info("stale retry dropped: job %s is at fault %s, the retry was for fault %s",
                     job.id, job.fault_count, msg["fault_count"])
            return
        if msg["trigger"] == "retry" and msg.get("not_before"):
            wait = (parse_iso(msg["not_before"]) - self.o.now()).total_seconds()
            if wait > 1:
                self.ctl.send(msg, delay=wait)
                return
        if job.status is JobStatus.RUNNING and job.current_run_id:
            run = self.d.runs.get(job.account_id, job.id, job.current_run_id)
            if run is not None and run.status is RunStatus.RUNNING and run.origin == delivery.message_id:
                # This very trigger started the run and crashed before handing over: carry on.
                if run.step > 0:
                    self.ctl.requeue_if_lost(run)
                else:
                    self._step(job, run, delivery)
                return
        started = self._start(job, msg, delivery)
        if started is not None:
            job, run, leased = started
            self._step(job, run, delivery, leased=leased)

    # -- starting and stopping ---------------------------------------------------------

    def _start(self, job: Job, msg: dict[str, Any], delivery: Delivery) -> tuple[Job, Run, bool] | None:
        """Start (or resume) the job's run. A new run is created holding its first step's
        lease for this delivery, in the same transaction: one round trip less before the
        step. Returns the job, the run and whether the lease is already held."""
        origin = delivery.message_id
        who = msg.get("requested_by")
        if job.status is not JobStatus.SLEEPING:
            self._log(job, "info", "run.trigger_ignored",
                      f"{msg['trigger']} ignored: the job is {job.status.value}")
            return None
        now = self.o.now()
        if msg["trigger"] == "schedule" and job.schedule:
            if in_quiet_hours(job.schedule, now):
                self._log(job, "info", "run.skipped_quiet_hours",
                          "scheduled run skipped: inside the job's quiet hours")
                return None
            if backing_off(job, now):
                # The retry already queued runs the job when its backoff is over; starting
                # now would not back off at all (and start a second retry chain).
                self._log(job, "info", "run.skipped_backing_off",
                          f"scheduled run skipped: backing off after {job.fault_count} "
                          f"error{'s' if job.fault_count > 1 else ''}; the retry is due at {job.next_run_at}")
                return None
        resumed = None
        if job.current_run_id:
            prev = self.d.runs.get(job.account_id, job.id, job.current_run_id)
            if prev is not None and prev.status in RESUMABLE:
                resumed = prev
        lines = []
        if resumed is not None:
            run = resumed
            run.resume(origin)
            tx = self.d.transaction()
            self.d.runs.add_status(tx, run, RunStatus.RUNNING, error=None, now=iso(now), origin=origin)
            lines.append(LogLine("info", "run.resumed",
                                 f"run resumed at step {run.step} ({msg['trigger']})",
                                 run_id=run.id, user=who))
        else:
            run = Run(id=new_id("run"), job_id=job.id, account_id=job.account_id,
                      trigger=msg["trigger"], status=RunStatus.RUNNING, started_at=iso(now),
                      requested_by=who, origin=origin)
            tx = self.d.transaction()
            self.d.runs.add_new_run(tx, run, lease_seconds=self._lease_seconds(delivery))
            lines.append(LogLine("info", "run.started", f"run started ({msg['trigger']})",
                                 run_id=run.id, user=who))
        after = job.run_started(run.id)
        self.d.runs.add_logs(tx, job.account_id, job.id, lines, now)
        self.ctl.read_access(job)  # the step's first reads, while the run starts
        try:
            self.d.jobs.save(job, after, expected_version=None, expected_status=JobStatus.SLEEPING, tx=tx)
        except AuthorizationGone:
            self._log(job, "error", "run.authorization_deleted",
                      "the job's authorization was deleted; change it, then resume the job")
            return None
        except AppError:
            return None  # someone changed the job meanwhile (paused, edited): that change wins
        return after, run, resumed is None

    # -- one step --------------------------------------------------------------------------

    def _budget(self, delivery: Delivery) -> float:
        """Seconds a step may work: the engine's ceiling, lowered by the Lambda's time left."""
        return min(self.o.step_seconds, max(5.0, delivery.remaining_ms() / 1000 - 10))

    def _lease_seconds(self, delivery: Delivery) -> int:
        return int(self._budget(delivery)) + LEASE_MARGIN

    def _step(self, job: Job, run: Run, delivery: Delivery, *, leased: bool = False) -> None:
        """One step; `leased` when the run was created holding this step's lease."""
        logs.bind(run_id=run.id, step=run.step, job_type=job.job_type.value, provider=job.provider)
        started = time.monotonic()
        budget = self._budget(delivery)
        if not leased:
            self.ctl.read_access(job)  # the step's first reads, while the lease is taken
        if not leased and not self.d.runs.acquire(run, delivery.message_id, int(budget) + LEASE_MARGIN):
            raise StepBusy(f"run {run.id} step {run.step} is being worked on")
        self.o.fault("after_lease")
        calls = self.d.calls(job.authorization_id)
        app_calls = self.d.request_counter()
        stage = STAGES.get(job.job_type.value, import_stage)
        try:
            out = stage(self.ctl, job, run, delivery, started, budget, calls)
        except ProviderError as exc:
            self.ctl.failed_step(job, run, delivery, exc, calls)
            return
        commit_step(self.ctl, job, run, delivery, started, out, app_calls.by_service(), calls)

    def _log(self, job: Job, level: str, code: str, message: str) -> None:
        self.ctl.log_line(job, level, code, message)


__all__ = [
    "TRIGGERS",
    "AlertNotSent",
    "Delivery",
    "Engine",
    "EngineOptions",
    "PoisonMessage",
    "StepBusy",
    "backing_off",
    "parse_message",
    "stale_retry",
]
