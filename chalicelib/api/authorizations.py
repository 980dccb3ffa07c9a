"""Authorizations: dashboard, create (checked first), summary, edit, rotate, check, delete."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Response

from chalicelib.api import views
from chalicelib.api.auth import token_authorizer
from chalicelib.api.http import PAGING, QueryParam, no_content, ok, route, version_of
from chalicelib.bootstrap import deps
from chalicelib.domain.access import Principal
from chalicelib.domain.errors import Invalid
from chalicelib.services import authorizations as svc
from chalicelib.services.validation import validate

bp = Blueprint(__name__)
TAG = "authorizations"
GRANULARITY = (QueryParam("granularity", enum=("hour", "day", "week"), default="day"),)


def _schemas() -> Any:
    from chalicelib.api import schemas

    return schemas


@route(bp, "/authorizations", "GET", summary="Authorizations dashboard", tag=TAG,
       authorizer=token_authorizer, response="AuthorizationRow", list_response=True,
       query=(QueryParam("provider"), QueryParam("health", enum=("healthy", "unhealthy", "unknown")),
              *PAGING))
def list_authorizations(principal: Principal, query: dict[str, Any]) -> Response:
    page = svc.list_(deps(), principal, limit=query["limit"], cursor=query["cursor"],
                     provider=query["provider"], health=query["health"])
    return ok([views.authorization_row(a) for a in page.items], next_cursor=page.next_cursor,
              paged=True)


@route(bp, "/authorizations", "POST", summary="Create an authorization (credentials checked first)",
       tag=TAG, authorizer=token_authorizer, body="AuthorizationCreate",
       response="AuthorizationSummary", status=201, errors=(400, 413, 422))
def create_authorization(principal: Principal, body: dict[str, Any], query: dict[str, Any]) -> Response:
    req = validate(_schemas().AuthorizationCreate, body)
    auth = svc.create(deps(), principal, svc.NewAuthorization(
        provider=req.provider, method=req.method, label=req.label,
        description=req.description, credentials=req.credentials))
    body = views.authorization_summary(auth, [])
    if auth.issued_key:
        body["write_key"] = auth.issued_key  # shown this once; only its hint afterwards
    return ok(body, 201)


@route(bp, "/authorizations/{auth_id}", "GET", summary="Authorization summary", tag=TAG,
       authorizer=token_authorizer, response="AuthorizationSummary", errors=(404,))
def get_authorization(principal: Principal, auth_id: str, query: dict[str, Any]) -> Response:
    auth, jobs = svc.summary(deps(), principal, auth_id)
    return ok(views.authorization_summary(auth, jobs))


@route(bp, "/authorizations/{auth_id}", "PATCH", summary="Edit label and description", tag=TAG,
       authorizer=token_authorizer, body="AuthorizationPatch", response="AuthorizationSummary",
       errors=(404, 409, 422))
def patch_authorization(principal: Principal, auth_id: str, body: dict[str, Any],
                        query: dict[str, Any]) -> Response:
    version = version_of(bp.current_request, body)
    req = validate(_schemas().AuthorizationPatch, body)
    changes = req.model_dump(exclude_unset=True)
    null = [k for k, v in changes.items() if v is None]
    if null:
        raise Invalid("these fields cannot be null", fields={k: "cannot be null" for k in null})
    auth = svc.edit(deps(), principal, auth_id, changes, version)
    return ok(views.authorization_summary(auth, svc.jobs_using(deps(), principal, auth_id)))


@route(bp, "/authorizations/{auth_id}/credentials", "PUT",
       summary="Rotate credentials (verified first, stored as a new secret version)", tag=TAG,
       authorizer=token_authorizer, body="CredentialsPut", response="AuthorizationSummary",
       errors=(404, 409, 422))
def rotate_credentials(principal: Principal, auth_id: str, body: dict[str, Any],
                       query: dict[str, Any]) -> Response:
    version = version_of(bp.current_request, body)
    req = validate(_schemas().CredentialsPut, body)
    auth = svc.rotate(deps(), principal, auth_id, req.credentials, version)
    body = views.authorization_summary(auth, svc.jobs_using(deps(), principal, auth_id))
    if auth.issued_key:
        body["write_key"] = auth.issued_key  # a rotated write key, shown this once
    return ok(body)


@route(bp, "/authorizations/{auth_id}/check", "POST", summary="Run the health check now", tag=TAG,
       authorizer=token_authorizer, response="HealthOut", errors=(404,))
def check_authorization(principal: Principal, auth_id: str, query: dict[str, Any]) -> Response:
    auth = svc.check_now(deps(), principal, auth_id)
    return ok(views.health(auth.health))


@route(bp, "/authorizations/{auth_id}/health", "GET",
       summary="Health transitions, newest first (the current health is in the summary)", tag=TAG,
       authorizer=token_authorizer, response="HealthTransitionOut", list_response=True,
       errors=(404,), query=PAGING)
def authorization_health(principal: Principal, auth_id: str, query: dict[str, Any]) -> Response:
    page = svc.health_history(deps(), principal, auth_id, limit=query["limit"], cursor=query["cursor"])
    return ok(page.items, next_cursor=page.next_cursor, paged=True)


@route(bp, "/authorizations/{auth_id}", "DELETE",
       summary="Delete (refused while a running, sleeping or paused job uses it)", tag=TAG,
       authorizer=token_authorizer, status=204, errors=(404, 409))
def delete_authorization(principal: Principal, auth_id: str, query: dict[str, Any]) -> Response:
    svc.delete(deps(), principal, auth_id)
    return no_content()


@route(bp, "/authorizations/{auth_id}/activity", "GET",
       summary="API requests made with it per hour, day or week", tag=TAG,
       authorizer=token_authorizer, response="AuthActivity", errors=(404,), query=GRANULARITY)
def authorization_activity(principal: Principal, auth_id: str, query: dict[str, Any]) -> Response:
    series = svc.activity(deps(), principal, auth_id, query["granularity"])
    return ok({"granularity": query["granularity"], "series": series})
