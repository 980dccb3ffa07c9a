"""One origin for the local stack: /api/* through Chalice's local API Gateway, the rest static.

This plays the part of CloudFront + API Gateway in production. Errors raised by the
gateway itself (no Authorization header, unknown route, authorizer failure) are
answered with the API envelope, as the production "gateway responses" are configured
to do; responses produced by the app pass through untouched.
"""

from __future__ import annotations

import json
import logging
import math
import mimetypes
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from chalice.app import Chalice
from chalice.config import Config
from chalice.local import (
    ChaliceRequestHandler,
    CustomLocalChalice,
    ForbiddenError,
    LocalChalice,
    LocalDevServer,
    LocalGateway,
    LocalGatewayAuthorizer,
    LocalGatewayException,
    NotAuthorizedError,
    ThreadedHTTPServer,
)

from chalicelib.domain import quota
from chalicelib.domain.tokens import HEADER_PATTERN
from devserver import holds as dev_holds
from devserver.console import Console, begin
from devserver.quota import UsagePlanLimiter

ROOT = Path(__file__).resolve().parent.parent
API_PREFIX = "/api"
log = logging.getLogger("devserver.gateway")

# What API Gateway's gateway responses are configured to return (see infra/ and docs/).
UNAUTHORIZED = ("auth.invalid_token", "a valid API token is required: send 'Authorization: Bearer <token>'")
ACCESS_DENIED = ("auth.forbidden", "this token is not allowed to call this route")
NO_ROUTE = ("route.not_found", "no such route: {method} {path}")
AUTHORIZER_FAILED = ("internal", "something went wrong on our side; it was logged")
# infra/edge.json's THROTTLED and INVALID_API_KEY gateway responses (per-account usage plan).
THROTTLED = ("api.throttled", "too many requests: retry after a second")
NO_USAGE_KEY = ("api.account_not_ready",
                "this account has no request quota yet: the operator must run the usage-key backfill")
_HEADER = re.compile(HEADER_PATTERN)


class Throttled(LocalGatewayException):
    CODE = 429


class NoUsageKey(LocalGatewayException):
    CODE = 503


class KeyedAuthorizer(LocalGatewayAuthorizer):
    """Chalice's local authorizer plus what the deployed API Gateway adds around it: the
    authorizer's identityValidationExpression (a malformed header is refused before the
    authorizer runs) and the usage plan (the request counts against the key the authorizer
    names, on routes that require a key)."""

    def __init__(self, app_object: Chalice, limiter: UsagePlanLimiter) -> None:
        super().__init__(app_object)
        self.limiter = limiter

    def authorize(self, raw_path: str, lambda_event: Any, lambda_context: Any) -> Any:
        route = self._route_for_event(lambda_event)
        header = (lambda_event.get("headers") or {}).get("authorization")
        if route is not None and route.authorizer is not None and header is not None and not _HEADER.match(header):
            raise NotAuthorizedError({"x-amzn-RequestId": lambda_context.aws_request_id,
                                      "x-amzn-ErrorType": "UnauthorizedException"}, b"")
        return super().authorize(raw_path, lambda_event, lambda_context)

    def _update_lambda_event(self, lambda_event: Any, auth_result: Any) -> Any:
        route = self._route_for_event(lambda_event)
        if route is not None and route.api_key_required:
            key = auth_result.get("usageIdentifierKey")
            if not key or not self.limiter.in_plan(key):
                raise NoUsageKey({}, b"")
            wait = self.limiter.take(key)
            if wait > 0:
                # API Gateway sends a fixed Retry-After; the local one says the same.
                raise Throttled({"Retry-After": str(max(quota.RETRY_AFTER_SECONDS, math.ceil(wait)))}, b"")
        return super()._update_lambda_event(lambda_event, auth_result)


class KeyedLocalGateway(LocalGateway):
    def __init__(self, app_object: Chalice, config: Config, limiter: UsagePlanLimiter) -> None:
        super().__init__(app_object, config)
        self._authorizer = KeyedAuthorizer(app_object, limiter)


