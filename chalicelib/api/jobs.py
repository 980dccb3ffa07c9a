"""Jobs: dashboard, the create wizard's final step, summary, edit, actions, delete, history."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Response

from chalicelib.api import views
from chalicelib.api.auth import token_authorizer
from chalicelib.api.http import PAGING, QueryParam, no_content, ok, route, version_of
from chalicelib.bootstrap import deps
from chalicelib.domain.access import Principal
from chalicelib.domain.errors import Invalid
from chalicelib.domain.rules import ensure_mutable
from chalicelib.domain.statuses import Action
from chalicelib.services import authorizations as auth_svc
from chalicelib.services import collect as collect_svc
from chalicelib.services import jobs as svc
from chalicelib.services import realtime
from chalicelib.services.validation import validate

bp = Blueprint(__name__)
TAG = "jobs"
STATUSES = ("running", "sleeping", "paused", "failed", "completed")
JOB_TYPES = ("import", "export", "enrichment", "other")


def _schemas() -> Any:
    from chalicelib.api import job_schemas

    return job_schemas


@route(bp, "/jobs", "GET", summary="Jobs dashboard", tag=TAG, authorizer=token_authorizer,
       response="JobRow", list_response=True,
       query=(QueryParam("status", enum=STATUSES), QueryParam("provider"),
              QueryParam("job_type", enum=JOB_TYPES), QueryParam("authorization_id"), *PAGING))
def list_jobs(principal: Principal, query: dict[str, Any]) -> Response:
    page = svc.list_(deps(), principal, limit=query["limit"], cursor=query["cursor"],
                     status=query["status"], provider=query["provider"],
                     job_type=query["job_type"], authorization_id=query["authorization_id"])
    # One BatchGetItem puts each row's authorization health next to it.
    auths = svc.authorizations_of(deps(), principal, page.items)
    return ok([views.job_row(j, auths.get(j.authorization_id)) for j in page.items],
              next_cursor=page.next_cursor, paged=True)


def _new_job(body: dict[str, Any]) -> svc.NewJob:
    req = validate(_schemas().JobCreate, body)
    inline = None
    if req.authorization is not None:
        inline = auth_svc.NewAuthorization(
            provider=req.provider, method=req.authorization.method, label=req.authorization.label,
            description=req.authorization.description, credentials=req.authorization.credentials)
    return svc.NewJob(
        provider=req.provider, job_type=req.job_type, workflow=req.workflow,
        label=req.label, description=req.description, config=req.config,
        schedule=req.schedule.model_dump(mode="json") if req.schedule else None,
        start=req.start, authorization_id=req.authorization_id, authorization=inline,
        failure_window_hours=req.failure_window_hours)


@route(bp, "/jobs", "POST", summary="Create a job (provider, job type, authorization, config)",
       tag=TAG, authorizer=token_authorizer, body="JobCreate", response="JobSummary", status=201,
       errors=(400, 413, 422))
def create_job(principal: Principal, body: dict[str, Any], query: dict[str, Any]) -> Response:
    job, auth = svc.create(deps(), principal, _new_job(body))
    return ok(views.job_summary(job, auth), 201)


@route(bp, "/jobs/preview", "POST",
       summary="Check a job before creating it: the refusal a create would give (422, at the fields), "
               "or the next 3 run starts of its schedule; nothing is written",
       tag=TAG, authorizer=token_authorizer, body="JobCreate", response="JobCheckOut",
       errors=(400, 413, 422, 503))
def preview_job(principal: Principal, body: dict[str, Any], query: dict[str, Any]) -> Response:
    return ok({"valid": True, "next_runs": svc.preview(deps(), principal, _new_job(body))})


@route(bp, "/jobs/{job_id}", "GET", summary="Job summary", tag=TAG, authorizer=token_authorizer,
       response="JobSummary", errors=(404,))
def get_job(principal: Principal, job_id: str, query: dict[str, Any]) -> Response:
    d = deps()
    job, auth = svc.summary(d, principal, job_id)
    return ok({**views.job_summary(job, auth, lag_seconds=realtime.lag_seconds(d, job)),
               **collect_svc.totals_of(d, job)})


@route(bp, "/jobs/{job_id}", "PATCH",
       summary="Edit label, description, config, schedule or authorization (If-Match: version)",
       tag=TAG, authorizer=token_authorizer, body="JobPatch", response="JobSummary", also=("JobEditPreview",),
       errors=(400, 404, 409, 422), query=(QueryParam("dry_run", "boolean", default=False),))
def patch_job(principal: Principal, job_id: str, body: dict[str, Any], query: dict[str, Any]) -> Response:
    ensure_mutable(body)  # before schema validation: a clearer answer than "unknown field"
    version = version_of(bp.current_request, body)
    req = validate(_schemas().JobPatch, body)
    patch = req.model_dump(mode="json", exclude_unset=True)
    null = [k for k in ("label", "description", "config", "authorization_id", "failure_window_hours")
            if k in patch and patch[k] is None]
    if null:
        raise Invalid("these fields cannot be null", fields={k: "cannot be null" for k in null})
    result = svc.edit(deps(), principal, job_id, patch, version, dry_run=query["dry_run"])
    auth = svc.authorization_of(deps(), principal, result.job)
    summary = views.job_summary(result.job, auth)
    if result.dry_run:
        return ok({"dry_run": True, "allowed": not result.problems, "problems": result.problems,
                   "changes": result.changes, "job": summary,
                   "next_runs": svc.next_runs(result.job.schedule)})
    return ok(summary)


@route(bp, "/jobs/{job_id}", "DELETE", summary="Delete a job", tag=TAG,
       authorizer=token_authorizer, status=204, errors=(404,))
def delete_job(principal: Principal, job_id: str, query: dict[str, Any]) -> Response:
    svc.delete(deps(), principal, job_id)
    return no_content()


def _action(action: Action, summary: str) -> None:
    path = f"/jobs/{{job_id}}/{'run' if action is Action.RUN_NOW else action.value}"
    run = action is Action.RUN_NOW

    # Only run now takes a body, and an optional one: no body is today's run now.
    @route(bp, path, "POST", summary=summary, tag=TAG, authorizer=token_authorizer,
           response="JobSummary", errors=(404, 409, 422) if run else (404, 409),
           body="JobRunRequest" if run else None, body_required=False)
    def act(principal: Principal, job_id: str, query: dict[str, Any], body: dict[str, Any] | None = None) -> Response:
        resync = bool(validate(_schemas().JobRunRequest, body).resync) if run else False
        job = svc.act(deps(), principal, job_id, action, resync=resync)
        return ok(views.job_summary(job, svc.authorization_of(deps(), principal, job)))

    act.__name__ = f"job_{action.value}"


_action(Action.PAUSE, "Pause a job")
_action(Action.RESUME, "Resume a paused or failed job")
_action(Action.RUN_NOW, "Run a sleeping job now; an export job can be asked to re-send every member "
                        "(body {\"resync\": true})")


@route(bp, "/jobs/{job_id}/runs", "GET", summary="Run history, newest first", tag=TAG,
       authorizer=token_authorizer, response="RunOut", list_response=True, errors=(404,),
       query=PAGING)
def job_runs(principal: Principal, job_id: str, query: dict[str, Any]) -> Response:
    page = svc.runs(deps(), principal, job_id, limit=query["limit"], cursor=query["cursor"])
    return ok([views.run(r) for r in page.items], next_cursor=page.next_cursor, paged=True)


@route(bp, "/jobs/{job_id}/logs", "GET", summary="Log lines, newest first", tag=TAG,
       authorizer=token_authorizer, response="LogLineOut", list_response=True, errors=(404,),
       query=(QueryParam("level", enum=("debug", "info", "warning", "error")), *PAGING))
def job_logs(principal: Principal, job_id: str, query: dict[str, Any]) -> Response:
    page = svc.logs(deps(), principal, job_id, limit=query["limit"], cursor=query["cursor"],
                    level=query["level"])
    return ok([views.log_line(row) for row in page.items], next_cursor=page.next_cursor, paged=True)


@route(bp, "/jobs/{job_id}/activity", "GET", summary="Profiles added, removed, omitted", tag=TAG,
       authorizer=token_authorizer, response="JobActivity", errors=(404,),
       query=(QueryParam("granularity", enum=("hour", "day", "week"), default="day"),))
def job_activity(principal: Principal, job_id: str, query: dict[str, Any]) -> Response:
    series = svc.activity(deps(), principal, job_id, query["granularity"])
    return ok({"granularity": query["granularity"], "series": series})
