"""Alert settings: who gets e-mails and which webhooks get signed events (docs/alerts.md)."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Response

from chalicelib.api.auth import token_authorizer
from chalicelib.api.http import no_content, ok, route
from chalicelib.bootstrap import deps
from chalicelib.domain.access import Principal
from chalicelib.domain.alert_rules import AlertRule
from chalicelib.services import alert_rules
from chalicelib.services import alerts as svc
from chalicelib.services.validation import validate
from chalicelib.store.alerts import AlertSettings

bp = Blueprint(__name__)
TAG = "alerts"


def _view(s: AlertSettings, secrets: dict[str, str] | None = None) -> dict[str, Any]:
    # Webhooks by id and host: a URL may carry a token, and observers read this too.
    out: dict[str, Any] = {"emails": sorted(s.emails),
                           "webhooks": [{"id": w.id, "host": w.host, "created_at": w.created_at} for w in s.webhooks],
                           "events": list(svc.TYPES[:-1]), "updated_at": s.updated_at, "version": s.version}
    if secrets:
        out["signing_secrets"] = secrets  # shown once, in the answer that added the webhooks
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
    saved, secrets = svc.update_settings(deps(), principal, req.emails, req.webhooks, req.version)
    return ok(_view(saved, secrets))


@route(bp, "/alerts/webhooks/{webhook_id}/rotate-secret", "POST", summary="A new signing secret for a webhook "
       "(shown once; the previous one also signs for 24 h)", tag=TAG, authorizer=token_authorizer,
       response="WebhookSecretOut", errors=(404,))
def rotate_webhook_secret(principal: Principal, webhook_id: str, query: dict[str, Any]) -> Response:
    secret = svc.rotate_webhook_secret(deps(), principal, webhook_id)
    return ok({"id": webhook_id, "signing_secret": secret})


@route(bp, "/alerts/test", "POST", summary="Send a test alert through every channel", tag=TAG,
       authorizer=token_authorizer, response="AlertTestOut", status=202)
def test_alert(principal: Principal, query: dict[str, Any]) -> Response:
    # No body schema: the route passes no body (a `body` parameter here was a 500 for every
    # caller allowed past the role check).
    return ok({"published": svc.send_test(deps(), principal)}, 202)


# -- metric threshold rules per job --------------------------------------------------------


def _rule_view(r: AlertRule) -> dict[str, Any]:
    return {"id": r.id, "job_id": r.job_id, "metric": r.metric, "granularity": r.granularity,
            "min": r.min, "max": r.max, "allowable_violations": r.allowable_violations,
            "alert_state": r.alert_state, "state_changed_at": r.state_changed_at,
            "created_at": r.created_at, "created_by": r.created_by}


@route(bp, "/jobs/{job_id}/alert-rules", "POST", summary="Add a metric threshold rule to a job",
       tag=TAG, authorizer=token_authorizer, body="AlertRuleIn", response="AlertRuleOut", status=201,
       errors=(404, 409, 422))
def create_alert_rule(principal: Principal, job_id: str, body: dict[str, Any], query: dict[str, Any]) -> Response:
    from chalicelib.api import schemas

    req = validate(schemas.AlertRuleIn, body)
    rule = alert_rules.create(deps(), principal, job_id, metric=req.metric, granularity=req.granularity,
                              min_=req.min, max_=req.max, allowable_violations=req.allowable_violations)
    return ok(_rule_view(rule), 201)


@route(bp, "/jobs/{job_id}/alert-rules", "GET", summary="A job's metric threshold rules", tag=TAG,
       authorizer=token_authorizer, response="AlertRuleOut", list_response=True, errors=(404,))
def list_alert_rules(principal: Principal, job_id: str, query: dict[str, Any]) -> Response:
    rules = alert_rules.list_(deps(), principal, job_id)
    return ok([_rule_view(r) for r in rules], next_cursor=None, paged=True)


@route(bp, "/jobs/{job_id}/alert-rules/{rule_id}", "DELETE", summary="Delete a metric threshold rule",
       tag=TAG, authorizer=token_authorizer, status=204, errors=(404,))
def delete_alert_rule(principal: Principal, job_id: str, rule_id: str, query: dict[str, Any]) -> Response:
    alert_rules.delete(deps(), principal, job_id, rule_id)
    return no_content()