# The SPA's Content-Security-Policy, the same as CloudFront's (infra/edge.json, checked by
# tests/test_infra.py): scripts, styles, images and API calls from this origin only, no
# plugins, and no page may frame the app (clickjacking).
CONTENT_SECURITY_POLICY = "default-src 'self'; object-src 'none'; frame-ancestors 'none'"
STATIC_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff"}


def static_root() -> Path:
    dist = ROOT / "web" / "dist"
    return dist if (dist / "index.html").exists() else ROOT / "web" / "static"


def load_app(stage: str = "local") -> tuple[Chalice, Config]:
    """Build the app and its stage config the way `chalice local --stage <stage>` does."""
    from chalice.cli.factory import CLIFactory
    from chalice.deploy.validate import validate_routes

    factory = CLIFactory(project_dir=str(ROOT), environ=os.environ)
    config = factory.create_config_obj(chalice_stage_name=stage)
    app = config.chalice_app  # imports app.py after applying the stage's environment variables
    validate_routes(app.routes)
    # Same trick as chalice.local.create_local_server: a thread-local current_request. Once
    # per app object: patching it twice would make CustomLocalChalice its own base.
    if not isinstance(app, LocalChalice):
        CustomLocalChalice.__bases__ = (LocalChalice, app.__class__)
        app.__class__ = CustomLocalChalice
    return app, config


def envelope(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "fields": {}, "details": {}}}).encode()


