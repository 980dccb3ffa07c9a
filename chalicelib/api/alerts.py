"""Alert settings: who gets e-mails and which webhooks get signed events (docs/alerts.md)."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Response

from chalicelib.api.auth import token_authorizer
from chalicelib.api.http import ok, route
from chalicelib.domain.access import Principal
from chalicelib.services import alerts as svc
from chalicelib.services.deps import deps
from chalicelib.services.validation import validate
from chalicelib.store.alerts import AlertSettings

bp = Blueprint(__name__)
TAG = "alerts"


def _view(s: AlertSettings, secret: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"emails": sorted(s.emails), "webhooks": s.webhooks, "events": list(svc.TYPES[:-1]),
                           "updated_at": s.updated_at, "version": s.version}
    if secret:
        out["signing_secret"] = secret  # shown once, when the first webhook is added
    return out


@route(bp, "/alerts", "GET", summary="Alert settings of the account", tag=TAG,
       authorizer=token_authorizer, response="AlertSettingsOut")
def get_alerts(principal: Principal, query: dict[str, Any]) -> Response:
    return ok(_view(svc.get_settings(deps(), principal)))


@route(bp, "/alerts", "PUT", summary="Replace the alert e-mails and webhooks (version required)",
       tag=TAG, authorizer=token_authorizer, body="AlertSettingsPut", response="AlertSettingsOut",
       errors=(409, 422))
def put_alerts(principal: Principal, body: dict[str, Any], query: dict[str, Any]) -> Response:
    from chalicelib.api import schemas

    req = validate(schemas.AlertSettingsPut, body)
    saved, secret = svc.update_settings(deps(), principal, req.emails, req.webhooks, req.version)
    return ok(_view(saved, secret))


@route(bp, "/alerts/test", "POST", summary="Send a test alert through every channel", tag=TAG,
       authorizer=token_authorizer, response="AlertTestOut", status=202)
def test_alert(principal: Principal, body: dict[str, Any], query: dict[str, Any]) -> Response:
    return ok({"published": svc.send_test(deps(), principal)}, 202)
