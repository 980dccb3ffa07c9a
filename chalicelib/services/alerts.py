"""Alerts (docs/alerts.md): events on state changes, delivered by e-mail
(SNS) and signed webhooks.

1. Where a state changes (a job fails or recovers, an authorization turns unhealthy or
   healthy again), `emit` puts one event on the stage's EventBridge bus — on the change,
   never on every run. Customers may add their own rules on that bus.
2. The alerts rule sends every Switchyard event to the alerts queue; `deliver` (its Lambda)
   publishes it to the SNS topic (each e-mail subscription is filtered to its account) and
   POSTs it to the account's webhooks, each signed with its own secret.

A webhook's URL and signing secret are kept in its Secrets Manager secret; DynamoDB and
every answer hold its id and host only (a URL may carry a token). A URL is vetted by the
SSRF guard when saved, and again at delivery (DNS may change).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets as pysecrets
import time
from typing import TYPE_CHECKING, Any

from chalicelib.domain.access import Capability, Principal
from chalicelib.domain.audit import AuditEvent, diff
from chalicelib.domain.errors import Invalid, not_found, stale_version
from chalicelib.domain.ids import new_id
from chalicelib.domain.models import Job
from chalicelib.store.alerts import AlertSettings, Webhook, host_of
from chalicelib.store.dynamo import now_iso

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.services.needs import AlertsNeeds

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
# After a rotation the previous secret still signs (a second v1=) for this long, so the
# receiver can switch without losing alerts.
ROTATION_OVERLAP_SECONDS = 24 * 3600


def emit(d: AlertsNeeds, account_id: str, detail_type: str, detail: dict[str, Any]) -> bool:
    """Best effort: a state change is never undone because its alert could not be sent
    (the failure is logged; the state itself is in DynamoDB and the logs)."""
    try:
        d.event_bus.publish(account_id, detail_type, detail)
        return True
    except Exception:
        log.exception("alert event not published", extra={"account_id": account_id, "type": detail_type})
        return False


def send_job_alert(d: AlertsNeeds, job: Job) -> bool:
    """Put the job's pending alert (recorded with its state change) on the bus, then clear
    it, conditional on its transition id: a newer one stays. At least once: dying between
    the two sends it again with the same `transition_id`, which the alerts worker delivers
    once. False when the bus refused it: it stays pending."""
    pending = job.pending_alert
    if not pending:
        return True
    detail = {**json.loads(pending["detail_json"]), "transition_id": pending["transition_id"]}
    if not emit(d, job.account_id, str(pending["type"]), detail):
        return False
    d.jobs.clear_alert(job.account_id, job.id, str(pending["transition_id"]))
    return True


# -- settings ------------------------------------------------------------------------------


def _secret_name(d: AlertsNeeds, account_id: str) -> str:
    """The account's one signing secret of webhooks saved before each had its own."""
    return f"{d.secrets.name_for(account_id, 'alerts')}"


def _webhook_secret_name(d: AlertsNeeds, account_id: str, webhook_id: str) -> str:
    return d.secrets.name_for(account_id, f"alerts-{webhook_id}")


def _new_signing_secret() -> str:
    return "whsec_" + pysecrets.token_urlsafe(32)


def get_settings(d: AlertsNeeds, p: Principal) -> AlertSettings:
    p.require(Capability.READ)
    return d.alert_settings.get(p.account_id)


def update_settings(d: AlertsNeeds, p: Principal, emails: list[str], webhooks: list[str],
                    version: int) -> tuple[AlertSettings, dict[str, str]]:
    """Replace the e-mail and webhook lists. `webhooks` holds the id of each webhook to keep
    and the URL of each to add. Returns the settings and the signing secret of each webhook
    added ({id: secret}, shown once; kept only in Secrets Manager)."""
    p.require(Capability.MANAGE_INTEGRATIONS)
    if len(emails) > MAX_EMAILS:
        raise Invalid(f"at most {MAX_EMAILS} e-mail addresses", fields={"emails": "too many"})
    if len(webhooks) > MAX_WEBHOOKS:
        raise Invalid(f"at most {MAX_WEBHOOKS} webhooks", fields={"webhooks": "too many"})
    repo = d.alert_settings
    current = repo.get(p.account_id)
    if current.version != version:
        raise stale_version("alert settings", version)
    by_id = {w.id: w for w in current.webhooks}
    _vet(webhooks, by_id)
    # Secrets first (one per webhook, written by this request only): a webhook listed in
    # DynamoDB always has its URL. A save refused below leaves unlisted secrets, removed.
    kept: list[Webhook] = []
    added: dict[str, str] = {}
    created: list[str] = []
    legacy_secret: str | None = None
    try:
        for entry in dict.fromkeys(webhooks):
            found = by_id.get(entry)
            if found is not None and found.legacy_url is None:
                kept.append(found)
                continue
            if found is not None:  # a legacy webhook moves to its own secret, same signing secret
                legacy_secret = legacy_secret or _legacy_signing_secret(d, p.account_id)
                url, secret = found.legacy_url or "", legacy_secret
            else:
                url, secret = entry, _new_signing_secret()
            hook = Webhook(id=new_id("whk"), host=host_of(url), created_at=now_iso())
            d.secrets.create(_webhook_secret_name(d, p.account_id, hook.id), {"url": url, "signing_secret": secret},
                             tags={"switchyard:account": p.account_id, "switchyard:purpose": "alerts"})
            created.append(hook.id)
            kept.append(hook)
            if found is None:
                added[hook.id] = secret
        topic = d.alert_topic
        subscribed = {e: arn for e, arn in current.emails.items() if e in emails}
        for email in emails:
            if email not in subscribed:
                subscribed[email] = topic.subscribe(p.account_id, email)
        saved = repo.save(AlertSettings(p.account_id, subscribed, kept), expected_version=version)
    except Exception:
        for hook_id in created:
            d.secrets.delete_now(_webhook_secret_name(d, p.account_id, hook_id))
        raise
    for email, arn in current.emails.items():
        if email not in subscribed:
            topic.unsubscribe(arn)
    for hook in current.webhooks:
        if hook.legacy_url is None and hook.id not in {w.id for w in kept}:
            d.secrets.schedule_deletion(_webhook_secret_name(d, p.account_id, hook.id))
    _audit(d, p, current, saved)
    return saved, added


