"""Use cases of jobs: the four-step create, edit, change of authorization, actions, delete."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from chalicelib.domain.access import Capability, Principal
from chalicelib.domain.audit import AuditEvent, diff
from chalicelib.domain.catalog import WorkflowSpec
from chalicelib.domain.errors import Conflict, Invalid, not_found, stale_version
from chalicelib.domain.ids import new_id
from chalicelib.domain.models import Authorization, CheckResult, Job
from chalicelib.domain.rules import (
    change_authorization_problems,
    ensure_authorization_fits,
    ensure_method_enables,
    ensure_mutable,
    resolve_workflow,
)
from chalicelib.domain.runs import RESUMABLE, LogLine, RunStatus
from chalicelib.domain.schedules import is_realtime, next_fires, pending_start
from chalicelib.domain.statuses import Action, JobStatus, initial_status
from chalicelib.providers.base import Provider
from chalicelib.providers.calls import CallCounter
from chalicelib.services import authorizations as auth_svc
from chalicelib.services import credentials as creds_svc
from chalicelib.services import realtime
from chalicelib.services.collect import bind_write_key, key_in_use
from chalicelib.services.validation import validate
from chalicelib.store.dynamo import Page, now_iso
from chalicelib.store.jobs import AuthorizationGone
from chalicelib.store.unit_of_work import UnitOfWork

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.services.needs import JobsNeeds


@dataclass(frozen=True)
class NewJob:
    provider: str
    job_type: str
    workflow: str
    label: str
    description: str
    config: dict[str, Any]
    schedule: dict[str, Any] | None
    start: bool
    authorization_id: str | None = None
    authorization: auth_svc.NewAuthorization | None = None
    failure_window_hours: float = 10.0


@dataclass
class EditResult:
    job: Job
    dry_run: bool = False
    problems: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)


def _config(wf: WorkflowSpec, raw: dict[str, Any]) -> dict[str, Any]:
    model = validate(wf.config_model, raw, prefix="config", what="configuration")
    dumped: dict[str, Any] = model.model_dump(mode="json")  # type: ignore[attr-defined]
    return dumped


def _resources(wf: WorkflowSpec, config: dict[str, Any]) -> dict[str, str]:
    return {f: str(config[f]) for f in wf.resource_fields if config.get(f)}


def _refuse_unreachable(provider: Provider, check: CheckResult, field_name: str) -> Invalid:
    """A configured resource out of reach is the configuration's fault (marked at its field);
    refused credentials are the authorization's."""
    if check.resource:
        return Invalid(
            f"the authorization cannot reach what this job is configured with: {check.reason}",
            code="job.config_unreachable",
            fields={f"{field_name}.{check.resource}": check.reason or "cannot be reached"},
            details={"reason": check.reason, "provider": provider.spec.id, "problem": "config"},
        )
    return Invalid(
        f"{provider.spec.name} no longer accepts this authorization's credentials: {check.reason}",
        code="job.config_unreachable",
        fields={"authorization_id": check.reason or "credentials refused"},
        details={"reason": check.reason, "provider": provider.spec.id, "problem": "auth"},
    )


@dataclass
class _Checked:
    """A new job that passed every check a create makes, nothing written yet."""

    provider: Provider
    wf: WorkflowSpec
    config: dict[str, Any]
    auth: Authorization
    inline: tuple[Authorization, dict[str, Any]] | None
    calls: CallCounter
    provider_account: str | None


def _auth_not_found(auth_id: str) -> Invalid:
    return Invalid(f"authorization {auth_id!r} was not found", code="authorization.not_found",
                   fields={"authorization_id": "not found"})


