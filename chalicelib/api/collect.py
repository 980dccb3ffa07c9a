"""Segment HTTP Tracking API compatible collection: /v1/batch, /identify, /track, /alias
under the API base. No token authorizer: the write key is resolved here (services/collect)."""

from __future__ import annotations

import json
import math
from typing import Any

from chalice import Blueprint, Response

from chalicelib.api.http import JSON_HEADERS, route
from chalicelib.bootstrap import deps
from chalicelib.services import collect as svc

bp = Blueprint(__name__)
TAG = "collection"
ERRORS = (400, 401, 409, 429)


def _collect(forced_type: str | None) -> Response:
    request = bp.current_request
    try:
        raw = request.raw_body or b""
        result = svc.accept(deps(), request.headers, raw.encode() if isinstance(raw, str) else raw, forced_type)
    except svc.RateLimited as exc:
        wait = max(1, math.ceil(exc.retry_after))
        body = {"error": {"code": "rate.limited", "message": f"too many messages for this job; retry in {wait} s",
                          "fields": {}, "details": {"retry_after": wait}}}
        return Response(body=json.dumps(body), status_code=429, headers={**JSON_HEADERS, "Retry-After": str(wait)})
    return Response(body=json.dumps(result.as_dict()), status_code=200, headers=JSON_HEADERS)


@route(bp, "/batch", "POST", summary="Segment-compatible batch (write key as Basic-auth user name)", tag=TAG,
       errors=ERRORS)
def collect_batch(query: dict[str, Any]) -> Response:
    return _collect(None)


@route(bp, "/identify", "POST", summary="Segment-compatible identify", tag=TAG, errors=ERRORS)
def collect_identify(query: dict[str, Any]) -> Response:
    return _collect("identify")


@route(bp, "/track", "POST", summary="Segment-compatible track", tag=TAG, errors=ERRORS)
def collect_track(query: dict[str, Any]) -> Response:
    return _collect("track")


@route(bp, "/alias", "POST", summary="Segment-compatible alias", tag=TAG, errors=ERRORS)
def collect_alias(query: dict[str, Any]) -> Response:
    return _collect("alias")
