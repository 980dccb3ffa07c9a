"""The step's single transaction: a stage's `StepOutcome` becomes the run's checkpoint and
counters (`StepCommit`), the activity and request counters and the step's log lines, all
conditional on the step number and the lease; the run's last step saves the job in the same
transaction (its `last_run`, the fault count reset, the next run). A crash before the commit
replays the step; a refused commit is settled by `RunControl.commit_refused`."""

from __future__ import annotations

import logging
import time
from datetime import datetime

from chalicelib.domain.errors import AppError
from chalicelib.domain.models import Job
from chalicelib.domain.runs import LogLine, Run, RunStatus, StepCommit
from chalicelib.domain.statuses import JobStatus
from chalicelib.providers.calls import CallCounter
from chalicelib.runs.control import Delivery, RunControl, count_requests, iso, recovery_alert
from chalicelib.runs.outcome import StepOutcome
from chalicelib.store.dynamo import TransactionFailed

log = logging.getLogger("switchyard.engine")


def step_cost(out: StepOutcome, app_calls: dict[str, int], calls: CallCounter, started: float,
              memory_mb: int) -> dict[str, float]:
    """The step's cost record: AWS requests by service, store units, provider calls, and
    the Lambda time and GB-seconds it took."""
    elapsed_ms = (time.monotonic() - started) * 1000
    cost = {f"aws_{k}": float(v) for k, v in app_calls.items()}
    cost.update(out.store_cost)
    cost.update({
        "provider_calls": float(calls.total),
        "lambda_ms": round(elapsed_ms, 1),
        "lambda_gb_s": round(elapsed_ms / 1000 * memory_mb / 1024, 4),
        "steps": 1.0,
    })
    return cost


def _finished_line(run: Run, out: StepOutcome) -> LogLine:
    added, removed = run.added + out.added, run.removed + out.removed
    omitted = run.omitted + out.omitted
    counts = f"{added} added, {removed} removed, {omitted} omitted" if out.reports_removed \
        else f"{added} added, {omitted} omitted"
    return LogLine("info", "run.succeeded", f"run finished: {counts}", run_id=run.id,
                   context={"added": added, "removed": removed, "omitted": omitted})


def _succeeded(ctl: RunControl, job: Job, run: Run, out: StepOutcome, cost: dict[str, float],
               now: datetime) -> Job:
    """The job once this run succeeded: its state, `last_run` with the run's total cost, the
    fault count reset and its next run."""
    last = run.summary(RunStatus.SUCCEEDED, iso(now), added=out.added, removed=out.removed,
                       omitted=out.omitted, cost=cost)
    return job.run_succeeded(state=out.state, last_run=last, next_run_at=ctl.d.next_run(job, now),
                             pending_alert=recovery_alert(job, run))


def commit_step(ctl: RunControl, job: Job, run: Run, delivery: Delivery, started: float, out: StepOutcome,
                app_calls: dict[str, int], calls: CallCounter) -> None:
    """Commit the step in one transaction, then queue the next step or finish the run."""
    d = ctl.d
    now = ctl.o.now()
    cost = step_cost(out, app_calls, calls, started, delivery.memory_mb)
    commit = StepCommit(
        step=run.step, cursor=out.cursor, processed=out.processed, total=out.total, total_unit=out.total_unit,
        read=out.processed if out.read is None else out.read, added=out.added, removed=out.removed,
        omitted_reasons=dict(out.omitted_reasons), cost=cost, status=RunStatus.SUCCEEDED if out.done else None,
    )
    tx = d.transaction()
    d.runs.add_commit(tx, run, delivery.message_id, commit, iso(now))
    d.runs.add_activity(tx, job.account_id, job.id, now, out.added, out.removed, out.omitted)
    d.runs.add_requests(tx, job.account_id, job.authorization_id, now, calls.total, calls.error_total)
    lines = list(out.lines)
    if out.done:
        lines.append(_finished_line(run, out))
    d.runs.add_logs(tx, job.account_id, job.id, lines, now)
    try:
        if out.done:
            after = _succeeded(ctl, job, run, out, cost, now)
            d.jobs.save(job, after, expected_version=None, expected_status=JobStatus.RUNNING, tx=tx)
        else:
            tx.commit()
    except (AppError, TransactionFailed) as exc:
        ctl.commit_refused(job, run, exc)
        return
    count_requests(job, calls.total)
    if out.summary is not None:
        log.info("step committed", extra={**out.summary, "provider_calls": calls.total,
                                          "duration_ms": cost["lambda_ms"]})
    if out.done:
        ctl.finished(after)
    ctl.o.fault("after_commit")
    if not out.done:
        run.step += 1
        ctl.continue_run(run)
    elif out.after_success is not None:
        out.after_success()
