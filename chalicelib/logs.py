"""Structured JSON logs with correlation ids (Powertools Logger), set up on first use.

Every module logs through the standard library, `logging.getLogger("switchyard.<area>")`.
Those loggers are children of "switchyard", to which `logger()` gives Powertools' JSON
handler: one JSON object per line with level, location, timestamp, service, the ids bound
for the current invocation, and any `extra=` fields. See docs/operations.md ("Logs").

Correlation ids are Powertools' thread-safe keys (a ContextVar), not its shared formatter
keys: a Lambda runs one invocation at a time, but the devserver runs several at once on
worker threads, and the health handler checks on a thread pool; a shared dict would hand
one invocation's ids to another's lines. `invocation()` starts every handler with no keys
and clears them when it ends, so a warm Lambda never carries one run's ids into the next
message's lines; `scope()` does the same for one record of a batch.

Redaction: exception messages are withheld from logged tracebacks unless the exception is
one of ours that never quotes input or credentials (its text is shown to users anyway), and
every credential value the process has parsed or loaded is replaced by "[redacted]" in the
final line, whatever field it ended up in.

Nothing here imports Powertools at import time (the cold-start budget): the Logger is
built by the first invocation.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any, cast

from chalice.app import Request

from chalicelib.config import settings
from chalicelib.domain.errors import AppError
from chalicelib.providers.base import ProviderError

if TYPE_CHECKING:
    from aws_lambda_powertools.logging import Logger

SERVICE = "switchyard"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
REDACTED = "[redacted]"
WITHHELD = "[message withheld: it may quote input or credentials]"
# Shorter values would redact ordinary words; credentials are longer.
MIN_SECRET_LENGTH = 6
MAX_SECRETS = 1024

# Path parameters logged under the run path's and health path's key names, so one query
# finds a job's (or an authorization's) API requests and its runs alike.
PATH_IDS = {"job_id": "job_id", "auth_id": "authorization_id", "audience_id": "audience_id",
            "profile_id": "profile_id", "rule_id": "rule_id"}

_lock = threading.Lock()  # building the Logger
_secrets_lock = threading.Lock()  # a separate lock: formatting a line takes it, also while building
_logger: Logger | None = None
_secrets: dict[str, None] = {}  # insertion-ordered set: the oldest go first past MAX_SECRETS
_cold = True

request_log = logging.getLogger("switchyard.request")


class _Stdout:
    """Writes to whatever sys.stdout is at the time (Lambda sends stdout to CloudWatch;
    tests capture it with capsys), not to the stream current when the Logger was built."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def logger() -> Logger:
    """The service's Powertools Logger, built once per process on first use."""
    global _logger
    if _logger is None:
        with _lock:
            if _logger is None:
                _logger = _build()
    return _logger


def _build() -> Logger:
    from aws_lambda_powertools.logging import Logger

    level = settings().log_level.upper()
    built = Logger(service=SERVICE, level=level if level in LEVELS else "INFO", stream=cast("IO[str]", _Stdout()),
                   logger_formatter=_formatter())
    if level not in LEVELS:
        logging.getLogger("switchyard.logs").warning(
            "SWITCHYARD_LOG_LEVEL is not a level; using INFO", extra={"given": level[:20]})
    return built


# -- correlation ids ---------------------------------------------------------------------


def bind(**keys: object) -> None:
    """Add ids to every line logged from here until the enclosing scope or invocation ends."""
    clean = {k: v for k, v in keys.items() if v is not None and v != ""}
    if clean:
        logger().thread_safe_append_keys(**clean)


def current() -> dict[str, Any]:
    return dict(logger().thread_safe_get_current_keys())


@contextlib.contextmanager
def scope(**keys: object) -> Iterator[None]:
    """Bind keys for a block; on exit the keys are back to what they were before it, so one
    record of a batch (or one job) never lends its ids to the next."""
    lg = logger()
    saved = dict(lg.thread_safe_get_current_keys())
    bind(**keys)
    try:
        yield
    finally:
        lg.thread_safe_clear_keys()
        if saved:
            lg.thread_safe_append_keys(**saved)


def _lambda_keys(context: Any) -> dict[str, Any]:
    global _cold
    cold, _cold = _cold, False
    # Powertools' own names for these (as inject_lambda_context writes them).
    return {
        "function_name": getattr(context, "function_name", None),
        "function_request_id": getattr(context, "aws_request_id", None),
        "cold_start": cold,
    }


@contextlib.contextmanager
def invocation(handler: str, context: Any = None, **keys: object) -> Iterator[None]:
    """One Lambda invocation: starts with no ids but these, and leaves none behind."""
    lg = logger()
    lg.thread_safe_clear_keys()
    try:
        bind(handler=handler, **_lambda_keys(context), **keys)
        yield
    finally:
        lg.thread_safe_clear_keys()