class DevRequestHandler(ChaliceRequestHandler):
    """Chalice's request handler for /api/*, a small static file server for the rest."""

    server_version = "switchyard-devserver"
    # Chalice's handler writes a response's headers and its body in two sends. On a kept-alive
    # connection Nagle's algorithm held the body until the client acknowledged the headers,
    # and the client delays that acknowledgement: ~40 ms added to every request after a
    # connection's first (a browser's, the SDKs').
    disable_nagle_algorithm = True
    static_dir: Path = ROOT / "web" / "static"
    quiet = False
    console: Console | None = None  # None: http.server's access lines on stderr
    holds: dev_holds.Holds | None = None  # the test-only control API, when enabled
    limiter: UsagePlanLimiter | None = None  # the stage's usage plan; None: no throttling

    def __init__(self, request: Any, client_address: Any, server: Any, app_object: Chalice, config: Config) -> None:
        # Kept before the base class handles the request in its constructor.
        self.app_object, self.chalice_config = app_object, config
        super().__init__(request, client_address, server, app_object, config)

    def _generic_handle(self) -> None:
        begin(self.command, self.path)
        url = urlsplit(self.path)
        path = url.path
        if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
            self._handle_api(path)
        elif path.startswith(dev_holds.PREFIX + "/"):
            self._handle_control(path, url.query)
        elif self.command in ("GET", "HEAD"):
            self._handle_static(path)
        else:
            self._send_http_response(405, {"Allow": "GET, HEAD", "Content-Type": "text/plain"},
                                     b"static files are read-only\n")

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = _generic_handle

    # --- /api/* ----------------------------------------------------------------------------

    def _handle_api(self, path: str) -> None:
        headers, body = self._parse_payload()
        gateway = self.local_gateway if self.limiter is None else KeyedLocalGateway(
            self.app_object, self.chalice_config, self.limiter)
        try:
            response = gateway.handle_request(
                method=self.command, path=self.path, headers=headers, body=body
            )
        except LocalGatewayException as exc:
            self._send_gateway_error(exc, path)
            return
        except Exception:
            # API Gateway answers an authorizer crash with 500 AUTHORIZER_FAILURE.
            traceback.print_exc(file=sys.stderr)
            self._send_envelope(500, *AUTHORIZER_FAILED, {})
            return
        status = response["statusCode"]
        out = response["headers"].copy()
        out.update(response["multiValueHeaders"])
        if status == 405 and self._chalice_error(response) == "MethodNotAllowedError":
            # In API Gateway a method the app does not define is a missing resource:
            # MISSING_AUTHENTICATION_TOKEN, which the gateway responses turn into a 404.
            code, message = NO_ROUTE
            self._send_envelope(404, code, message.format(method=self.command, path=path), {})
            return
        response = self._handle_binary(response)
        self._send_http_response(status, out, response["body"])

    @staticmethod
    def _chalice_error(response: dict[str, Any]) -> str | None:
        try:
            return str(json.loads(response.get("body") or "{}").get("Code"))
        except (ValueError, AttributeError):
            return None

    def _send_gateway_error(self, exc: LocalGatewayException, path: str) -> None:
        extra = {k: v for k, v in exc.headers.items() if k.lower() == "x-amzn-requestid"}
        if isinstance(exc, Throttled):
            self._send_envelope(429, *THROTTLED, {**extra, **exc.headers})
        elif isinstance(exc, NoUsageKey):
            self._send_envelope(503, *NO_USAGE_KEY, extra)
        elif isinstance(exc, NotAuthorizedError):
            self._send_envelope(401, *UNAUTHORIZED, extra)
        elif isinstance(exc, ForbiddenError) and exc.headers.get("x-amzn-ErrorType") == "AccessDeniedException":
            self._send_envelope(403, *ACCESS_DENIED, extra)
        elif isinstance(exc, ForbiddenError):
            code, message = NO_ROUTE
            self._send_envelope(404, code, message.format(method=self.command, path=path), extra)
        else:
            self._send_envelope(exc.CODE or 500, *AUTHORIZER_FAILED, extra)

    def _send_envelope(self, status: int, code: str, message: str, extra: dict[str, Any]) -> None:
        headers = {"Content-Type": "application/json", "Cache-Control": "no-store", **extra}
        self._send_http_response(status, headers, envelope(code, message))

    # --- the devserver's own control API (devserver/holds.py) ------------------------------

    def _handle_control(self, path: str, query: str) -> None:
        if self.holds is None:
            self._send_http_response(404, {"Content-Type": "text/plain"}, b"not found\n")
            return
        _, body = self._parse_payload()
        status, out = self.holds.control(self.command, path, query, body or b"")
        headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
        self._send_http_response(status, headers, json.dumps(out).encode() if out is not None else b"")

    # --- static files -----------------------------------------------------------------------

    def _handle_static(self, path: str) -> None:
        root = self.static_dir.resolve()
        rel = unquote(path).lstrip("/")
        target = (root / rel).resolve() if rel else root / "index.html"
        if target.is_dir():
            target = target / "index.html"
        if not target.is_relative_to(root):
            self._send_http_response(404, {"Content-Type": "text/plain", **STATIC_HEADERS}, b"not found\n")
            return
        if not target.is_file():
            last = rel.rsplit("/", 1)[-1]
            if "." in last or not (root / "index.html").is_file():
                self._send_http_response(404, {"Content-Type": "text/plain", **STATIC_HEADERS}, b"not found\n")
                return
            target = root / "index.html"  # client-side routes of the SPA
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in ("application/javascript", "application/json"):
            ctype += "; charset=utf-8"
        cache = "no-cache" if target.name == "index.html" else "public, max-age=60"
        data = target.read_bytes()
        if self.command == "HEAD":
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", cache)
            for name, value in STATIC_HEADERS.items():
                self.send_header(name, value)
            self.end_headers()
            return
        self._send_http_response(200, {"Content-Type": ctype, "Cache-Control": cache, **STATIC_HEADERS}, data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.quiet:
            return
        if self.console is None:
            super().log_request(code, size)
        else:
            self.console.access(int(code) if isinstance(code, int) else code)

    def log_message(self, format: str, *args: Any) -> None:
        if not self.quiet:
            super().log_message(format, *args)


def make_server(app: Chalice, config: Config, host: str, port: int, *, quiet: bool = False,
                console: Console | None = None, holds: dev_holds.Holds | None = None,
                limiter: UsagePlanLimiter | None = None) -> LocalDevServer:
    handler = type("Handler", (DevRequestHandler,),
                   {"static_dir": static_root(), "quiet": quiet, "console": console, "holds": holds,
                    "limiter": limiter})
    return LocalDevServer(app, config, host, port, handler_cls=handler, server_cls=ThreadedHTTPServer)
