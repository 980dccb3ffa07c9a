"""Liveness and the OpenAPI document (both public)."""

from __future__ import annotations

import json
from typing import Any

from chalice import Blueprint, Response

from chalicelib.api.http import JSON_HEADERS, ok, route
from chalicelib.api.openapi import document

bp = Blueprint(__name__)


@route(bp, "/healthz", "GET", summary="Liveness", tag="meta", response="Health")
def healthz(query: dict[str, Any]) -> Response:
    return ok({"status": "ok"})


@bp.route("/api/v1/openapi.json", methods=["GET"])
def openapi() -> Response:
    return Response(body=json.dumps(document()), status_code=200, headers=JSON_HEADERS)
