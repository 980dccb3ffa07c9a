"""Audiences: saved filters over profiles (CRUD) and how many profiles they select."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Response

from chalicelib.api.auth import token_authorizer
from chalicelib.api.http import PAGING, no_content, ok, route, version_of
from chalicelib.bootstrap import deps
from chalicelib.domain.access import Capability, Principal
from chalicelib.domain.audiences import Audience, Estimate
from chalicelib.domain.errors import Invalid
from chalicelib.services import audiences as svc
from chalicelib.services.validation import validate

bp = Blueprint(__name__)
TAG = "audiences"


def _schemas() -> Any:
    from chalicelib.api import audience_schemas

    return audience_schemas


def audience_view(a: Audience) -> dict[str, Any]:
    return {
        "id": a.id,
        "name": a.name,
        "description": a.description,
        "filter": a.filter,
        "owner": a.owner,
        "created_at": a.created_at,
        "updated_at": a.updated_at,
        "version": a.version,
        "export_jobs": a.export_jobs,
    }


def size_view(e: Estimate) -> dict[str, Any]:
    return {
        "size": e.size,
        "sample": [{"id": m.id, "email": m.email} for m in e.sample],
        "scanned": e.scanned,
        "truncated": e.truncated,
        "computed_at": e.computed_at,
        "cached": e.cached,
    }


@route(bp, "/audiences", "GET", summary="Audiences, newest first", tag=TAG, authorizer=token_authorizer,
       response="AudienceOut", list_response=True, query=PAGING)
def list_audiences(principal: Principal, query: dict[str, Any]) -> Response:
    page = svc.list_(deps(), principal, limit=query["limit"], cursor=query["cursor"])
    return ok([audience_view(a) for a in page.items], next_cursor=page.next_cursor, paged=True)


@route(bp, "/audiences", "POST", summary="Save a filter over profiles as an audience", tag=TAG,
       authorizer=token_authorizer, body="AudienceCreate", response="AudienceOut", status=201,
       errors=(422,))
def create_audience(principal: Principal, body: dict[str, Any], query: dict[str, Any]) -> Response:
    req = validate(_schemas().AudienceCreate, body)
    audience = svc.create(deps(), principal, svc.NewAudience(
        name=req.name, description=req.description, filter=req.filter))
    return ok(audience_view(audience), 201)


@route(bp, "/audiences/preview", "POST",
       summary="How many profiles a filter selects, with a sample (reads at most 20,000 profiles; "
               "the answer is kept a minute per filter)",
       tag=TAG, authorizer=token_authorizer, body="AudiencePreview", response="AudienceSize",
       errors=(422,), needs=Capability.READ)
def preview_audience(principal: Principal, body: dict[str, Any], query: dict[str, Any]) -> Response:
    req = validate(_schemas().AudiencePreview, body)
    return ok(size_view(svc.preview(deps(), principal, req.filter)))


@route(bp, "/audiences/sizes", "POST",
       summary="Sizes of several saved audiences in one call (at most 200 ids, e.g. a page of the "
               "list; past 20 distinct filters each is counted among fewer profiles, see truncated); "
               "ids that are not this account's audiences are left out",
       tag=TAG, authorizer=token_authorizer, body="AudienceSizesIn", response="AudienceSizeOf",
       list_response=True, errors=(422,), needs=Capability.READ)
def audience_sizes(principal: Principal, body: dict[str, Any], query: dict[str, Any]) -> Response:
    req = validate(_schemas().AudienceSizesIn, body)
    found = svc.sizes(deps(), principal, req.ids)
    # A list answer like the others, always one page: the ids asked are at most 200.
    return ok([{"id": i, **size_view(e)} for i, e in found.items()], next_cursor=None, paged=True)


@route(bp, "/audiences/{audience_id}", "GET", summary="One audience", tag=TAG,
       authorizer=token_authorizer, response="AudienceOut", errors=(404,))
def get_audience(principal: Principal, audience_id: str, query: dict[str, Any]) -> Response:
    return ok(audience_view(svc.get(deps(), principal, audience_id)))


@route(bp, "/audiences/{audience_id}", "PATCH",
       summary="Edit name, description or filter (If-Match: version)", tag=TAG,
       authorizer=token_authorizer, body="AudiencePatch", response="AudienceOut",
       errors=(404, 409, 422))
def patch_audience(principal: Principal, audience_id: str, body: dict[str, Any],
                   query: dict[str, Any]) -> Response:
    version = version_of(bp.current_request, body)
    req = validate(_schemas().AudiencePatch, body)
    patch = req.model_dump(mode="json", exclude_unset=True)
    null = sorted(k for k, v in patch.items() if v is None)
    if null:
        raise Invalid("these fields cannot be null", fields={k: "cannot be null" for k in null})
    return ok(audience_view(svc.edit(deps(), principal, audience_id, patch, version)))


@route(bp, "/audiences/{audience_id}", "DELETE", summary="Delete an audience", tag=TAG,
       authorizer=token_authorizer, status=204, errors=(404,))
def delete_audience(principal: Principal, audience_id: str, query: dict[str, Any]) -> Response:
    svc.delete(deps(), principal, audience_id)
    return no_content()


@route(bp, "/audiences/{audience_id}/size", "GET",
       summary="How many profiles a saved audience selects, with a sample (as the preview: capped, "
               "kept a minute)", tag=TAG,
       authorizer=token_authorizer, response="AudienceSize", errors=(404,))
def audience_size(principal: Principal, audience_id: str, query: dict[str, Any]) -> Response:
    return ok(size_view(svc.size(deps(), principal, audience_id)))
