"""The token authorizer (API Gateway Lambda authorizer).

Unknown tokens are let through as anonymous so that every route answers 401 with the
API's own error envelope; routes refuse anonymous callers (http.principal_of).

Revocation window: API Gateway keeps an answer AUTHORIZER_TTL_SECONDS per header value,
and this Lambda keeps its own for SWITCHYARD_TOKEN_CACHE_SECONDS (1 s); its reads are
strongly consistent. A revoked token, a disabled user or a changed role therefore holds at
most 3 + 1 s after the change commits, whichever process made it. Cost: per token in
steady use, one authorizer invocation and two GetItems every 3 s (at most), where a 60 s
cache cost one every 60 s.

Every answer names the API key the request counts against (`usageIdentifierKey`, one per
account, domain/quota.py): API Gateway throttles each account on its own, at no request cost.
"""

from __future__ import annotations

import logging
from typing import Any

from chalice import AuthResponse, Blueprint
from chalice.app import AuthRequest

from chalicelib import coldstart, logs
from chalicelib.bootstrap import deps
from chalicelib.config import settings
from chalicelib.domain import quota
from chalicelib.services.accounts import resolve_header

bp = Blueprint(__name__)
log = logging.getLogger("switchyard.auth")


AUTHORIZER_TTL_SECONDS = 3


@bp.authorizer(ttl_seconds=AUTHORIZER_TTL_SECONDS)
def token_authorizer(auth_request: AuthRequest) -> AuthResponse:
    # Chalice middleware does not wrap authorizers, and Chalice hands them no context; so the
    # authorizer's own Lambda ends its cold start here.
    try:
        with logs.invocation("token_authorizer"):
            return _authorize(auth_request)
    finally:
        coldstart.settle()


class KeyedAuthResponse(AuthResponse):
    """Chalice's answer plus the usage-plan key API Gateway counts the request against."""

    def __init__(self, *, usage_key: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.usage_key = usage_key

    def to_dict(self, request: AuthRequest) -> dict[str, Any]:
        out: dict[str, Any] = super().to_dict(request)
        out["usageIdentifierKey"] = self.usage_key
        return out


def _authorize(auth_request: AuthRequest) -> AuthResponse:
    stage = settings().stage
    try:
        principal = resolve_header(deps(), auth_request.token)
    except Exception:
        # The token store is unreachable: let the route answer 503 in the API's envelope
        # rather than API Gateway's bare 500.
        log.exception("token lookup failed")
        return KeyedAuthResponse(routes=["*"], principal_id="anonymous", context={"auth_error": "unavailable"},
                                 usage_key=quota.usage_key(stage, None))
    if principal is None:
        return KeyedAuthResponse(routes=["*"], principal_id="anonymous", context={},
                                 usage_key=quota.usage_key(stage, None))
    return KeyedAuthResponse(
        usage_key=quota.usage_key(stage, principal.account_id),
        routes=["*"],
        principal_id=principal.user_id,
        context={
            "account_id": principal.account_id,
            "user_id": principal.user_id,
            "role": principal.role.value,
            "token_id": principal.token_id,
        },
    )
