"""HTTP in, service call, HTTP out: the one wrapper every route goes through.

It resolves the caller, parses and bounds the body, turns domain errors into the
API.md envelope, and records each route for the generated OpenAPI document.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chalice import Blueprint, Response

from chalicelib.config import settings
from chalicelib.domain.access import Capability, Principal, Role
from chalicelib.domain.errors import (
    AppError,
    BadRequest,
    ErrorKind,
    Invalid,
    TooLarge,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger("switchyard.api")

STATUS: dict[ErrorKind, int] = {
    ErrorKind.BAD_REQUEST: 400,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.UNSUPPORTED_MEDIA: 415,
    ErrorKind.INVALID: 422,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.INTERNAL: 500,
}
PREFIX = "/api/v1"
JSON_HEADERS: dict[str, str | list[str]] = {"Content-Type": "application/json", "Cache-Control": "no-store"}


@dataclass(frozen=True)
class QueryParam:
    name: str
    kind: str = "string"  # string | integer | boolean
    description: str = ""
    enum: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    default: Any = None


@dataclass
class RouteDoc:
    method: str
    path: str
    summary: str
    tag: str
    body: str | None
    response: str | None
    status: int
    query: tuple[QueryParam, ...]
    public: bool
    errors: tuple[int, ...]
    list_response: bool = False
    needs: str = "read"
    body_required: bool = True
    path_params: list[str] = field(default_factory=list)
    # Other models the success answer may take (a dry run's preview instead of the object).
    also: tuple[str, ...] = ()


ROUTES: list[RouteDoc] = []

PAGING = (
    QueryParam("limit", "integer", "Page size", minimum=1, maximum=200, default=50),
    QueryParam("cursor", "string", "Opaque cursor from next_cursor"),
)


def ok(data: Any, status: int = 200, *, next_cursor: str | None = None, paged: bool = False) -> Response:
    body: dict[str, Any] = {"data": data}
    if paged:
        body["next_cursor"] = next_cursor
    return Response(body=json.dumps(body, default=str), status_code=status, headers=JSON_HEADERS)


def no_content() -> Response:
    return Response(body="", status_code=204, headers={"Cache-Control": "no-store"})


def error_response(exc: AppError) -> Response:
    body = {
        "error": {
            "code": exc.code,
            "message": exc.message,
            "fields": exc.fields,
            "details": exc.details,
        }
    }
    return Response(body=json.dumps(body, default=str), status_code=STATUS[exc.kind], headers=JSON_HEADERS)


def principal_of(request: Any) -> Principal:
    ctx = (getattr(request, "context", None) or {}).get("authorizer") or {}
    if ctx.get("auth_error") == "unavailable":
        raise Unavailable("the token could not be checked right now; retry shortly",
                          code="auth.unavailable")
    if not ctx.get("account_id"):
        given = ((getattr(request, "headers", None) or {}).get("authorization") or "").strip()
        if given.lower().startswith("bearer wk_"):
            raise Unauthenticated("this is a write key; API routes take an API token (tok_…)",
                                  code="auth.write_key_not_api_token",
                                  fields={"Authorization": "a write key, not an API token"})
        raise Unauthenticated(
            "a valid API token is required: send 'Authorization: Bearer <token>'",
            code="auth.invalid_token",
        )
    return Principal(
        account_id=str(ctx["account_id"]),
        user_id=str(ctx["user_id"]),
        role=Role(ctx["role"]),
        token_id=str(ctx.get("token_id", "")),
    )


def read_json(request: Any, *, optional: bool = False) -> dict[str, Any]:
    """The body as a JSON object. `optional`: no body at all (whatever its Content-Type) is `{}`."""
    if optional and not (request.raw_body or b"").strip():
        return {}
    content_type = ((getattr(request, "headers", None) or {}).get("content-type") or "application/json")
    if content_type.split(";")[0].strip().lower() not in ("application/json", "text/json"):
        raise AppError(
            f"send the body as JSON with 'Content-Type: application/json' (got {content_type[:80]!r})",
            code="request.unsupported_media_type",
            kind=ErrorKind.UNSUPPORTED_MEDIA,
            fields={"Content-Type": "must be application/json"},
        )
    charset = _charset(content_type)
    if charset not in (None, "utf-8", "utf8"):
        raise AppError(
            f"send the body as UTF-8 JSON (the Content-Type says charset={charset[:40]!r})",
            code="request.unsupported_media_type",
            kind=ErrorKind.UNSUPPORTED_MEDIA,
            fields={"Content-Type": "charset must be utf-8"},
        )
    raw: bytes = request.raw_body or b""
    if len(raw) > settings().max_body_bytes:
        raise TooLarge(
            f"the body is {len(raw)} bytes; the limit is {settings().max_body_bytes}",
            fields={"body": "too large"},
        )
    if not raw.strip():
        raise BadRequest("a JSON object body is required", code="request.malformed_json",
                         fields={"body": "missing"})
    try:
        # JSON between systems is UTF-8 (RFC 8259 §8.1); json.loads(bytes) would also take
        # UTF-16/32. A UTF-8 byte order mark is ignored, as the RFC allows.
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(
            f"the body is not UTF-8 text (byte {exc.start} is not UTF-8); send JSON encoded as UTF-8",
            code="request.malformed_json",
            fields={"body": "not UTF-8"},
        ) from None
    try:
        value = json.loads(text.removeprefix("\ufeff"))
    except (ValueError, RecursionError) as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise BadRequest(
            f"the body is not valid JSON{where}",
            code="request.malformed_json",
            fields={"body": "malformed JSON"},
        ) from None
    if not isinstance(value, dict):
        raise Invalid("the body must be a JSON object", fields={"body": "must be an object"})
    _check_tree(value)
    return value


MAX_BODY_DEPTH = 32  # objects and arrays inside each other; real bodies use fewer than 10


def _charset(content_type: str) -> str | None:
    for param in content_type.split(";")[1:]:
        name, _, val = param.partition("=")
        if name.strip().lower() == "charset":
            return val.strip().strip('"').lower()
    return None


def _check_tree(body: dict[str, Any]) -> None:
    """Refuse what every field would refuse anyway, before any model sees it: nesting deeper
    than MAX_BODY_DEPTH (free-form fields such as config or filter would otherwise reach
    serialisers and recursive checks), and text that is not valid Unicode (an unpaired
    surrogate such as "\\ud800" is legal JSON but cannot be encoded to store or compare)."""
    stack: list[tuple[Any, str, int]] = [(body, "", 0)]
    while stack:
        node, path, depth = stack.pop()
        if depth > MAX_BODY_DEPTH:
            raise BadRequest(f"the body nests deeper than {MAX_BODY_DEPTH} levels at {path}",
                             code="request.too_deep", fields={path: "nested too deeply"})
        if isinstance(node, dict):
            for key, item in node.items():
                where = f"{path}.{key}" if path else str(key)
                if not _is_unicode(key):
                    raise Invalid("a field name is not valid Unicode text",
                                  fields={path or "body": "a field name is not valid Unicode text"})
                stack.append((item, where, depth + 1))
        elif isinstance(node, list):
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(node))
        elif isinstance(node, str) and not _is_unicode(node):
            raise Invalid(f"{path} is not valid Unicode text (it holds an unpaired surrogate)",
                          fields={path: "not valid Unicode text"})


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_query(request: Any, params: tuple[QueryParam, ...]) -> dict[str, Any]:
    given: dict[str, str] = dict(request.query_params or {})
    getlist = getattr(request.query_params, "getlist", None)
    repeated = sorted(k for k in given if getlist is not None and len(getlist(k)) > 1)
    if repeated:
        # Which of two values was meant is a guess (the last one won silently before).
        raise BadRequest(
            f"query parameter(s) given more than once: {', '.join(repeated)}",
            code="request.invalid_query",
            fields={k: "given more than once" for k in repeated},
        )
    known = {p.name for p in params}
    unknown = sorted(set(given) - known)
    if unknown:
        raise BadRequest(
            f"unknown query parameter(s): {', '.join(unknown)}",
            code="request.unknown_query",
            fields={u: "unknown parameter" for u in unknown},
        )
    out: dict[str, Any] = {}
    for p in params:
        raw = given.get(p.name)
        if raw is None or raw == "":
            out[p.name] = p.default
            continue
        out[p.name] = _coerce(p, raw)
    return out


def _coerce(p: QueryParam, raw: str) -> Any:
    def bad(msg: str) -> BadRequest:
        return BadRequest(f"query parameter {p.name!r} {msg}", code="request.invalid_query",
                          fields={p.name: msg})

    if len(raw) > 2048:
        raise bad("is too long")
    if p.kind == "integer":
        try:
            value: Any = int(raw)
        except ValueError:
            raise bad("must be an integer") from None
        if p.minimum is not None and value < p.minimum:
            raise bad(f"must be at least {p.minimum}")
        if p.maximum is not None and value > p.maximum:
            raise bad(f"must be at most {p.maximum}")
        return value
    if p.kind == "boolean":
        if raw.lower() not in ("true", "false", "1", "0"):
            raise bad("must be true or false")
        return raw.lower() in ("true", "1")
    if p.enum and raw not in p.enum:
        raise bad(f"must be one of: {', '.join(p.enum)}")
    return raw


def route(
    bp: Blueprint,
    path: str,
    method: str,
    *,
    summary: str,
    tag: str,
    authorizer: Any = None,
    body: str | None = None,
    response: str | None = None,
    also: tuple[str, ...] = (),
    status: int = 200,
    query: tuple[QueryParam, ...] = (),
    errors: tuple[int, ...] = (),
    list_response: bool = False,
    needs: Capability | None = None,
    body_required: bool = True,
) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Register a JSON route. The view gets (principal, **path_params, body=..., query=...).

    The role check runs before the body is read, so a role that may not act gets 403
    whatever it sent; services check again (defence in depth).
    """
    public = authorizer is None
    if needs is None:
        needs = Capability.READ if method == "GET" else Capability.MANAGE_INTEGRATIONS
    full = PREFIX + path
    ROUTES.append(
        RouteDoc(
            method=method,
            path=full,
            summary=summary,
            tag=tag,
            body=body,
            response=response,
            status=status,
            query=query,
            public=public,
            errors=errors,
            list_response=list_response,
            needs=needs.value,
            body_required=body_required,
            path_params=[s[1:-1] for s in full.split("/") if s.startswith("{")],
            also=also,
        )
    )

    def deco(fn: Callable[..., Response]) -> Callable[..., Response]:
        @functools.wraps(fn)
        def view(**params: Any) -> Response:
            request = bp.current_request
            try:
                kwargs: dict[str, Any] = dict(params)
                if not public:
                    principal = principal_of(request)
                    principal.require(needs)
                    kwargs["principal"] = principal
                if body is not None:
                    kwargs["body"] = read_json(request, optional=not body_required)
                kwargs["query"] = read_query(request, query)
                return fn(**kwargs)
            except AppError as exc:
                return error_response(exc)
            except Exception:
                # Exception text may quote inputs; log the type and trace only.
                log.exception("unhandled error in %s %s", method, full)
                return error_response(
                    AppError(
                        "something went wrong on our side; it was logged",
                        code="internal",
                        kind=ErrorKind.INTERNAL,
                    )
                )

        # Any content type reaches the view, which answers a non-JSON body with our own
        # 415 envelope instead of Chalice's bare one.
        kwargs: dict[str, Any] = {"methods": [method], "content_types": ["*/*"]}
        if authorizer is not None:
            # Counted against the caller's account key (the authorizer names it): API
            # Gateway throttles each account on its own (domain/quota.py).
            kwargs["authorizer"] = authorizer
            kwargs["api_key_required"] = True
        bp.route(full, **kwargs)(view)
        return fn

    return deco


def version_of(request: Any, body: dict[str, Any] | None) -> int | None:
    """Optimistic concurrency: If-Match header or 'version' in the body."""
    headers = getattr(request, "headers", None) or {}
    raw = headers.get("if-match") or headers.get("If-Match")
    if body is not None and "version" in body:
        v = body.pop("version")
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise Invalid("version must be a positive integer", fields={"version": "must be a positive integer"})
        return v
    if raw:
        raw = raw.strip().strip('"').removeprefix("W/").strip('"')
        if not raw.isdigit():
            raise BadRequest("If-Match must hold the version number", code="request.invalid_header",
                             fields={"If-Match": "must be a version number"})
        return int(raw)
    return None
