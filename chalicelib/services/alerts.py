"""Alerts (docs/alerts.md): events on state changes, delivered by e-mail
(SNS) and signed webhooks.

1. Where a state changes (a job fails or recovers, an authorization turns unhealthy or
   healthy again), `emit` puts one event on the stage's EventBridge bus — on the change,
   never on every run. Customers may add their own rules on that bus.
2. The alerts rule sends every Switchyard event to the alerts queue; `deliver` (its Lambda)
   publishes it to the SNS topic (each e-mail subscription is filtered to its account) and
   POSTs it to the account's webhooks, signed with the account's alert secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets as pysecrets
import time
from typing import Any
from urllib.parse import urlsplit

from chalicelib.bootstrap import Deps
from chalicelib.domain.access import Capability, Principal
from chalicelib.domain.errors import Invalid, stale_version
from chalicelib.store.alerts import AlertSettings
from chalicelib.store.audit import AuditEvent, diff

log = logging.getLogger("switchyard.alerts")

JOB_FAILED = "Job Failed"
JOB_RECOVERED = "Job Recovered"
AUTH_UNHEALTHY = "Authorization Unhealthy"
AUTH_HEALTHY = "Authorization Healthy Again"
METRIC_BREACHED = "Metric Threshold Breached"
TEST = "Test Alert"
TYPES = (JOB_FAILED, JOB_RECOVERED, AUTH_UNHEALTHY, AUTH_HEALTHY, METRIC_BREACHED, TEST)  # TEST last
MAX_EMAILS = 10
MAX_WEBHOOKS = 5
SIGNATURE_HEADER = "Switchyard-Signature"


def emit(d: Deps, account_id: str, detail_type: str, detail: dict[str, Any]) -> bool:
    """Best effort: a state change is never undone because its alert could not be sent
    (the failure is logged; the state itself is in DynamoDB and the logs)."""
    try:
        d.event_bus.publish(account_id, detail_type, detail)
        return True
    except Exception:
        log.exception("alert event not published", extra={"account_id": account_id, "type": detail_type})
        return False


# -- settings ------------------------------------------------------------------------------


def _secret_name(d: Deps, account_id: str) -> str:
    return f"{d.secrets.name_for(account_id, 'alerts')}"


def get_settings(d: Deps, p: Principal) -> AlertSettings:
    p.require(Capability.READ)
    return d.alert_settings.get(p.account_id)


def update_settings(d: Deps, p: Principal, emails: list[str], webhooks: list[str],
                    version: int) -> tuple[AlertSettings, str | None]:
    """Replace the e-mail and webhook lists. Returns the settings and, when the first
    webhook is added, the signing secret (shown once; kept only in Secrets Manager)."""
    p.require(Capability.MANAGE_INTEGRATIONS)
    if len(emails) > MAX_EMAILS:
        raise Invalid(f"at most {MAX_EMAILS} e-mail addresses", fields={"emails": "too many"})
    if len(webhooks) > MAX_WEBHOOKS:
        raise Invalid(f"at most {MAX_WEBHOOKS} webhooks", fields={"webhooks": "too many"})
    repo = d.alert_settings
    current = repo.get(p.account_id)
    if current.version != version:
        raise stale_version("alert settings", version)
    topic = d.alert_topic
    subscribed = {e: arn for e, arn in current.emails.items() if e in emails}
    for email in emails:
        if email not in subscribed:
            subscribed[email] = topic.subscribe(p.account_id, email)
    saved = repo.save(AlertSettings(p.account_id, subscribed, list(dict.fromkeys(webhooks))),
                      expected_version=version)
    for email, arn in current.emails.items():
        if email not in subscribed:
            topic.unsubscribe(arn)
    _audit(d, p, current, saved)
    secret = None
    if saved.webhooks and not current.webhooks:
        secret = _ensure_secret(d, p.account_id)
    return saved, secret


def _audit(d: Deps, p: Principal, before: AlertSettings, after: AlertSettings) -> None:
    """Addresses as they are; webhooks by host only (a URL may carry a token)."""
    def view(s: AlertSettings) -> dict[str, Any]:
        hosts = [urlsplit(u).hostname or "?" for u in s.webhooks]  # no user:password@
        return {"emails": sorted(s.emails), "webhook_hosts": hosts}

    d.audit.put(AuditEvent(p.account_id, p.user_id, "changed", "alert_settings", p.account_id,
                           "alert settings", diff(view(before), view(after))))


def _ensure_secret(d: Deps, account_id: str) -> str | None:
    """Create the account's alert signing secret once; None if it already exists."""
    from botocore.exceptions import ClientError

    value = "whsec_" + pysecrets.token_urlsafe(32)
    try:
        d.secrets.create(_secret_name(d, account_id), {"signing_secret": value},
                         tags={"switchyard:account": account_id, "switchyard:purpose": "alerts"})
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceExistsException":
            return None
        raise
    return value