def _check_new(d: JobsNeeds, p: Principal, new: NewJob) -> _Checked:
    provider = d.registry.for_request(new.provider)
    wf = resolve_workflow(provider.spec, new.job_type, new.workflow)
    realtime.check_schedule(provider.spec.id, wf.job_type, new.schedule)
    if (new.authorization_id is None) == (new.authorization is None):
        raise Invalid(
            "give either authorization_id (an existing authorization) or authorization (a new one)",
            code="job.authorization_required",
            fields={"authorization_id": "give this or authorization, not both"},
        )
    config = _config(wf, new.config)
    resources = _resources(wf, config)
    inline: tuple[Authorization, dict[str, Any]] | None = None
    # The check's provider requests, recorded in the create's own transaction (no extra write).
    calls = d.calls()
    if new.authorization is not None:
        ensure_method_enables(wf, new.authorization.method, field_name="authorization.method")
        inline = auth_svc.prepare(
            d,
            p,
            auth_svc.NewAuthorization(
                provider=provider.spec.id,
                method=new.authorization.method,
                label=new.authorization.label,
                description=new.authorization.description,
                credentials=new.authorization.credentials,
            ),
            resources=resources,
            field_prefix="authorization.",
            counter=calls,
        )
        auth = inline[0]
        provider_account = auth.provider_account
    else:
        assert new.authorization_id is not None
        # Its secret is read while the authorization is: the check needs both.
        ahead = creds_svc.SecretAhead(d, p.account_id, new.authorization_id)
        try:
            found = d.auths.get(p.account_id, new.authorization_id)
            if found is None:
                raise _auth_not_found(new.authorization_id)
            auth = found
            ensure_authorization_fits(auth, provider.spec, wf, field_name="authorization_id")
            calls.authorization_id = auth.id
            try:
                check = auth_svc.check_for_job(d, auth, provider, resources, counter=calls, ahead=ahead)
            except Exception:
                auth_svc.record_requests(d, p.account_id, auth.id, calls)
                raise
        finally:
            ahead.settle()  # never left in flight past the request
        if not check.ok:
            auth_svc.record_requests(d, p.account_id, auth.id, calls)
            raise _refuse_unreachable(provider, check, "config")
        provider_account = check.provider_account or auth.provider_account

    return _Checked(provider, wf, config, auth, inline, calls, provider_account)


def preview(d: JobsNeeds, p: Principal, new: NewJob, *, count: int = 3) -> list[str]:
    """Every check a create makes, nothing written: the refusal a create would give, or the
    next `count` run starts of the schedule (UTC). The wizard calls it before Review."""
    p.require(Capability.MANAGE_INTEGRATIONS)
    checked = _check_new(d, p, new)
    if checked.inline is None:
        auth_svc.record_requests(d, p.account_id, checked.auth.id, checked.calls)  # the check's requests
    return next_runs(new.schedule, count=count)


def next_runs(schedule: dict[str, Any] | None, *, count: int = 3) -> list[str]:
    """The next `count` run starts of a schedule (UTC), computed in its own time zone; now
    when there is no schedule."""
    now = datetime.now(UTC)
    if schedule is None:
        return [_utc_iso(now)]
    return [_utc_iso(at) for at in next_fires(schedule, now, count)]


def create(d: JobsNeeds, p: Principal, new: NewJob) -> tuple[Job, Authorization]:
    """Provider -> job type -> authorization -> configure (SPEC rule 2), then start or stage."""
    p.require(Capability.MANAGE_INTEGRATIONS)
    checked = _check_new(d, p, new)
    provider, wf, config, auth = checked.provider, checked.wf, checked.config, checked.auth
    inline, calls, provider_account = checked.inline, checked.calls, checked.provider_account

    now = now_iso()
    status = initial_status(new.start)
    start_at = pending_start(new.schedule, datetime.now(UTC))
    job = Job(
        id=new_id("job"),
        account_id=p.account_id,
        provider=provider.spec.id,
        job_type=wf.job_type,
        workflow=wf.id,
        authorization_id=auth.id,
        authorization_label=auth.label,
        label=new.label,
        description=new.description,
        config=config,
        schedule=new.schedule,
        status=status,
        owner=p.user_id,
        created_at=now,
        updated_at=now,
        provider_account=provider_account,
        next_run_at=(_utc_iso(start_at) if start_at else now) if new.start else None,
        failure_window_hours=new.failure_window_hours,
    )
    verb = "created and started" if new.start else "created (staged, paused)"
    tx = _recorded(d, job, "job.created", f"job {verb} by {p.user_id}", p, "created")
    if wf.pushed:
        bind_write_key(d, tx, job, auth, inline=inline is not None)
    realtime.add_subscription_writes(d, tx, None, job)
    d.runs.add_requests(tx, p.account_id, auth.id, datetime.now(UTC), calls.total, calls.error_total)
    if inline is not None:
        # An inline authorization is audited like one made on the dashboard, in the same write.
        auth_svc.audit_created_in(d, tx, p, inline[0])
        auth_svc.store_secret(d, inline[0], inline[1])
        try:
            d.jobs.create(job, new_auth=inline[0], auth_provider=provider.spec.id, tx=tx)
        except Exception:
            d.secrets.delete_now(inline[0].secret_name)
            raise
    else:
        try:
            _create_on_existing(d, job, provider.spec.id, tx)
        except Conflict as exc:
            auth_svc.record_requests(d, p.account_id, auth.id, calls)
            if wf.pushed and exc.code == "conflict.concurrent_change":
                raise key_in_use(auth) from None
            raise
        except Exception:
            auth_svc.record_requests(d, p.account_id, auth.id, calls)  # the requests were made
            raise
    _sync_schedule(d, job)
    if new.start and is_realtime(job.schedule):
        realtime.nudge_job(d, job)  # sends the audience's log so far
    elif new.start and start_at is None and not wf.pushed:
        _queue_run(d, job, "create", p)
    return job, auth


