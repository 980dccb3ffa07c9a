"""The only reader of the environment. Read lazily, on first use, never at import."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

# Queue names are fixed (one stage per AWS account and region): Chalice's
# @app.on_sqs_message(queue=...) needs a literal at import time, before any settings exist.
RUNS_QUEUE = "switchyard-runs"
HEALTH_QUEUE = "switchyard-health"
ALERTS_QUEUE = "switchyard-alerts"


@dataclass(frozen=True)
class Settings:
    stage: str
    region: str
    table_name: str
    # Profiles (the data plane) live apart from the control plane's small items.
    profiles_table_name: str
    runs_queue_name: str
    # The URL saves a GetQueueUrl per cold start; CloudFormation's Ref of a queue is its URL.
    runs_queue_url: str | None
    health_queue_name: str
    event_bus_name: str
    alerts_topic_name: str
    secret_prefix: str
    # Requests to AWS through the provider layer (S3/STS of customer accounts), and the
    # read timeout of one HTTP attempt of an HTTP provider (providers/http.py).
    provider_timeout_seconds: float
    # HTTP providers: connect timeout of one attempt, and the total time one call may take
    # with its retries and rate-limit waits (never past the step's own deadline).
    provider_connect_timeout_seconds: float
    provider_call_seconds: float
    # Off in every deployed stage: user-supplied URLs (webhooks) may not reach private,
    # loopback, link-local or reserved addresses, and must be https. The local stack and
    # the tests turn it on to talk to receivers on 127.0.0.1 (http allowed too).
    allow_private_urls: bool
    token_cache_seconds: int
    max_body_bytes: int
    # Mailchimp's API base URL, `{dc}` standing for the account's data center, and its
    # OAuth host. Only the local stack and tests point them elsewhere (a fake on 127.0.0.1).
    mailchimp_base_url: str = "https://{dc}.api.mailchimp.com/3.0"
    mailchimp_oauth_url: str = "https://login.mailchimp.com"
    # FullContact's API origin; tests and the local stack point it at a local fake.
    fullcontact_base_url: str = "https://api.fullcontact.com"
    # Google: the Tag Manager API v2 base, the OAuth token host (`/token`) and the consent
    # page. Only the local stack and tests point them elsewhere (a fake on 127.0.0.1).
    gtm_base_url: str = "https://tagmanager.googleapis.com/tagmanager/v2"
    google_oauth_url: str = "https://oauth2.googleapis.com"
    google_authorize_url: str = "https://accounts.google.com/o/oauth2/v2/auth"
    # Level of the service's JSON logs (chalicelib/logs.py): DEBUG, INFO, WARNING, ERROR.
    log_level: str = "INFO"


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


@lru_cache(maxsize=1)
def settings() -> Settings:
    stage = _env("SWITCHYARD_STAGE", "local") or "local"
    return Settings(
        stage=stage,
        region=_env("AWS_REGION") or _env("AWS_DEFAULT_REGION") or "us-east-1",
        table_name=_env("SWITCHYARD_TABLE", f"switchyard-{stage}-main") or "",
        profiles_table_name=_env("SWITCHYARD_PROFILES_TABLE", f"switchyard-{stage}-profiles") or "",
        runs_queue_name=_env("SWITCHYARD_RUNS_QUEUE", RUNS_QUEUE) or "",
        runs_queue_url=_env("SWITCHYARD_RUNS_QUEUE_URL"),
        health_queue_name=_env("SWITCHYARD_HEALTH_QUEUE", HEALTH_QUEUE) or "",
        event_bus_name=_env("SWITCHYARD_EVENT_BUS", f"switchyard-{stage}") or "",
        alerts_topic_name=_env("SWITCHYARD_ALERTS_TOPIC", f"switchyard-{stage}-alerts") or "",
        secret_prefix=_env("SWITCHYARD_SECRET_PREFIX", f"switchyard/{stage}") or "",
        provider_timeout_seconds=float(_env("SWITCHYARD_PROVIDER_TIMEOUT", "10") or 10),
        provider_connect_timeout_seconds=float(_env("SWITCHYARD_PROVIDER_CONNECT_TIMEOUT", "5") or 5),
        provider_call_seconds=float(_env("SWITCHYARD_PROVIDER_CALL_SECONDS", "25") or 25),
        allow_private_urls=_flag(_env("SWITCHYARD_ALLOW_PRIVATE_URLS")),
        token_cache_seconds=int(_env("SWITCHYARD_TOKEN_CACHE_SECONDS", "60") or 60),
        max_body_bytes=int(_env("SWITCHYARD_MAX_BODY_BYTES", str(256 * 1024)) or 262144),
        mailchimp_base_url=_env("SWITCHYARD_MAILCHIMP_BASE_URL", "https://{dc}.api.mailchimp.com/3.0") or "",
        mailchimp_oauth_url=_env("SWITCHYARD_MAILCHIMP_OAUTH_URL", "https://login.mailchimp.com") or "",
        fullcontact_base_url=(_env("SWITCHYARD_FULLCONTACT_BASE_URL", "https://api.fullcontact.com")
                              or "").rstrip("/"),
        gtm_base_url=(_env("SWITCHYARD_GTM_BASE_URL", "https://tagmanager.googleapis.com/tagmanager/v2")
                      or "").rstrip("/"),
        google_oauth_url=(_env("SWITCHYARD_GOOGLE_OAUTH_URL", "https://oauth2.googleapis.com") or "").rstrip("/"),
        google_authorize_url=_env("SWITCHYARD_GOOGLE_AUTHORIZE_URL",
                                  "https://accounts.google.com/o/oauth2/v2/auth") or "",
        log_level=(_env("SWITCHYARD_LOG_LEVEL", "INFO") or "INFO").strip().upper(),
    )


def reset() -> None:
    """Forget the cached settings (tests and the local runner change the environment)."""
    settings.cache_clear()