def send_test(d: Deps, p: Principal) -> bool:
    p.require(Capability.MANAGE_INTEGRATIONS)
    return emit(d, p.account_id, TEST, {"message": f"test alert requested by {p.user_id}"})


# -- delivery --------------------------------------------------------------------------------


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def _summary(detail_type: str, detail: dict[str, Any]) -> str:
    what = detail.get("label") or detail.get("job_id") or detail.get("authorization_id") or ""
    reason = f": {detail['reason']}" if detail.get("reason") else ""
    return f"Switchyard — {detail_type} {what}{reason}".strip()


def deliver(d: Deps, event: dict[str, Any]) -> dict[str, int]:
    """Deliver one EventBridge event (as the alerts rule put it on the queue)."""
    detail_type = str(event.get("detail-type", ""))
    detail = event.get("detail") or {}
    account_id = str(detail.get("account_id", ""))
    if detail_type not in TYPES or not account_id:
        log.warning("not an alert event; dropped", extra={"type": detail_type})
        return {"emails": 0, "webhooks": 0}
    transition_id = str(detail.get("transition_id") or "")
    deliveries = d.alert_deliveries
    if transition_id and not deliveries.claim(account_id, detail_type, transition_id, now=time.time()):
        # A repeat (the sender is at least once): this transition's alert went out already,
        # or is going out now; if that worker dies, its own message comes back and sends it.
        log.info("repeated alert dropped", extra={"type": detail_type, "transition_id": transition_id})
        return {"emails": 0, "webhooks": 0}
    conf = d.alert_settings.get(account_id)
    sent = {"emails": 0, "webhooks": 0}
    text = _summary(detail_type, detail)
    if conf.emails:
        d.alert_topic.publish(account_id, text, text + "\n\n" + json.dumps(detail, indent=2, sort_keys=True))
        sent["emails"] = 1
    if conf.webhooks:
        secret = d.secrets.read(_secret_name(d, account_id))["signing_secret"]
        body = json.dumps({"id": event.get("id"), "type": detail_type, "time": event.get("time"),
                           "detail": detail}, sort_keys=True).encode()
        for url in conf.webhooks:
            if _post(url, body, secret):
                sent["webhooks"] += 1
    if transition_id:
        deliveries.sent(account_id, detail_type, transition_id, now=time.time())
    return sent


def _post(url: str, body: bytes, secret: str) -> bool:
    from chalicelib.providers.http import HttpClient

    def prepare(headers: dict[str, str], payload: bytes | None) -> None:
        headers[SIGNATURE_HEADER] = sign(secret, int(time.time()), payload or b"")

    client = HttpClient("alerts", label="alert webhook", secrets=[secret])
    try:
        client.request("POST", url, "alerts.deliver", body=body, prepare=prepare, idempotent=True,
                       headers={"Content-Type": "application/json"})
        return True
    except Exception as exc:  # one bad endpoint never blocks the others
        log.warning("alert webhook failed", extra={"host": url.split("/")[2] if "//" in url else "?",
                                                   "error": str(exc)})
        return False