def _sync_schedule(d: JobsNeeds, job: Job, *, was_scheduled: bool = False) -> None:
    """Keep the job's EventBridge Scheduler schedule in step with its status and schedule.

    Called after the DynamoDB write commits; jobs that never had a schedule cost nothing.
    A failure surfaces (503) and the next sync repairs it; the runner drops triggers for
    jobs that are not active, so a stale schedule cannot run a paused job.
    """
    if job.schedule is None and not was_scheduled:
        return
    active = job.status in (JobStatus.SLEEPING, JobStatus.RUNNING)
    d.scheduler.sync(job.account_id, job.id, job.schedule, active)


def _recorded(d: JobsNeeds, job: Job, code: str, message: str, p: Principal, action: str | None,
              context: dict[str, Any] | None = None, *, audited: Job | None = None,
              before: Job | None = None) -> UnitOfWork:
    """A transaction for a user's change to a job, holding the log line that tells of it and
    (unless `action` is None) its audit event: both are written with the change."""
    tx = d.transaction()
    line = LogLine("info", code, message, user=p.user_id, context=context or {})
    d.runs.add_logs(tx, job.account_id, job.id, [line], datetime.now(UTC))
    if action is not None:
        after = audited or job
        # A creation records the values it started with; other events what changed.
        changes = diff(_audited(before), _audited(after)) if (before or action == "created") else {}
        d.audit.add(tx, AuditEvent(p.account_id, p.user_id, action, "job", after.id, after.label, changes))
    return tx


def _audited(job: Job | None) -> dict[str, Any]:
    # Job config holds no secrets (credentials live in the authorization's secret).
    if job is None:
        return {}
    return {"label": job.label, "description": job.description, "config": job.config,
            "schedule": job.schedule, "authorization_id": job.authorization_id,
            "status": job.status.value}


def _create_on_existing(d: JobsNeeds, job: Job, provider_id: str, tx: UnitOfWork) -> None:
    try:
        d.jobs.create(job, auth_provider=provider_id, tx=tx)
    except AuthorizationGone:
        # Deleted between our read and our write: the transaction refused to link them.
        raise Invalid(
            f"authorization {job.authorization_id!r} was deleted meanwhile",
            code="authorization.not_found",
            fields={"authorization_id": "not found"},
        ) from None


def _utc_iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _queue_run(d: JobsNeeds, job: Job, trigger: str, p: Principal) -> None:
    d.runs_queue.send(
        {
            "account_id": job.account_id,
            "job_id": job.id,
            "trigger": trigger,
            "requested_by": p.user_id,
            "requested_at": now_iso(),
        }
    )


def get(d: JobsNeeds, p: Principal, job_id: str) -> Job:
    p.require(Capability.READ)
    job = d.jobs.get(p.account_id, job_id)
    if job is None:
        raise not_found("job", job_id)
    return job


def summary(d: JobsNeeds, p: Principal, job_id: str) -> tuple[Job, Authorization | None]:
    job = get(d, p, job_id)
    return job, authorization_of(d, p, job)


def authorization_of(d: JobsNeeds, p: Principal, job: Job) -> Authorization | None:
    """The job's authorization, for its summary (None once deleted: a finished job outlives it)."""
    p.require(Capability.READ)
    return d.auths.get(p.account_id, job.authorization_id)


def list_(d: JobsNeeds, p: Principal, *, limit: int, cursor: str | None, **filters: str | None) -> Page:
    p.require(Capability.READ)
    return d.jobs.page(p.account_id, limit=limit, cursor=cursor, **filters)


def authorizations_of(d: JobsNeeds, p: Principal, jobs: list[Job]) -> dict[str, Authorization]:
    """The authorizations of a page of jobs (one BatchGetItem), for their health."""
    return d.auths.get_many(p.account_id, (j.authorization_id for j in jobs))


