"""Who am I, users and API tokens (admins only, except /me and /users/names)."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Response

from chalicelib.api import views
from chalicelib.api.auth import token_authorizer
from chalicelib.api.http import PAGING, no_content, ok, route
from chalicelib.bootstrap import deps
from chalicelib.domain.access import Capability, Principal
from chalicelib.services import accounts as svc
from chalicelib.services import credentials as creds_svc
from chalicelib.services.validation import validate

bp = Blueprint(__name__)
TAG = "access"
ADMIN = Capability.ADMINISTER


def _schemas() -> Any:
    from chalicelib.api import schemas

    return schemas


@route(bp, "/me", "GET", summary="The caller: account, user and role", tag=TAG,
       authorizer=token_authorizer, response="MeOut")
def me(principal: Principal, query: dict[str, Any]) -> Response:
    account, user = svc.me(deps(), principal)
    return ok({"account": {"id": account.id, "name": account.name}, "user": views.user(user),
               "role": principal.role.value})


@route(bp, "/account/aws-trust", "GET", needs=Capability.MANAGE_INTEGRATIONS,
       summary="The external id and trust policy for AWS roles Switchyard assumes", tag=TAG,
       authorizer=token_authorizer, response="AwsTrustOut", errors=(403,))
def aws_trust(principal: Principal, query: dict[str, Any]) -> Response:
    return ok(creds_svc.aws_trust(deps(), principal))


@route(bp, "/users", "GET", needs=ADMIN, summary="Users of the account", tag=TAG, authorizer=token_authorizer,
       response="UserOut", list_response=True, errors=(403,), query=PAGING)
def list_users(principal: Principal, query: dict[str, Any]) -> Response:
    page = svc.list_users(deps(), principal, query["limit"], query["cursor"])
    return ok([views.user(u) for u in page.items], next_cursor=page.next_cursor, paged=True)


@route(bp, "/users/names", "GET", summary="Names of the account's users (every role: owners and audit "
       "entries are shown by name; no e-mails or roles)", tag=TAG, authorizer=token_authorizer,
       response="UserNameOut", list_response=True, query=PAGING)
def list_user_names(principal: Principal, query: dict[str, Any]) -> Response:
    page = svc.list_user_names(deps(), principal, query["limit"], query["cursor"])
    return ok([{"id": u.id, "name": u.name} for u in page.items], next_cursor=page.next_cursor, paged=True)


@route(bp, "/users", "POST", needs=ADMIN, summary="Add a user", tag=TAG, authorizer=token_authorizer,
       body="UserCreate", response="UserOut", status=201, errors=(403, 422))
def create_user(principal: Principal, body: dict[str, Any], query: dict[str, Any]) -> Response:
    req = validate(_schemas().UserCreate, body)
    user = svc.create_user(deps(), principal, email=req.email, name=req.name, role=req.role)
    return ok(views.user(user), 201)


@route(bp, "/users/{user_id}", "PATCH", needs=ADMIN, summary="Change a user's role, or disable them (their "
       "tokens are revoked)", tag=TAG, authorizer=token_authorizer, body="UserPatch", response="UserOut",
       errors=(403, 404, 409, 422))
def update_user(principal: Principal, user_id: str, body: dict[str, Any], query: dict[str, Any]) -> Response:
    req = validate(_schemas().UserPatch, body)
    user = svc.update_user(deps(), principal, user_id, role=req.role, disabled=req.disabled)
    return ok(views.user(user))


@route(bp, "/tokens", "GET", needs=ADMIN, summary="API tokens of the account (never their values)", tag=TAG,
       authorizer=token_authorizer, response="TokenOut", list_response=True, errors=(403,),
       query=PAGING)
def list_tokens(principal: Principal, query: dict[str, Any]) -> Response:
    page = svc.list_tokens(deps(), principal, query["limit"], query["cursor"])
    return ok([views.token(t) for t in page.items], next_cursor=page.next_cursor, paged=True)


@route(bp, "/tokens", "POST", needs=ADMIN, summary="Issue a token (its value is shown once)", tag=TAG,
       authorizer=token_authorizer, body="TokenCreate", response="TokenCreated", status=201,
       errors=(403, 409, 422))
def create_token(principal: Principal, body: dict[str, Any], query: dict[str, Any]) -> Response:
    req = validate(_schemas().TokenCreate, body)
    issued = svc.issue_token(deps(), principal, label=req.label, user_id=req.user_id)
    return ok({**views.token(issued.token), "token": issued.plaintext}, 201)


@route(bp, "/tokens/{token_id}", "DELETE", needs=ADMIN, summary="Revoke a token", tag=TAG,
       authorizer=token_authorizer, status=204, errors=(403, 404))
def revoke_token(principal: Principal, token_id: str, query: dict[str, Any]) -> Response:
    svc.revoke_token(deps(), principal, token_id)
    return no_content()