def _vet(entries: list[str], by_id: dict[str, Webhook]) -> None:
    """Each entry is a kept webhook's id or a new URL the SSRF guard accepts (422 naming it)."""
    from chalicelib.providers.http import HttpError, check_url

    for i, entry in enumerate(entries):
        field = f"webhooks[{i}]"
        if entry in by_id:
            continue
        if entry.startswith("whk_"):
            raise Invalid("that webhook does not exist (any more): reload the settings",
                          fields={field: "unknown webhook id"})
        try:
            check_url(entry, field=field)
        except HttpError as exc:
            raise Invalid(f"the webhook URL cannot be used: {exc.reason}", fields={field: exc.reason}) from None


def _legacy_signing_secret(d: AlertsNeeds, account_id: str) -> str:
    return str(d.secrets.read(_secret_name(d, account_id))["signing_secret"])


def rotate_webhook_secret(d: AlertsNeeds, p: Principal, webhook_id: str) -> str:
    """A new signing secret for one webhook (shown once). The previous one keeps signing
    alongside it for ROTATION_OVERLAP_SECONDS."""
    p.require(Capability.MANAGE_INTEGRATIONS)
    hook = next((w for w in d.alert_settings.get(p.account_id).webhooks if w.id == webhook_id), None)
    if hook is None or hook.legacy_url is not None:
        # A legacy webhook gets its own secret on the next save of the settings.
        raise not_found("webhook", webhook_id)
    name = _webhook_secret_name(d, p.account_id, hook.id)
    stored = d.secrets.read(name)
    secret = _new_signing_secret()
    d.secrets.put_version(name, {"url": stored["url"], "signing_secret": secret,
                                 "previous_secret": stored["signing_secret"],
                                 "previous_until": int(time.time()) + ROTATION_OVERLAP_SECONDS})
    d.audit.put(AuditEvent(p.account_id, p.user_id, "rotated", "alert_settings", p.account_id,
                           "alert settings", {"webhook": {"before": hook.host, "after": hook.host}}))
    return secret


def _audit(d: AlertsNeeds, p: Principal, before: AlertSettings, after: AlertSettings) -> None:
    """Addresses as they are; webhooks by host only (a URL may carry a token)."""
    def view(s: AlertSettings) -> dict[str, Any]:
        return {"emails": sorted(s.emails), "webhook_hosts": [w.host for w in s.webhooks]}

    d.audit.put(AuditEvent(p.account_id, p.user_id, "changed", "alert_settings", p.account_id,
                           "alert settings", diff(view(before), view(after))))


def send_test(d: AlertsNeeds, p: Principal) -> bool:
    p.require(Capability.MANAGE_INTEGRATIONS)
    return emit(d, p.account_id, TEST, {"message": f"test alert requested by {p.user_id}"})


# -- delivery --------------------------------------------------------------------------------


def sign(secret: str, timestamp: int, body: bytes, previous: str | None = None) -> str:
    def mac(key: str) -> str:
        return hmac.new(key.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()

    out = f"t={timestamp},v1={mac(secret)}"
    return out + f",v1={mac(previous)}" if previous else out


def _summary(detail_type: str, detail: dict[str, Any]) -> str:
    what = detail.get("label") or detail.get("job_id") or detail.get("authorization_id") or ""
    reason = f": {detail['reason']}" if detail.get("reason") else ""
    return f"Switchyard — {detail_type} {what}{reason}".strip()


def deliver(d: AlertsNeeds, event: dict[str, Any]) -> dict[str, int]:
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
        body = json.dumps({"id": event.get("id"), "type": detail_type, "time": event.get("time"),
                           "detail": detail}, sort_keys=True).encode()
        legacy: str | None = None
        for hook in conf.webhooks:
            if hook.legacy_url is not None:
                legacy = legacy or _legacy_signing_secret(d, account_id)
                url, secret, previous = hook.legacy_url, legacy, None
            else:
                stored = d.secrets.read(_webhook_secret_name(d, account_id, hook.id))
                url, secret = stored["url"], stored["signing_secret"]
                previous = stored.get("previous_secret") if stored.get("previous_until", 0) > time.time() else None
            if _post(url, body, secret, previous):
                sent["webhooks"] += 1
    if transition_id:
        deliveries.sent(account_id, detail_type, transition_id, now=time.time())
    return sent


def _post(url: str, body: bytes, secret: str, previous: str | None = None) -> bool:
    from chalicelib.providers.http import HttpClient

    def prepare(headers: dict[str, str], payload: bytes | None) -> None:
        headers[SIGNATURE_HEADER] = sign(secret, int(time.time()), payload or b"", previous)

    client = HttpClient("alerts", label="alert webhook", secrets=[s for s in (secret, previous) if s])
    try:
        client.request("POST", url, "alerts.deliver", body=body, prepare=prepare, idempotent=True,
                       headers={"Content-Type": "application/json"})
        return True
    except Exception as exc:  # one bad endpoint never blocks the others
        log.warning("alert webhook failed", extra={"host": host_of(url),
                                                   "error": str(exc)})
        return False
