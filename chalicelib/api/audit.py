"""The audit log: who created, changed, paused, resumed, re-authorized, rotated or deleted what."""

from __future__ import annotations

import re
from typing import Any

from chalice import Blueprint, Response

from chalicelib.api.auth import token_authorizer
from chalicelib.api.http import PAGING, QueryParam, ok, route
from chalicelib.bootstrap import deps
from chalicelib.domain.access import Capability, Principal
from chalicelib.domain.errors import BadRequest
from chalicelib.services import audit as svc

bp = Blueprint(__name__)
TAG = "audit"
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}(:\d{2}(:\d{2}(\.\d+)?)?)?Z?)?$")


def _time(query: dict[str, Any], name: str) -> str | None:
    value = query.get(name)
    if value is None:
        return None
    if not _TIME.match(value):
        raise BadRequest(f"{name} must be an ISO 8601 UTC time, e.g. 2026-11-27T10:00:00Z",
                         code="request.invalid_query", fields={name: "not an ISO 8601 UTC time"})
    return str(value)


@route(bp, "/audit", "GET", summary="Audit events, newest first (filter by object, user, time)",
       tag=TAG, authorizer=token_authorizer, response="AuditEventOut", list_response=True,
       needs=Capability.MANAGE_INTEGRATIONS,
       query=(QueryParam("object_id", description="a job, authorization or audience id"),
              QueryParam("user_id"), QueryParam("since", description="ISO 8601 UTC, inclusive"),
              QueryParam("until", description="ISO 8601 UTC, inclusive"), *PAGING))
def list_audit(principal: Principal, query: dict[str, Any]) -> Response:
    page = svc.list_(deps(), principal, limit=query["limit"], cursor=query["cursor"],
                     object_id=query["object_id"], user_id=query["user_id"],
                     since=_time(query, "since"), until=_time(query, "until"))
    return ok(page.items, next_cursor=page.next_cursor, paged=True)
