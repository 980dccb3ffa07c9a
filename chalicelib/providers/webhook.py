"""Webhooks: an audience's changes POSTed to an HTTPS endpoint as JSON batches.

The endpoint URL is part of the authorization (a non-secret field of every method's
credentials): rotating is per authorization, `check` can reach it, and a job moved to
another authorization must point at the same origin (its `provider_account`).

Every request (the check's ping, the export's batches) is

    POST <url>
    Content-Type: application/json
    Switchyard-Event-Batch-Id: <id>            same id = same events (an idempotency key)
    Switchyard-Signature: t=<unix>,v1=<hex>    hmac method: HMAC-SHA256(secret, "<t>.<body>")
    Authorization: Bearer <token> | Basic ...  bearer / basic methods

    {"events": [ {...}, ... ]}

A receiver verifies as docs/providers/webhook.md says. All HTTP goes through
providers/http.py (SSRF guard, retries, rate limit, counting, redaction).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, Field, SecretStr
from pydantic.config import JsonDict

from chalicelib.config import settings
from chalicelib.domain.catalog import AuthMethodSpec, JobType, ProviderSpec, Role, StepRef, WorkflowSpec
from chalicelib.domain.models import CheckResult, HealthStatus
from chalicelib.providers.base import Option, ProviderError
from chalicelib.providers.calls import CallCounter
from chalicelib.providers.events import SCHEMA_VERSION, build_events
from chalicelib.providers.http import HttpClient, HttpError, RateLimit, RetryPolicy, basic_auth_value
from chalicelib.providers.models import HeaderSecret, StrictModel
from chalicelib.providers.roles import StepContext

SECRET: JsonDict = {"x-secret": True}
SIGNATURE_HEADER = "Switchyard-Signature"
BATCH_HEADER = "Switchyard-Event-Batch-Id"
USER_AGENT = "Switchyard-Webhooks/1"
PING = "switchyard.ping"
# Receivers are often small services: 20 requests/s with a burst of 10, halved by a 429.
RATE = RateLimit(rate=20, burst=10)
# A check runs inside an API request: two attempts, 10 s in all.
CHECK_SECONDS = 10.0
CHECK_POLICY = RetryPolicy(max_attempts=2, max_sleep=2.0)
# A part stops sending when less than this (or twice its slowest batch) is left of the step.
STEP_MARGIN = 2.0


def _url_rules(value: str) -> str:
    parts = urllib.parse.urlsplit(value)
    schemes = ("https", "http") if settings().allow_private_urls else ("https",)
    if parts.scheme.lower() not in schemes:
        raise ValueError("must start with https://")
    if not parts.hostname:
        raise ValueError("must name a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain a user name or password (use the basic method)")
    if parts.fragment:
        raise ValueError("must not contain a #fragment")
    try:
        _ = parts.port  # raises on a port that is not a number, or out of range
    except ValueError:
        raise ValueError("has a port that is not valid") from None
    return value


Url = Annotated[
    str,
    Field(min_length=10, max_length=2048, description="Endpoint URL (https://...)",
          examples=["https://hooks.example.com/switchyard"]),
    AfterValidator(_url_rules),
]
FieldName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class NoAuth(StrictModel):
    """An endpoint that authenticates nothing (its URL is the only secret it has)."""

    url: Url


class BearerToken(StrictModel):
    """Sent as `Authorization: Bearer <token>`."""

    url: Url
    token: HeaderSecret = Field(
        min_length=8, max_length=4096, description="Bearer token (printable ASCII, no spaces)",
        json_schema_extra=SECRET)


class BasicAuth(StrictModel):
    """HTTP Basic authentication."""

    url: Url
    username: str = Field(min_length=1, max_length=256, pattern=r"^[^:]*$", description="User name")
    password: SecretStr = Field(min_length=1, max_length=1024, description="Password",
                                json_schema_extra=SECRET)


class HmacSecret(StrictModel):
    """Every request is signed with HMAC-SHA256 (header Switchyard-Signature)."""

    url: Url
    signing_secret: SecretStr = Field(min_length=16, max_length=1024,
                                      description="Signing secret shared with the receiver",
                                      json_schema_extra=SECRET)


class WebhookExportConfig(StrictModel):
    audience_id: str = Field(min_length=1, max_length=64, description="Audience to export")
    fields: list[FieldName] = Field(
        default_factory=lambda: ["email"], min_length=1, max_length=200,
        description="Profile fields sent with each event",
    )
    batch_size: int = Field(100, ge=1, le=1000, description="Events per request")
    include_removals: bool = Field(True, description="Also send members who left the audience")
    backfill: bool = Field(
        True, description="The first run sends every member; off: it only records who is a member"
    )


METHODS = ("none", "bearer", "basic", "hmac")

SPEC = ProviderSpec(
    id="webhook",
    name="Webhook",
    description="Send audience changes to your HTTPS endpoint as signed JSON events.",
    tags=("http", "events"),
    auth_methods=(
        AuthMethodSpec("none", "No authentication", "The endpoint checks nothing.", NoAuth),
        AuthMethodSpec("bearer", "Bearer token", "A token in the Authorization header.", BearerToken),
        AuthMethodSpec("basic", "Basic authentication", "A user name and password.", BasicAuth),
        AuthMethodSpec("hmac", "HMAC signature", "Each request is signed with a shared secret.", HmacSecret),
    ),
    workflows=(
        WorkflowSpec(
            id="webhook_audience_export",
            name="Webhook audience export",
            job_type=JobType.EXPORT,
            step=StepRef(Role.DESTINATION, "chalicelib.providers.webhook:WebhookAudienceExport"),
            description="POSTs who entered and left an audience as batches of JSON events.",
            auth_methods=METHODS,
            config_model=WebhookExportConfig,
        ),
    ),
)


# -- signing (what a receiver checks: docs/providers/webhook.md) --------------------------------


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The Switchyard-Signature header: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def encode_batch(events: Sequence[dict[str, Any]]) -> bytes:
    """The body: compact JSON, keys sorted, so a batch sent again is the same bytes."""
    return json.dumps({"events": list(events)}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def batch_id(run_id: str, first_row: int, count: int) -> str:
    """The same rows of the same run always get the same id (and the same events)."""
    return "bat_" + hashlib.sha256(f"{run_id}\x1f{first_row}\x1f{count}".encode()).hexdigest()[:32]


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).hostname or "?"


def origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    default = 443 if scheme == "https" else 80
    port = parts.port or default
    return f"{scheme}://{parts.hostname}" + ("" if port == default else f":{port}")


class Endpoint:
    """One authorization's endpoint: its URL, credentials and an HTTP client for them."""

    def __init__(self, method: str, creds: Any, counter: CallCounter | None, deadline: float | None,
                 policy: RetryPolicy | None = None) -> None:
        self.url = str(creds.url)
        self.host = _host(self.url)
        headers = {"User-Agent": USER_AGENT}
        hidden: list[str] = []
        self._signing: str | None = None
        if method == "bearer":
            token = creds.token.get_secret_value()
            headers["Authorization"] = f"Bearer {token}"
            hidden.append(token)
        elif method == "basic":
            value = basic_auth_value(creds.username, creds.password.get_secret_value())
            headers["Authorization"] = value
            hidden += [creds.password.get_secret_value(), value.split(" ", 1)[1]]
        elif method == "hmac":
            self._signing = creds.signing_secret.get_secret_value()
            hidden.append(self._signing)
        self.client = HttpClient("webhook", label=f"the endpoint {self.host}", secrets=hidden,
                                 counter=counter, deadline=deadline, headers=headers, rate_limit=RATE,
                                 policy=policy or RetryPolicy())

    def post(self, body: bytes, batch: str, operation: str) -> int:
        """POST one batch; returns the status (2xx) or raises HttpError. Idempotent: the
        batch id lets the receiver drop a batch it already has, so every retry is safe."""

        def sign(headers: dict[str, str], raw: bytes | None) -> None:
            if self._signing is not None:
                # Signed at each attempt: a retry carries a fresh timestamp.
                headers[SIGNATURE_HEADER] = signature(self._signing, raw or b"", int(time.time()))

        resp = self.client.request("POST", self.url, operation, body=body, idempotent=True, prepare=sign,
                                   headers={"Content-Type": "application/json", BATCH_HEADER: batch})
        return resp.status


