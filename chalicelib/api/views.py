"""Domain objects -> the JSON shapes of API.md (checked against schemas.py by tests)."""

from __future__ import annotations

import json
from typing import Any

from chalicelib.domain.models import Authorization, Health, Job, Token, User
from chalicelib.domain.pricing import monthly_estimate, run_cost_usd
from chalicelib.domain.runs import Run
from chalicelib.domain.statuses import JobStatus


def health(h: Health) -> dict[str, Any]:
    return {"status": h.status.value, "reason": h.reason, "checked_at": h.checked_at}


def authorization_row(a: Authorization) -> dict[str, Any]:
    by_status = {s.value: max(0, int(a.usage.get(s.value, 0))) for s in JobStatus}
    return {
        "id": a.id,
        "provider": a.provider,
        "method": a.method,
        "label": a.label,
        "description": a.description,
        "owner": a.owner,
        "created_at": a.created_at,
        "updated_at": a.updated_at,
        "health": health(a.health),
        "last_used_at": a.last_used_at,
        "usage": {"total": sum(by_status.values()), "by_status": by_status},
        "credential_hint": a.credential_hint,
        "provider_account": a.provider_account,
    }


def authorization_summary(a: Authorization, jobs: list[Job]) -> dict[str, Any]:
    return {
        **authorization_row(a),
        "jobs": [{"id": j.id, "label": j.label, "status": j.status.value} for j in jobs],
        "version": a.version,
    }


def auth_warning(auth: Authorization | None) -> str | None:
    """What a job row says about its authorization's health (SPEC rule 7)."""
    if auth is None or auth.health.status.value != "unhealthy":
        return None
    reason = f": {auth.health.reason}" if auth.health.reason else ""
    return f"authorization {auth.label!r} is unhealthy{reason}"


def job_row(j: Job, auth: Authorization | None = None) -> dict[str, Any]:
    return {
        "id": j.id,
        "label": j.label,
        "provider": j.provider,
        "job_type": j.job_type.value,
        "workflow": j.workflow,
        "authorization_id": j.authorization_id,
        "status": j.status.value,
        "fault_count": j.fault_count,
        "owner": j.owner,
        "created_at": j.created_at,
        "updated_at": j.updated_at,
        "last_run": j.last_run,
        "next_run_at": j.next_run_at,
        "schedule": j.schedule,
        "warning": auth_warning(auth),
    }


def job_summary(j: Job, auth: Authorization | None, *, lag_seconds: float | None = None) -> dict[str, Any]:
    ref = (
        {"id": auth.id, "label": auth.label, "health": health(auth.health), "deleted": False}
        if auth is not None
        else {"id": j.authorization_id, "label": j.authorization_label, "health": None, "deleted": True}
    )
    return {
        **job_row(j, auth),
        "description": j.description,
        "config": j.config,
        "authorization": ref,
        "cost_estimate": monthly_estimate(j.schedule, (j.last_run or {}).get("cost")),
        "failure_window_hours": j.failure_window_hours,
        "version": j.version,
        "lag_seconds": lag_seconds,
        "resync_requested": j.resync_requested,
    }


def token(t: Token) -> dict[str, Any]:
    return {
        "id": t.id,
        "label": t.label,
        "user_id": t.user_id,
        "role": t.role.value,
        "created_at": t.created_at,
        "hint": f"{t.id}.…{t.last4}",
    }


def user(u: User) -> dict[str, Any]:
    return {"id": u.id, "email": u.email, "name": u.name, "role": u.role.value, "created_at": u.created_at,
            "disabled": u.disabled}


def run(r: Run) -> dict[str, Any]:
    return {
        "id": r.id,
        "trigger": r.trigger,
        "status": r.status,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "added": r.added,
        "removed": r.removed,
        "omitted": r.omitted,
        "omitted_reasons": r.omitted_reasons,
        "error": r.error,
        "requested_by": r.requested_by,
        "progress": {"steps": r.step, "processed": r.processed, "read": r.read, "total": r.total,
                     "unit": r.total_unit},
        "cost": r.cost,
        "cost_usd": run_cost_usd(r.cost),
        "resync": bool((r.cursor or {}).get("resync")) if isinstance(r.cursor, dict) else False,
    }


def log_line(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "timestamp": row["timestamp"],
        "level": row["level"],
        "code": row["code"],
        "message": row["message"],
        "run_id": row.get("run_id"),
        "user": row.get("user"),
        "context": json.loads(row.get("context_json") or "{}"),
    }