def edit(
    d: JobsNeeds,
    p: Principal,
    job_id: str,
    patch: dict[str, Any],
    version: int | None,
    *,
    dry_run: bool = False,
) -> EditResult:
    """Label, description, config, schedule and authorization may change; nothing else."""
    p.require(Capability.MANAGE_INTEGRATIONS)
    ensure_mutable(patch)
    job = get(d, p, job_id)
    if version is None:
        raise Invalid(
            "send the version you edited (If-Match header or 'version' in the body)",
            code="validation.version_required",
            fields={"version": "required"},
        )
    if version != job.version:
        raise stale_version("job", version)
    provider = d.registry.get(job.provider)
    wf = provider.spec.workflow(job.workflow)
    after, changes = job.edited(patch)
    if "schedule" in changes:
        realtime.check_schedule(job.provider, job.job_type, after.schedule)
    if "config" in patch:
        merged = {**job.config, **patch["config"]}
        merged = {k: v for k, v in merged.items() if v is not None}
        after = after.reconfigured(_config(wf, merged))
        if after.config != job.config:
            changes.append("config")

    problems: list[str] = []
    new_auth_id = patch.get("authorization_id")
    target: Authorization | None = None
    if new_auth_id and new_auth_id != job.authorization_id and wf.pushed:
        raise Invalid("a collection job keeps the write key it was created with: rotate that key instead "
                      "(PUT /authorizations/{id}/credentials)", code="job.write_key_fixed",
                      fields={"authorization_id": "cannot change on a collection job; rotate its key"})
    if new_auth_id and new_auth_id != job.authorization_id:
        target = d.auths.get(p.account_id, new_auth_id)
        if target is None:
            raise _auth_not_found(new_auth_id)
        check = None
        if target.provider == job.provider:
            check = auth_svc.check_for_job(d, target, provider, _resources(wf, after.config))
        problems = change_authorization_problems(job, target, provider.spec, wf, check)
        after = after.reauthorized(target, check.provider_account if check is not None else None)
        changes.append("authorization_id")
    elif "config" in changes and _resources(wf, after.config) != _resources(wf, job.config):
        current = d.auths.get(p.account_id, job.authorization_id)
        if current is not None:
            check = auth_svc.check_for_job(d, current, provider, _resources(wf, after.config))
            if not check.ok:
                raise _refuse_unreachable(provider, check, "config")

    if dry_run:
        return EditResult(job=after, dry_run=True, problems=problems, changes=changes)
    if problems:
        raise Invalid(
            "this authorization cannot take over the job: " + "; ".join(problems),
            code="job.authorization_incompatible",
            fields={"authorization_id": problems[0]},
            details={"problems": problems},
        )
    if not changes:
        return EditResult(job=job)
    action = "reauthorized" if "authorization_id" in changes else "changed"
    tx = _recorded(d, job, "job.edited", f"{', '.join(changes)} changed by {p.user_id}", p, action,
                   {"changes": changes}, audited=after, before=job)
    follows_anew = realtime.add_subscription_writes(d, tx, job, after)
    try:
        saved = d.jobs.save(job, after, expected_version=version, tx=tx)
    except AuthorizationGone:
        raise Invalid(
            f"authorization {after.authorization_id!r} was deleted meanwhile",
            code="authorization.not_found",
            fields={"authorization_id": "not found"},
        ) from None
    if "schedule" in changes:
        _sync_schedule(d, saved, was_scheduled=job.schedule is not None)
    if follows_anew and saved.status in (JobStatus.SLEEPING, JobStatus.RUNNING):
        realtime.nudge_job(d, saved)
    return EditResult(job=saved, changes=changes)


def act(d: JobsNeeds, p: Principal, job_id: str, action: Action, *, resync: bool = False) -> Job:
    """Pause, resume, run now: transitions declared in domain.statuses, written conditionally.
    Run now with `resync` re-sends an export's whole audience (docs/export.md, "Re-send everything")."""
    p.require(Capability.MANAGE_INTEGRATIONS)
    job = get(d, p, job_id)
    pushed = d.registry.get(job.provider).spec.workflow(job.workflow).pushed
    if resync and job.job_type.value != "export":
        raise Invalid("only export jobs can send their audience again; this job "
                      f"{'collects' if pushed else 'is an ' + job.job_type.value + ' job'}",
                      code="job.resync_unsupported",
                      fields={"resync": "only export jobs can re-send their audience"})
    if pushed and action is Action.RUN_NOW:
        raise Conflict("a collection job runs as events arrive; it cannot be run now",
                       code="job.continuous", details={"status": job.status.value})
    if is_realtime(job.schedule) and action is Action.RUN_NOW and not resync:
        raise Conflict("a real-time job sends changes as they happen; it cannot be run now",
                       code="job.continuous", details={"status": job.status.value})
    if resync:
        return _resync(d, p, job)
    # A one-time job resumed before its start time waits for it; run now never waits.
    start_at = pending_start(job.schedule, datetime.now(UTC)) if action is Action.RESUME else None
    after = job.acted(action, now_iso(), _utc_iso(start_at) if start_at else None)
    new_status = after.status
    past = {"pause": "paused", "resume": "resumed", "run": "asked to run now"}[action.value]
    tx = _recorded(d, job, f"job.{action.value}", f"job {past} by {p.user_id}", p,
                   past.split()[0] if action is not Action.RUN_NOW else "run",
                   {"from": job.status.value, "to": new_status.value}, audited=after, before=job)
    saved = _save_acted(d, job, after, tx)
    if action in (Action.PAUSE, Action.RESUME):
        _sync_schedule(d, saved)
    if action is Action.RESUME and is_realtime(saved.schedule):
        realtime.nudge_job(d, saved)  # drains the backlog kept while paused or failed
    elif action in (Action.RESUME, Action.RUN_NOW) and start_at is None and not pushed:
        _queue_run(d, saved, action.value, p)
    return saved