def ping_body() -> bytes:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return encode_batch([{"schema_version": SCHEMA_VERSION, "event_id": "evt_" + secrets.token_hex(16),
                          "type": PING, "sent_at": now}])


class WebhookProvider:
    spec = SPEC

    def __init__(self, policy: RetryPolicy | None = None, check_policy: RetryPolicy = CHECK_POLICY) -> None:
        self.policy = policy or RetryPolicy()
        self.check_policy = check_policy

    def endpoint(self, method: str, credentials: Any, counter: CallCounter | None,
                 deadline: float | None, policy: RetryPolicy | None = None) -> Endpoint:
        return Endpoint(method, credentials, counter, deadline, policy or self.policy)

    def check(
        self,
        method: str,
        credentials: Any,
        resources: dict[str, str],
        counter: CallCounter | None = None,
    ) -> CheckResult:
        """POST a signed `switchyard.ping`: a 2xx is healthy. A refusal, a gone or wrong
        endpoint, or no answer at all is unhealthy with the reason; only 429/5xx (the
        receiver is busy or broken right now) is inconclusive (transient)."""
        ep = self.endpoint(method, credentials, counter, time.monotonic() + CHECK_SECONDS, self.check_policy)
        account = origin(ep.url)
        try:
            status = ep.post(ping_body(), "ping_" + secrets.token_hex(12), "ping")
        except HttpError as exc:
            if exc.kind in ("unavailable", "deadline"):
                raise
            reason = exc.reason
            if exc.status == 410:
                reason = f"endpoint gone: {exc.reason}"
            return CheckResult(HealthStatus.UNHEALTHY, reason, provider_account=account)
        return CheckResult(HealthStatus.HEALTHY, f"the endpoint {ep.host} accepted a ping ({status})",
                           provider_account=account)

    def options(
        self,
        method: str,
        credentials: Any,
        workflow: str,
        field: str,
        params: dict[str, str],
        counter: CallCounter | None = None,
    ) -> list[Option]:
        raise ProviderError(f"field {field!r} has no live options", field="field")

    def credential_hint(self, method: str, credentials: Any) -> str | None:
        host = _host(str(credentials.url))
        return f"{credentials.username} @ {host}" if method == "basic" else host



