"""Profiles: look one up by identifier, list the account's, read one."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Response

from chalicelib.api.auth import token_authorizer
from chalicelib.api.http import PAGING, QueryParam, ok, route
from chalicelib.bootstrap import deps
from chalicelib.domain.access import Principal
from chalicelib.domain.errors import BadRequest
from chalicelib.domain.profiles import Profile
from chalicelib.services import profiles as svc

bp = Blueprint(__name__)
TAG = "profiles"
RESPONSE = "ProfileOut"  # chalicelib/api/profiles_schemas.py (openapi.MODEL_MODULES)


def profile_view(p: Profile) -> dict[str, Any]:
    return {
        "id": p.id,
        "identifiers": p.identifiers,
        "fields": p.fields,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
        "version": p.version,
    }


@route(bp, "/profiles", "GET",
       summary="Profiles: the one an identifier points at (identifier=kind:value), or all, paged",
       tag=TAG, authorizer=token_authorizer, response=RESPONSE, list_response=True,
       query=(QueryParam("identifier", description="kind:value, e.g. email:ada@example.com"), *PAGING))
def list_profiles(principal: Principal, query: dict[str, Any]) -> Response:
    given: dict[str, str] = dict(bp.current_request.query_params or {})
    if "identifier" in given:
        if query["cursor"] is not None:
            raise BadRequest("give identifier or cursor, not both", code="request.invalid_query",
                             fields={"cursor": "not allowed with identifier"})
        found = svc.find(deps(), principal, given["identifier"])
        return ok([profile_view(p) for p in found], next_cursor=None, paged=True)
    page = svc.list_(deps(), principal, limit=query["limit"], cursor=query["cursor"])
    return ok([profile_view(p) for p in page.items], next_cursor=page.next_cursor, paged=True)


@route(bp, "/profiles/{profile_id}", "GET", summary="One profile", tag=TAG,
       authorizer=token_authorizer, response=RESPONSE, errors=(404,))
def get_profile(principal: Principal, profile_id: str, query: dict[str, Any]) -> Response:
    return ok(profile_view(svc.get(deps(), principal, profile_id)))