def _save_acted(d: JobsNeeds, job: Job, after: Job, tx: UnitOfWork) -> Job:
    try:
        return d.jobs.save(job, after, expected_version=None, expected_status=job.status, tx=tx)
    except AuthorizationGone:
        raise Conflict(
            f"the job's authorization {job.authorization_id!r} was deleted; "
            "change the job's authorization before resuming it",
            code="job.authorization_deleted",
            details={"status": job.status.value},
        ) from None


def _resync(d: JobsNeeds, p: Principal, job: Job) -> Job:
    """Run now, re-sending every member: the marker, the status change, the log line, the
    audit event and the cancel of a run waiting to be resumed are one conditional write, so
    no run can start between what was read and what is written. The marker leaves only with
    the last commit of the run that serves it: a crash or a failure keeps it for the next run."""
    live = is_realtime(job.schedule)
    if live:
        # A real-time job has no runs: it stays as it is while its delivery re-sends.
        if not realtime.delivering(job):
            raise Conflict(f"cannot re-send for a job that is {job.status.value}; resume it first",
                           code="job.illegal_transition",
                           details={"status": job.status.value, "action": "resync"})
        acted = job
    else:
        acted = job.acted(Action.RUN_NOW, now_iso())
    waiting = d.runs.get(job.account_id, job.id, job.current_run_id) if job.current_run_id and not live else None
    drop = waiting is not None and waiting.status in RESUMABLE
    marker = {"id": new_id("rsy"), "requested_at": now_iso(), "requested_by": p.user_id}
    after = acted.resync_asked(marker, drop_run=drop)
    tx = _recorded(d, job, "job.resync", f"job asked to re-send every member by {p.user_id}", p, "resync",
                   {"resync_id": marker["id"], "cancelled_run": waiting.id if drop and waiting else None})
    if drop and waiting is not None:
        # Its checkpoint plans only what changed; a fresh run plans everything.
        d.runs.add_status(tx, waiting, RunStatus.CANCELLED, error=None, now=now_iso(), expect_step=waiting.step)
        d.runs.add_logs(tx, job.account_id, job.id, [LogLine(
            "info", "run.cancelled", "run cancelled: replaced by a re-send of every member",
            run_id=waiting.id, user=p.user_id)], datetime.now(UTC))
    saved = _save_acted(d, job, after, tx)
    if live:
        realtime.nudge_job(d, saved)
    else:
        _queue_run(d, saved, "run", p)
    return saved


def delete(d: JobsNeeds, p: Principal, job_id: str) -> None:
    p.require(Capability.MANAGE_INTEGRATIONS)
    job = get(d, p, job_id)
    tx = d.transaction()
    d.audit.add(tx, AuditEvent(p.account_id, p.user_id, "deleted", "job", job.id, job.label, {}))
    # The job's alert rules go in the same transaction: none outlives its job.
    d.alert_rules.add_deletes_for_job(tx, job.account_id, job.id)
    realtime.add_subscription_writes(d, tx, job, None)
    d.jobs.delete(job, tx=tx)
    if job.schedule is not None:
        d.scheduler.remove(job.account_id, job.id)


def runs(d: JobsNeeds, p: Principal, job_id: str, *, limit: int, cursor: str | None) -> Page:
    get(d, p, job_id)
    return d.runs.page(p.account_id, job_id, limit=limit, cursor=cursor)


def logs(d: JobsNeeds, p: Principal, job_id: str, *, limit: int, cursor: str | None,
         level: str | None) -> Page:
    get(d, p, job_id)
    return d.runs.logs(p.account_id, job_id, limit=limit, cursor=cursor, level=level)


def activity(d: JobsNeeds, p: Principal, job_id: str, granularity: str) -> list[dict[str, Any]]:
    get(d, p, job_id)
    return d.runs.activity(p.account_id, job_id, granularity)