# -- the export (protocol: chalicelib/runs/export.py) ------------------------------------


@dataclass(frozen=True)
class Part:
    key: str  # what the log line names: "<n> batches to <host>"
    rows: int
    bytes: int
    skipped: tuple[int, ...] = ()  # a receiver takes any event: nothing is skipped for size


class WebhookAudienceExport:
    def __init__(self, provider: WebhookProvider) -> None:
        self.provider = provider

    def freeze(self, config: dict[str, Any]) -> dict[str, Any]:
        try:
            cfg = WebhookExportConfig.model_validate(config)
        except ValueError as exc:
            raise ProviderError(f"the export configuration is not valid: {exc}") from None
        return {"audience_id": cfg.audience_id, "fields": list(cfg.fields), "batch_size": cfg.batch_size,
                "include_removals": cfg.include_removals}

    def write_part(self, ctx: StepContext, frozen: dict[str, Any], part: int,
                   rows: Sequence[tuple[str, str, list[Any]]]) -> Part:
        """POST the rows as batches of `batch_size`, in order, until they are all sent or
        the step's time is nearly up; returns how many rows were delivered (2xx).

        Batches are cut from the part's first row, and their ids and event ids come from
        plan positions (`ctx.first_row`): a replay, or a next part that starts where a
        shorter attempt stopped, sends the very same batches."""
        ep = self.provider.endpoint(ctx.method, ctx.credentials, ctx.counter, ctx.deadline)
        size = int(frozen["batch_size"])
        events = build_events(ctx, frozen, part, rows, first_row=ctx.first_row)
        sent = batches = sent_bytes = 0
        slowest = 0.0
        while sent < len(events):
            if sent and time.monotonic() + max(STEP_MARGIN, 2 * slowest) > ctx.deadline:
                break  # the next step carries on from here
            chunk = events[sent:sent + size]
            body = encode_batch(chunk)
            started = time.monotonic()
            try:
                ep.post(body, batch_id(ctx.run_id, ctx.first_row + sent, len(chunk)), "events.post")
            except HttpError as exc:
                err = _export_error(exc, ctx.method)
                if sent and err.transient:
                    break  # keep what was delivered; the next step retries the rest
                raise err from None
            slowest = max(slowest, time.monotonic() - started)
            sent += len(chunk)
            batches += 1
            sent_bytes += len(body)
        return Part(key=f"{batches} batch{'es' if batches != 1 else ''} to {ep.host}", rows=sent,
                    bytes=sent_bytes)

    def write_manifest(self, ctx: StepContext, frozen: dict[str, Any], summary: dict[str, Any]) -> str:
        """Nothing: every batch stands alone, and events carry their run (docs/providers/webhook.md)."""
        return ""


def _export_error(exc: HttpError, method: str) -> ProviderError:
    """2xx is delivered, 410 stops the job, any other answer is retried: a
    receiver that refuses (other 4xx, a redirect) is often mid-deploy, and batches
    are idempotent, so the job backs off and resumes the same run; the failure window (10 h)
    caps the retries, then the job fails in the receiver's words. Except 401/403 when we send
    credentials (bearer, basic, signature): those were refused, so the authorization is
    unhealthy and the job fails at once (the fault matrix, docs/providers/http.md)."""
    if exc.status == 410:
        return ProviderError(f"{exc.reason} — the receiver says this endpoint is gone; nothing more "
                             "is sent", transient=False)
    if exc.status in (401, 403) and method != "none":
        return ProviderError(f"{exc.reason} — the receiver refused this authorization's credentials",
                             transient=False, auth=True)
    if exc.transient:
        return exc
    return ProviderError(exc.reason, transient=True, retry_after=exc.retry_after)


PROVIDER = WebhookProvider()

__all__ = ["PROVIDER", "SPEC", "WebhookAudienceExport", "WebhookProvider", "batch_id", "encode_batch",
           "signature"]
