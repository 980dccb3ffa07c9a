"""Runs of `other` jobs (docs/engine.md, "Other jobs"): one step that calls the workflow's
`run(ctx)` (e.g. install a tag in Google Tag Manager); the run's one commit
(chalicelib/runs/commit.py) writes the run's status, counters, log lines and the job's state.

A task moves no profiles: its counters stay 0 and its log lines say what it did. The
step is done in one go; a redelivered step runs the task again, so tasks are idempotent
(the GTM tag is found by name and updated).
"""

from __future__ import annotations

from chalicelib.domain.models import Job
from chalicelib.domain.runs import LogLine, Run
from chalicelib.providers.calls import CallCounter
from chalicelib.runs.control import Delivery, RunControl, step_context
from chalicelib.runs.outcome import StepOutcome


def task_stage(ctl: RunControl, job: Job, run: Run, delivery: Delivery, started: float, budget: float,
               calls: CallCounter) -> StepOutcome:
    """The one step of a task run, under the lease the engine took; the engine commits what
    it returns."""
    impl = ctl.d.registry.task(job.provider, job.workflow)
    ctx = step_context(ctl, job, run, started, budget, calls)
    # The same crash-injection points as the other steps' writes (docs/engine.md).
    ctl.o.fault("before_write")
    result = impl.run(ctx)
    ctl.o.fault("after_write")
    lines = [LogLine("info", "run.task", message, run_id=run.id) for message in result.messages]
    return StepOutcome(cursor={"state": result.state}, processed=1, total=1, done=True, state=result.state,
                       lines=lines)


__all__ = ["task_stage"]
