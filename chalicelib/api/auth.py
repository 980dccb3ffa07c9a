"""The token authorizer (API Gateway Lambda authorizer, cached per token for 60 s).

Unknown tokens are let through as anonymous so that every route answers 401 with the
API's own error envelope; routes refuse anonymous callers (http.principal_of).
"""

from __future__ import annotations

import logging

from chalice import AuthResponse, Blueprint
from chalice.app import AuthRequest

from chalicelib import logs
from chalicelib.bootstrap import deps
from chalicelib.services.accounts import resolve_token

bp = Blueprint(__name__)
log = logging.getLogger("switchyard.auth")


@bp.authorizer(ttl_seconds=60)
def token_authorizer(auth_request: AuthRequest) -> AuthResponse:
    # Chalice middleware does not wrap authorizers, and Chalice hands them no context.
    with logs.invocation("token_authorizer"):
        return _authorize(auth_request)


def _authorize(auth_request: AuthRequest) -> AuthResponse:
    try:
        principal = resolve_token(deps(), auth_request.token)
    except Exception:
        # The token store is unreachable: let the route answer 503 in the API's envelope
        # rather than API Gateway's bare 500.
        log.exception("token lookup failed")
        return AuthResponse(routes=["*"], principal_id="anonymous", context={"auth_error": "unavailable"})
    if principal is None:
        return AuthResponse(routes=["*"], principal_id="anonymous", context={})
    return AuthResponse(
        routes=["*"],
        principal_id=principal.user_id,
        context={
            "account_id": principal.account_id,
            "user_id": principal.user_id,
            "role": principal.role.value,
            "token_id": principal.token_id,
        },
    )
