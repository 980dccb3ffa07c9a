"""The only reader of the environment. Read lazily, on first use, never at import (one
exception: the health sweep's schedule, at the end of this module)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache

from chalicelib.domain import quota

# The queues' labels. Chalice's @app.on_sqs_message(queue=...) needs a literal at import
# time, before any settings exist; the real queue carries the stage (`switchyard-<stage>-runs`:
# two stages can share an AWS account and region). `stage_queue` turns a label into the
# stage's name; packaging points each event source at its stage's queue (infra/package.py).
RUNS_QUEUE = "switchyard-runs"
HEALTH_QUEUE = "switchyard-health"
ALERTS_QUEUE = "switchyard-alerts"
BACKFILL_QUEUE = "switchyard-backfill"
REALTIME_QUEUE = "switchyard-realtime"
# Chalice's @on_dynamodb_record also wants a literal: the package sets the real one, the
# profiles table's StreamArn, through the merge template (infra/package.py).
PROFILES_STREAM_ARN = "arn:aws:dynamodb:us-east-1:000000000000:table/switchyard-profiles/stream/set-by-package"
COLLECT_QUEUE = "switchyard-collect.fifo"
_LABEL = re.compile(r"^switchyard-(runs|health|alerts|backfill|realtime|collect)(-dlq)?(\.fifo)?$")


def stage_queue(label: str, stage: str | None = None) -> str:
    """The stage's name of a queue label (`switchyard-runs` -> `switchyard-prod-runs`, DLQs
    too); any other name (an operator's override) as it is."""
    if not _LABEL.match(label):
        return label
    return f"switchyard-{stage or settings().stage}-{label.removeprefix('switchyard-')}"


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
    backfill_queue_name: str
    realtime_queue_name: str
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
    # The API Gateway usage plan every account's API key joins (per-account throttling,
    # domain/quota.py); the operator's account bootstrap adds keys to it.
    usage_plan_id: str | None
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


def aws_endpoint(service: str) -> str:
    """The endpoint overrides botocore applies to `service`: the general one and the
    service's own (AWS_ENDPOINT_URL_<SERVICE>), as one text."""
    own = "AWS_ENDPOINT_URL_" + service.upper().replace("-", "_")
    return f"{_env('AWS_ENDPOINT_URL') or ''} {_env(own) or ''}"


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
        backfill_queue_name=_env("SWITCHYARD_BACKFILL_QUEUE", BACKFILL_QUEUE) or "",
        realtime_queue_name=_env("SWITCHYARD_REALTIME_QUEUE", REALTIME_QUEUE) or "",
        event_bus_name=_env("SWITCHYARD_EVENT_BUS", f"switchyard-{stage}") or "",
        alerts_topic_name=_env("SWITCHYARD_ALERTS_TOPIC", f"switchyard-{stage}-alerts") or "",
        secret_prefix=_env("SWITCHYARD_SECRET_PREFIX", f"switchyard/{stage}") or "",
        provider_timeout_seconds=float(_env("SWITCHYARD_PROVIDER_TIMEOUT", "10") or 10),
        provider_connect_timeout_seconds=float(_env("SWITCHYARD_PROVIDER_CONNECT_TIMEOUT", "5") or 5),
        provider_call_seconds=float(_env("SWITCHYARD_PROVIDER_CALL_SECONDS", "25") or 25),
        allow_private_urls=_flag(_env("SWITCHYARD_ALLOW_PRIVATE_URLS")),
        token_cache_seconds=int(_env("SWITCHYARD_TOKEN_CACHE_SECONDS", "1") or 1),
        max_body_bytes=int(_env("SWITCHYARD_MAX_BODY_BYTES", str(256 * 1024)) or 262144),
        usage_plan_id=_env("SWITCHYARD_USAGE_PLAN_ID"),
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


def account_limits() -> tuple[float, int]:
    """Per-account API rate (requests/s) and burst: SWITCHYARD_ACCOUNT_RATE_LIMIT and
    SWITCHYARD_ACCOUNT_BURST_LIMIT, else domain/quota.py's defaults. Read by the packaging
    (the deployed usage plan) and by the local stack (moto's), never by a Lambda."""
    return (float(_env("SWITCHYARD_ACCOUNT_RATE_LIMIT") or quota.DEFAULT_RATE_LIMIT),
            int(_env("SWITCHYARD_ACCOUNT_BURST_LIMIT") or quota.DEFAULT_BURST_LIMIT))


def reset() -> None:
    """Forget the cached settings (tests and the local runner change the environment)."""
    settings.cache_clear()


# -- the health sweep's schedule ---------------------------------------------------------
# The one setting read when the app module is imported: `chalice package` writes the
# EventBridge rule from the @schedule decorator, so the expression must exist then. It is
# a string check only (no I/O), and a bad value stops the import (and so the package)
# with the reason, instead of deploying a sweep that never runs (docs/health.md).

SWEEP_SCHEDULE_VARIABLE = "SWITCHYARD_HEALTH_SWEEP_SCHEDULE"
DEFAULT_SWEEP_SCHEDULE = "cron(0 5 * * ? *)"  # daily, 05:00 UTC

_RATE_MINUTES = {"minute": 1, "minutes": 1, "hour": 60, "hours": 60, "day": 1440, "days": 1440}


def sweep_schedule() -> str:
    return check_sweep_schedule(_env(SWEEP_SCHEDULE_VARIABLE, DEFAULT_SWEEP_SCHEDULE) or DEFAULT_SWEEP_SCHEDULE)


def check_sweep_schedule(text: str) -> str:
    """An EventBridge expression that sweeps every day (SPEC rule 7: every authorization is
    checked daily) and at most hourly (each sweep checks every authorization against its
    provider): `rate(N minutes|hours|day)` from 60 minutes to 1 day, or
    `cron(M H * * ? *)` with one minute and any hours. Returns it; ValueError otherwise."""
    expr = " ".join(text.split())
    problem = _rate_problem(expr) if expr.startswith("rate(") else _cron_problem(expr)
    if problem:
        raise ValueError(f"{SWEEP_SCHEDULE_VARIABLE}={text!r}: {problem}")
    return expr


def _rate_problem(expr: str) -> str | None:
    parts = expr[len("rate("):-1].split(" ") if expr.endswith(")") else []
    if len(parts) != 2 or not parts[0].isdigit() or parts[1] not in _RATE_MINUTES:
        return "expected rate(<number> minutes|hours|days)"
    n = int(parts[0])
    if (n == 1) != (not parts[1].endswith("s")):
        return "EventBridge wants the singular unit for 1 (rate(1 day)) and the plural otherwise"
    minutes = n * _RATE_MINUTES[parts[1]]
    if not 60 <= minutes <= 1440:
        return "the sweep must run at least daily and at most hourly (60 minutes to 1 day)"
    return None


def _cron_problem(expr: str) -> str | None:
    if not (expr.startswith("cron(") and expr.endswith(")")):
        return "expected cron(...) or rate(...), as EventBridge takes them"
    fields = expr[len("cron("):-1].split(" ")
    if len(fields) != 6:
        return "a cron expression has 6 fields: minutes hours day-of-month month day-of-week year"
    minute, hour, dom, month, dow, year = fields
    if not (minute.isdigit() and int(minute) <= 59):
        return "minutes must be one number 0-59 (the sweep runs at most hourly)"
    if not _hours_ok(hour):
        return "hours must be *, a number 0-23, a list (5,17), a range (1-5) or a step (*/6)"
    if (dom, month, dow, year) not in (("*", "*", "?", "*"), ("?", "*", "*", "*")):
        return "day-of-month, month, day-of-week and year must be * * ? * (the sweep runs every day)"
    return None


def _hours_ok(hour: str) -> bool:
    if hour == "*":
        return True
    if "/" in hour:
        start, _, step = hour.partition("/")
        return (start == "*" or (start.isdigit() and int(start) <= 23)) and step.isdigit() and 1 <= int(step) <= 23
    for part in hour.split(","):
        bounds = part.split("-")
        if len(bounds) > 2 or not all(b.isdigit() and int(b) <= 23 for b in bounds):
            return False
    return True
