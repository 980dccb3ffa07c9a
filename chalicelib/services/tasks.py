"""Runs of `other` jobs (docs/engine.md, "Other jobs"): one step that calls the workflow's
`run(ctx)` (e.g. install a tag in Google Tag Manager) and commits through the export
commit (services/export.py: `commit_step`), the engine's one transaction for the run's
status, counters, log lines and the job's state.

A task moves no profiles: its counters stay 0 and its log lines say what it did. The
step is done in one go; a redelivered step runs the task again, so tasks are idempotent
(the GTM tag is found by name and updated).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalicelib.domain.models import Job
from chalicelib.providers.base import ProviderError, StepContext, TaskStep
from chalicelib.services import credentials as creds_svc
from chalicelib.services.export import StepOutcome, commit_step
from chalicelib.store.runs import LogLine, Run

if TYPE_CHECKING:
    from chalicelib.services.engine import Delivery, Engine


def run_task_step(engine: Engine, job: Job, run: Run, delivery: Delivery, started: float,
                  budget: float) -> None:
    """The one step of a task run, under the lease the engine took."""
    calls = engine.d.calls(job.authorization_id)
    app_calls = engine.d.request_counter()
    try:
        provider = engine.d.registry.get(job.provider)
        make = getattr(provider, "task_step", None)
        if make is None:
            raise ProviderError(f"provider {job.provider!r} has no task step", field="workflow")
        impl: TaskStep = make(job.workflow)
        auth = engine.d.auths.get(job.account_id, job.authorization_id)
        if auth is None:
            raise ProviderError("the job's authorization was deleted; change it, then resume")
        # Loading refreshes an OAuth token about to expire (services/oauth.py).
        credentials = creds_svc.load(engine.d, auth, provider.spec)
        ctx = StepContext(
            account_id=job.account_id, job_id=job.id, run_id=run.id, step=run.step, method=auth.method,
            credentials=credentials, config=job.config, cursor=run.cursor, state=job.state,
            max_records=engine.o.max_records, deadline=started + budget, counter=calls,
        )
        # The same crash-injection points as the other steps' writes (docs/engine.md).
        engine.o.fault("before_write")
        result = impl.run(ctx)
        engine.o.fault("after_write")
    except ProviderError as exc:
        engine._failed_step(job, run, delivery, exc, calls)
        return
    lines = [LogLine("info", "run.task", message, run_id=run.id) for message in result.messages]
    out = StepOutcome(cursor={"state": result.state}, processed=1, total=1, done=True, lines=lines)
    commit_step(engine, job, run, delivery, started, out, app_calls.by_service(), calls)


__all__ = ["run_task_step"]