def middleware(event: Any, get_response: Callable[[Any], Any]) -> Any:
    """Chalice middleware for every handler type (registered in app.py)."""
    if isinstance(event, Request):
        return _http(event, get_response)
    context = getattr(event, "context", None)
    raw = event.to_dict() if hasattr(event, "to_dict") else {}
    keys: dict[str, Any] = {}
    records = raw.get("Records") if isinstance(raw, dict) else None
    if isinstance(records, list) and records:
        # SQS: the queue's name; each record's message id is bound by its worker.
        keys["queue"] = str(records[0].get("eventSourceARN", "")).rsplit(":", 1)[-1] or None
    elif isinstance(raw, dict) and raw.get("id"):
        keys["correlation_id"] = str(raw["id"])  # the EventBridge event of a schedule
    with invocation(_handler_name(context), context, **keys):
        return get_response(event)


def _handler_name(context: Any) -> str:
    # Chalice names functions <app>-<stage>-<handler>.
    name = str(getattr(context, "function_name", "") or "")
    return name.rsplit("-", 1)[-1] if name else "unknown"


def _http(request: Any, get_response: Callable[[Any], Any]) -> Any:
    ctx = request.context or {}
    authorizer = ctx.get("authorizer") or {}
    lambda_context = getattr(request, "lambda_context", None)
    # API Gateway's request id (what its access logs and X-Amzn-RequestId say); the Lambda
    # request id where there is none (chalice local).
    request_id = ctx.get("requestId") or getattr(lambda_context, "aws_request_id", None)
    params = request.uri_params or {}
    started = time.monotonic()
    with invocation("api", lambda_context, request_id=request_id, correlation_id=request_id,
                    account_id=authorizer.get("account_id"), user_id=authorizer.get("user_id"),
                    route=f"{request.method} {ctx.get('resourcePath') or request.path}",
                    **{key: params[name] for name, key in PATH_IDS.items() if name in params}):
        response = get_response(request)
        request_log.info("request", extra={"status": getattr(response, "status_code", None),
                                           "duration_ms": round((time.monotonic() - started) * 1000, 1)})
        return response


# -- redaction ---------------------------------------------------------------------------


def redact(*values: Any) -> None:
    """Never print these values: credentials this process has parsed or loaded."""
    with _secrets_lock:
        for value in values:
            if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH:
                _secrets.pop(value, None)
                _secrets[value] = None
        while len(_secrets) > MAX_SECRETS:
            del _secrets[next(iter(_secrets))]


def scrub(text: str) -> str:
    with _secrets_lock:
        known = list(_secrets)
    for secret in known:
        for form in (secret, json.dumps(secret)[1:-1]):  # as is, and as escaped in JSON
            if form in text:
                text = text.replace(form, REDACTED)
    return text


def _loggable_message(exc: BaseException) -> bool:
    """Ours, and written never to quote input or credentials (users see these texts)."""
    return isinstance(exc, AppError | ProviderError) or getattr(type(exc), "loggable", False) is True


def safe_traceback(exc: BaseException) -> str:
    """A traceback with its frames and exception types, oldest first like Python's, whose
    messages are shown only when `_loggable_message` allows (a botocore
    ParamValidationError quotes the value it refused, a KeyError its key)."""
    entries: list[tuple[BaseException, str]] = []  # newest first, with how it follows the older
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        older: BaseException | None = None
        link = ""
        if current.__cause__ is not None:
            older, link = current.__cause__, "The above exception was the direct cause of the following exception:"
        elif current.__context__ is not None and not current.__suppress_context__:
            older, link = current.__context__, "During handling of the above exception, another exception occurred:"
        entries.append((current, link if older is not None and id(older) not in seen else ""))
        current = older
    out: list[str] = []
    for item, link in reversed(entries):
        if link:
            out.append(f"\n\n{link}\n\n")
        kind = type(item)
        name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
        out.append("Traceback (most recent call last):\n"
                   + "".join(traceback.format_list(traceback.extract_tb(item.__traceback__)))
                   + f"{name}: {str(item) if _loggable_message(item) else WITHHELD}")
    return "".join(out)


def _formatter() -> Any:
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

    class SafeFormatter(LambdaPowertoolsFormatter):
        def formatException(self, ei: Any) -> str:
            exc = ei[1] if isinstance(ei, tuple) else None
            return safe_traceback(exc) if isinstance(exc, BaseException) else ""

        def _extract_log_exception(self, log_record: logging.LogRecord) -> Any:
            name, text, _notes = super()._extract_log_exception(log_record)
            return name, text, None  # notes are free text added anywhere: left out

        def serialize(self, log: Any) -> str:
            return scrub(super().serialize(log))

    # serialize_stacktrace off: its "value" field is the exception's message, unfiltered.
    # `name`: the module's logger (switchyard.engine, switchyard.health ...), to filter by area.
    return SafeFormatter(utc=True, use_rfc3339=True, serialize_stacktrace=False, json_default=str,
                         name="%(name)s")


__all__ = [
    "SERVICE", "bind", "current", "invocation", "logger", "middleware", "redact", "safe_traceback",
    "scope", "scrub",
]
