"""The job engine: one step of one run per SQS message (docs/engine.md).

A run is a chain of steps. Each step reads from its run's checkpoint, writes profiles with
idempotent upserts tagged by the step, then commits the checkpoint, the run's counters,
the activity counters and its log lines in ONE transaction conditional on the step number.
A crash anywhere before the commit replays the step with the same tag (no double count);
a crash after it finds the step committed and only re-queues the next one.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib import logs
from chalicelib.domain.errors import AppError
from chalicelib.domain.failures import backoff_seconds, past_failure_window
from chalicelib.domain.ids import new_id, new_transition_id
from chalicelib.domain.models import Job
from chalicelib.domain.statuses import Action, JobStatus, transition
from chalicelib.providers.base import ProviderError, StepContext
from chalicelib.providers.calls import CallCounter
from chalicelib.services import credentials as creds_svc
from chalicelib.services.deps import Deps
from chalicelib.store.dynamo import TransactionFailed
from chalicelib.store.jobs import AuthorizationGone
from chalicelib.store.runs import LogLine, Run, StepCommit

log = logging.getLogger("switchyard.engine")

TRIGGERS = ("create", "run", "resume", "schedule", "retry")
MAX_DELAY = 900  # SQS DelaySeconds ceiling: longer back-offs hop in 15-minute legs
LEASE_MARGIN = 30


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


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(dt: str) -> datetime:
    return datetime.strptime(dt, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


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


def count_requests(job: Job, requests: int) -> None:
    """Provider API requests of a committed step, as a CloudWatch metric per provider (the
    product's own per-authorization counts are in DynamoDB)."""
    from chalicelib.store import metrics as M

    if requests:
        M.metrics().count(M.PROVIDER_REQUESTS, requests, provider=job.provider)


def stale_retry(job: Job, msg: dict[str, Any]) -> bool:
    """A retry names the fault it was queued after; the job has moved on when its fault
    count differs (retries queued before the count was carried are never stale)."""
    queued_for = msg.get("fault_count")
    return isinstance(queued_for, int) and queued_for != job.fault_count


def backing_off(job: Job, now: datetime) -> bool:
    """Sleeping after a transient error, its retry not due yet."""
    return job.fault_count > 0 and bool(job.next_run_at) and _parse(str(job.next_run_at)) > now


def is_one_time(job: Job) -> bool:
    return job.schedule is None or job.schedule.get("type") == "once"


def pending_alert(detail_type: str, detail: dict[str, Any]) -> dict[str, Any]:
    """A job alert to record in the state change's own transaction (docs/alerts.md)."""
    return {"transition_id": new_transition_id(), "type": detail_type,
            "detail_json": json.dumps(detail, sort_keys=True, default=str)}


def recovery_alert(job: Job, run: Run) -> dict[str, Any] | None:
    """A run of `job` succeeded: a job that had been failing has recovered (one alert);
    otherwise an alert still pending stays so."""
    if job.fault_count > 0 or (job.last_run or {}).get("status") in ("failed", "retrying"):
        from chalicelib.services import alerts

        return pending_alert(alerts.JOB_RECOVERED, {
            "job_id": job.id, "label": job.label, "run_id": run.id,
            "previous_error": (job.last_run or {}).get("error")})
    return job.pending_alert


class Engine:
    def __init__(self, d: Deps, options: EngineOptions | None = None) -> None:
        self.d = d
        self.o = options or EngineOptions()
        self._unsent = False  # this delivery's job alert was refused (AlertNotSent)

    # -- entry ---------------------------------------------------------------------------

    def handle(self, delivery: Delivery) -> None:
        msg = parse_message(delivery.body)
        self._unsent = False
        # Every line about this message carries its job (and run and step once known);
        # the scope ends with the message, so the next one on this Lambda starts clean.
        with logs.scope(account_id=msg["account_id"], job_id=msg["job_id"], trigger=msg["trigger"],
                        run_id=msg.get("run_id"), step=msg.get("step")):
            self._handle(msg, delivery)
            if self._unsent:
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
            self.send_alert(job)
        if msg["trigger"] == "continue":
            run = self.d.runs.get(job.account_id, job.id, msg["run_id"])
            if run is None or run.status != "running":
                return
            if msg["step"] < run.step:
                self._requeue_if_lost(job, run)
                return
            if msg["step"] > run.step:
                return
            if job.status is not JobStatus.RUNNING or job.current_run_id != run.id:
                self._interrupt(job, run)
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
            wait = (_parse(msg["not_before"]) - self.o.now()).total_seconds()
            if wait > 1:
                self._send(msg, delay=wait)
                return
        if job.status is JobStatus.RUNNING and job.current_run_id:
            run = self.d.runs.get(job.account_id, job.id, job.current_run_id)
            if run is not None and run.status == "running" and run.origin == delivery.message_id:
                # This very trigger started the run and crashed before handing over: carry on.
                if run.step > 0:
                    self._requeue_if_lost(job, run)
                else:
                    self._step(job, run, delivery)
                return
        started = self._start(job, msg, delivery.message_id)
        if started is not None:
            job, run = started
            self._step(job, run, delivery)

    # -- starting and stopping ---------------------------------------------------------

    def _start(self, job: Job, msg: dict[str, Any], origin: str) -> tuple[Job, Run] | None:
        who = msg.get("requested_by")
        if job.status is not JobStatus.SLEEPING:
            self._log(job, "info", "run.trigger_ignored",
                      f"{msg['trigger']} ignored: the job is {job.status.value}")
            return None
        now = self.o.now()
        if msg["trigger"] == "schedule" and job.schedule:
            from chalicelib.domain.schedules import in_quiet_hours

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
            if prev is not None and prev.status in ("paused", "retrying"):
                resumed = prev
        after = copy.deepcopy(job)
        after.status = transition(job.status, Action.RUN_STARTED)
        lines = []
        if resumed is not None:
            run = resumed
            run.status = "running"
            run.origin = origin
            tx = self.d.transaction()
            self.d.runs.add_status(tx, run, "running", error=None, now=_iso(now), origin=origin)
            lines.append(LogLine("info", "run.resumed",
                                 f"run resumed at step {run.step} ({msg['trigger']})",
                                 run_id=run.id, user=who))
        else:
            run = Run(id=new_id("run"), job_id=job.id, account_id=job.account_id,
                      trigger=msg["trigger"], status="running", started_at=_iso(now),
                      requested_by=who, origin=origin)
            tx = self.d.transaction()
            self.d.runs.add_new_run(tx, run)
            lines.append(LogLine("info", "run.started", f"run started ({msg['trigger']})",
                                 run_id=run.id, user=who))
        after.current_run_id = run.id
        self.d.runs.add_logs(tx, job.account_id, job.id, lines, now)
        try:
            self.d.jobs.save(job, after, expected_version=None, expected_status=JobStatus.SLEEPING, tx=tx)
        except AuthorizationGone:
            self._log(job, "error", "run.authorization_deleted",
                      "the job's authorization was deleted; change it, then resume the job")
            return None
        except AppError:
            return None  # someone changed the job meanwhile (paused, edited): that change wins
        return after, run

    def _interrupt(self, job: Job, run: Run) -> None:
        """The job was paused (or deleted) while this run was between steps."""
        status = "paused" if job.status is JobStatus.PAUSED else "cancelled"
        logs.bind(run_id=run.id, step=run.step)
        log.info("run interrupted: the job is %s", job.status.value)
        # Refused when another delivery settled the run first: nothing left to do then.
        tx = self.d.transaction()
        self.d.runs.add_status(tx, run, status, error=None, now=_iso(self.o.now()), expect_step=run.step)
        self.d.runs.add_logs(tx, job.account_id, job.id,
                             [LogLine("info", f"run.{status}", f"run {status} at step {run.step}", run_id=run.id)],
                             self.o.now())
        with contextlib.suppress(TransactionFailed):
            tx.commit()

    def _requeue_if_lost(self, job: Job, run: Run) -> None:
        # The step was committed but its successor may not have been queued (crash between).
        if run.enqueued_step < run.step:
            self._continue(run)

    def _continue(self, run: Run) -> None:
        self.o.fault("before_enqueue")
        self._send({"account_id": run.account_id, "job_id": run.job_id, "trigger": "continue",
                    "run_id": run.id, "step": run.step})
        self.o.fault("after_enqueue")
        self.d.runs.mark_enqueued(run, run.step)

    def _send(self, msg: dict[str, Any], delay: float = 0) -> None:
        self.d.runs_queue.send(msg, delay_seconds=int(min(MAX_DELAY, max(0, delay))))

    # -- one step --------------------------------------------------------------------------

    def _step(self, job: Job, run: Run, delivery: Delivery) -> None:
        logs.bind(run_id=run.id, step=run.step, job_type=job.job_type.value, provider=job.provider)
        started = time.monotonic()
        budget = min(self.o.step_seconds, max(5.0, delivery.remaining_ms() / 1000 - 10))
        if not self.d.runs.acquire(run, delivery.message_id, int(budget) + LEASE_MARGIN):
            raise StepBusy(f"run {run.id} step {run.step} is being worked on")
        self.o.fault("after_lease")
        # -- export jobs: their steps live in services/export.py (docs/export.md) ----------
        if job.job_type.value == "export":
            from chalicelib.services.export import run_export_step

            run_export_step(self, job, run, delivery, started, budget)
            return
        # -- end of export dispatch ---------------------------------------------------------
        # -- enrichment jobs: services/enrichment.py (docs/providers/enrichment.md) ----------
        if job.job_type.value == "enrichment":
            from chalicelib.services.enrichment import run_enrichment_step

            run_enrichment_step(self, job, run, delivery, started, budget)
            return
        # -- end of enrichment dispatch ------------------------------------------------------
        # -- other jobs: one-step tasks, services/tasks.py (docs/engine.md) -----------------
        if job.job_type.value == "other":
            from chalicelib.services.tasks import run_task_step

            run_task_step(self, job, run, delivery, started, budget)
            return
        # -- end of other dispatch -----------------------------------------------------------
        calls = self.d.calls(job.authorization_id)
        app_calls = self.d.request_counter()
        try:
            provider = self.d.registry.get(job.provider)
            auth = self.d.auths.get(job.account_id, job.authorization_id)
            if auth is None:
                raise ProviderError("the job's authorization was deleted; change it, then resume")
            credentials = creds_svc.load(self.d, auth, provider.spec)
            impl = provider.import_step(job.workflow)  # type: ignore[attr-defined]
            ctx = StepContext(
                account_id=job.account_id, job_id=job.id, run_id=run.id, step=run.step,
                method=auth.method, credentials=credentials, config=job.config, cursor=run.cursor,
                state=job.state, max_records=self.o.max_records,
                deadline=started + budget, counter=calls,
            )
            result = impl.read(ctx)
        except ProviderError as exc:
            self._failed_step(job, run, delivery, exc, calls)
            return
        from chalicelib.domain import profiles as P

        mapping = P.Mapping.from_config(job.config)
        records = []
        reasons: Counter[str] = Counter()
        reasons["invalid"] += len(result.invalid)
        for row in result.rows:
            mapped = P.map_record(row.data, mapping, row.ref)
            if isinstance(mapped, P.Omitted):
                reasons[mapped.reason] += 1
            else:
                records.append(mapped)
        self.o.fault("before_write")
        repo = self.d.profiles
        outcomes = repo.upsert_batch(
            job.account_id, records, step_tag=f"{run.id}#{run.step}", rules=mapping.merge_rules
        )
        self.o.fault("after_write")
        added = sum(1 for o in outcomes if o in ("added", "updated"))
        reasons["unchanged"] += sum(1 for o in outcomes if o == "unchanged")
        reasons["too_large"] += sum(1 for o in outcomes if o == "too_large")
        reasons = Counter({k: v for k, v in reasons.items() if v})
        now = self.o.now()
        elapsed_ms = (time.monotonic() - started) * 1000
        cost = {f"aws_{k}": float(v) for k, v in app_calls.by_service().items()}
        stats = getattr(repo, "last_stats", None)
        if stats is not None:
            cost["dynamodb_rcu"] = float(stats.read_units)
            cost["dynamodb_wcu"] = float(stats.write_units)
        cost.update({
            "provider_calls": float(calls.total),
            "lambda_ms": round(elapsed_ms, 1),
            "lambda_gb_s": round(elapsed_ms / 1000 * delivery.memory_mb / 1024, 4),
            "steps": 1.0,
        })
        done = result.done
        commit = StepCommit(
            step=run.step, cursor=result.cursor, processed=result.processed, total=result.total,
            total_unit=result.total_unit,
            read=int(result.cursor.get("bytes_read", result.processed))
            if result.total_unit == "bytes" else result.processed,
            added=added, removed=0, omitted_reasons=dict(reasons),
            cost=cost, status="succeeded" if done else None,
        )
        omitted = sum(reasons.values())
        lines = [LogLine("info", "run.step", f"step {run.step}: {len(result.rows)} read, {added} added, "
                         f"{omitted} omitted", run_id=run.id,
                         context={"added": added, "removed": 0, "omitted": omitted,
                                  "omitted_reasons": dict(reasons), "processed": result.processed})]
        for ref, why in result.invalid[:5]:
            lines.append(LogLine("warning", "record.invalid", f"{ref}: {why}", run_id=run.id))
        tx = self.d.transaction()
        self.d.runs.add_commit(tx, run, delivery.message_id, commit, _iso(now))
        self.d.runs.add_activity(tx, job.account_id, job.id, now, added, 0, omitted)
        self.d.runs.add_requests(tx, job.account_id, job.authorization_id, now, calls.total, calls.error_total)
        if done:
            total_added = run.added + added
            total_omitted = run.omitted + omitted
            lines.append(LogLine("info", "run.succeeded",
                                 f"run finished: {total_added} added, {total_omitted} omitted",
                                 run_id=run.id, context={"added": total_added, "removed": run.removed,
                                                         "omitted": total_omitted}))
        self.d.runs.add_logs(tx, job.account_id, job.id, lines, now)
        try:
            if done:
                after = copy.deepcopy(job)
                after.status = transition(
                    job.status, Action.RUN_FINISHED_ONCE if is_one_time(job) else Action.RUN_SUCCEEDED
                )
                after.state = result.state
                after.current_run_id = None
                after.fault_count = 0
                after.first_fault_at = None
                after.next_run_at = self.d.next_run(job, now)
                total_cost = dict(run.cost)
                for k, v in cost.items():
                    total_cost[k] = round(total_cost.get(k, 0) + v, 4)
                after.last_run = {
                    "id": run.id, "status": "succeeded", "started_at": run.started_at,
                    "finished_at": _iso(now), "added": run.added + added, "removed": run.removed,
                    "omitted": run.omitted + omitted, "error": None, "cost": total_cost,
                }
                after.pending_alert = recovery_alert(job, run)
                self.d.jobs.save(job, after, expected_version=None, expected_status=JobStatus.RUNNING, tx=tx)
            else:
                tx.commit()
        except (AppError, TransactionFailed) as exc:
            self._commit_refused(job, run, exc)
            return
        count_requests(job, calls.total)
        log.info("step committed", extra={
            "read": len(result.rows), "added": added, "omitted": omitted, "done": done,
            "provider_calls": calls.total, "duration_ms": round(elapsed_ms, 1)})
        if done:
            self.finished(after)
        self.o.fault("after_commit")
        if not done:
            run.step += 1
            self._continue(run)

    def finished(self, after: Job) -> None:
        """A run succeeded and `after` is the job it committed: send its recovery alert, if
        the commit recorded one (`recovery_alert`)."""
        from chalicelib.store import metrics as M

        M.metrics().count(M.RUN_SUCCEEDED, provider=after.provider)
        self.send_alert(after)

    def send_alert(self, job: Job) -> bool:
        """Put the job's pending alert on the bus, then clear it (conditional on its
        transition id: a newer one stays). At least once: dying between the two sends it
        again with the same `transition_id`, which the alerts worker delivers once."""
        from chalicelib.services import alerts

        pending = job.pending_alert
        if not pending:
            return True
        detail = {**json.loads(pending["detail_json"]), "transition_id": pending["transition_id"]}
        if not alerts.emit(job.account_id, str(pending["type"]), detail):
            self._unsent = True
            return False
        self.d.jobs.clear_alert(job.account_id, job.id, str(pending["transition_id"]))
        job.pending_alert = None
        return True

    def _commit_refused(self, job: Job, run: Run, exc: Exception) -> None:
        """The commit's conditions failed: the step was already committed by an earlier
        delivery, or the job changed under us (paused, deleted). Re-read and settle."""
        fresh = self.d.runs.get(run.account_id, run.job_id, run.id)
        if fresh is None or fresh.step > run.step:
            return  # an earlier delivery committed it: nothing to add
        current = self.d.jobs.get(job.account_id, job.id, consistent=True)
        if current is None or current.status is not JobStatus.RUNNING:
            if current is not None:
                self._interrupt(current, fresh)
            return
        raise exc  # something else: let SQS redeliver

    # -- errors ------------------------------------------------------------------------------

    def _failed_step(self, job: Job, run: Run, delivery: Delivery, exc: ProviderError,
                     calls: CallCounter | None = None) -> None:
        now = self.o.now()
        first = _parse(job.first_fault_at) if job.first_fault_at else now
        after = copy.deepcopy(job)
        after.fault_count = job.fault_count + 1
        after.first_fault_at = _iso(first)
        give_up = (not exc.transient) or past_failure_window(first, now, job.failure_window_hours)
        if give_up:
            after.status = transition(job.status, Action.RUN_FAILED)
            after.current_run_id = None
            after.next_run_at = None
            why = ("a configuration or authorization error: no retry can fix it"
                   if not exc.transient else
                   f"errors kept happening for {job.failure_window_hours:g} h (the failure window)")
            code = "run.config_error" if not exc.transient else "run.failure_window_passed"
            run_status, delay = "failed", None
            message = f"run failed: {exc.reason} — {why}; fix it, then resume the job"
            from chalicelib.services import alerts

            after.pending_alert = pending_alert(alerts.JOB_FAILED, {
                "job_id": job.id, "label": job.label, "run_id": run.id, "reason": exc.reason,
                "fault_count": after.fault_count})
        else:
            after.status = transition(job.status, Action.RUN_ERRORED)
            delay = backoff_seconds(after.fault_count, retry_after=exc.retry_after)
            after.next_run_at = _iso(now + timedelta(seconds=delay))
            code, run_status = "run.transient_error", "retrying"
            message = (f"transient error: {exc.reason}; retry {after.fault_count} in "
                       f"{delay:.0f} s (run resumes from its last checkpoint)")
        after.last_run = {"id": run.id, "status": run_status, "started_at": run.started_at,
                          "finished_at": _iso(now) if give_up else None, "added": run.added,
                          "removed": run.removed, "omitted": run.omitted, "error": exc.reason}
        tx = self.d.transaction()
        self.d.runs.add_status(tx, run, run_status, error=exc.reason, now=_iso(now), expect_step=run.step)
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
            self._commit_refused(job, run, err)
            return
        if calls is not None:
            count_requests(job, calls.total)
        # The reason is the provider's words, redacted: the job's own log shows it to users.
        log.warning("step failed", extra={"code": code, "reason": exc.reason, "transient": exc.transient,
                                          "fault_count": after.fault_count})
        if give_up:
            from chalicelib.store import metrics as M

            M.metrics().count(M.RUN_FAILED, provider=job.provider)
        if give_up and job.schedule is not None:
            self.d.scheduler.remove(job.account_id, job.id)  # a failed job waits for a resume
        if give_up:
            self.send_alert(after)
        if exc.auth:
            # Known-bad credentials: say so on the authorization now, not at the next sweep.
            from chalicelib.services import health

            auth = self.d.auths.get(job.account_id, job.authorization_id, consistent=True)
            if auth is not None:
                health.mark_unhealthy_from_run(self.d, auth, exc.reason, run_id=run.id)
        if delay is not None:
            self._send({"account_id": job.account_id, "job_id": job.id, "trigger": "retry",
                        "not_before": after.next_run_at, "fault_count": after.fault_count}, delay=delay)

    def _log(self, job: Job, level: str, code: str, message: str) -> None:
        self.d.runs.write_logs(job.account_id, job.id, [LogLine(level, code, message)])
