"""The token authorizer (API Gateway Lambda authorizer, cached per token for 60 s).

Unknown tokens are let through as anonymous so that every route answers 401 with the
API's own error envelope; routes refuse anonymous callers (http.principal_of).
"""

from __future__ import annotations

from chalice import AuthResponse, Blueprint
from chalice.app import AuthRequest

bp = Blueprint(__name__)


@bp.authorizer(ttl_seconds=60)
def token_authorizer(auth_request: AuthRequest) -> AuthResponse:
    from chalicelib.services.accounts import resolve_token
    from chalicelib.services.deps import deps

    principal = resolve_token(deps(), auth_request.token)
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
