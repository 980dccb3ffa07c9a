"""Google's own description of the Tag Manager API v2 (its discovery document, as shipped
inside google-api-python-client), used by the fake Google to refuse any request the real API
would refuse: an unknown method or path, a query parameter the method does not take, a body
field its request schema does not have (or of the wrong type, or outside an enum), a body
sent to a method that takes none, and a token without one of the scopes the method lists.

Loaded from the installed package, never from the network.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

ROOT = "tagmanager/v2/"  # the flat paths' prefix, before the path the fake serves


class Refused(Exception):
    """What Google answers to a request that does not match the API: status, message and,
    for a missing scope, the reason Google gives."""

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.reason = status, message, reason


@dataclass(frozen=True)
class Method:
    id: str  # "tagmanager.accounts.containers.workspaces.tags.update"
    http_method: str
    pattern: re.Pattern[str]  # matches the path after /tagmanager/v2/
    params: frozenset[str]  # query parameters it takes (path parameters excluded)
    request: str | None  # the request body's schema name
    scopes: frozenset[str]


@cache
def document() -> dict[str, Any]:
    text = resources.files("googleapiclient").joinpath(
        "discovery_cache/documents/tagmanager.v2.json").read_text(encoding="utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


@cache
def methods() -> tuple[Method, ...]:
    doc = document()
    common = frozenset(doc.get("parameters", {}))
    found: list[Method] = []

    def walk(node: dict[str, Any]) -> None:
        for m in node.get("methods", {}).values():
            flat = str(m["flatPath"]).removeprefix(ROOT)
            # Each {segmentId} of the flat path is one path segment; ":verb" stays literal.
            regex = "".join("[^/:]+" if part.startswith("{") else re.escape(part)
                            for part in re.split(r"(\{[^}]+\})", flat))
            params = frozenset(k for k, v in m.get("parameters", {}).items() if v.get("location") == "query")
            found.append(Method(str(m["id"]), str(m["httpMethod"]), re.compile(regex), params | common,
                                (m.get("request") or {}).get("$ref"), frozenset(m.get("scopes", ()))))
        for child in node.get("resources", {}).values():
            walk(child)

    walk(doc)
    return tuple(found)


def method_for(http_method: str, path: str) -> Method:
    """The method a request is for (path after /tagmanager/v2/); Refused(404) when the API
    has none (Google answers an unknown URL 404)."""
    same_path = [m for m in methods() if m.pattern.fullmatch(path)]
    for m in same_path:
        if m.http_method == http_method:
            return m
    if same_path:
        raise Refused(405, f"Method {http_method} is not allowed on {path}.")
    raise Refused(404, f"The requested URL /{ROOT}{path} was not found on this server.")


def check(http_method: str, path: str, query: dict[str, str], body: Any, scopes: set[str]) -> Method:
    """Refuse the request as Google would, or return the method it calls."""
    m = method_for(http_method, path)
    unknown = sorted(set(query) - m.params)
    if unknown:
        raise Refused(400, f'Invalid JSON payload received. Unknown name "{unknown[0]}": Cannot bind query '
                           "parameter. Field '" + unknown[0] + "' could not be found in request message.")
    if not scopes & m.scopes:
        raise Refused(403, "Request had insufficient authentication scopes.", "ACCESS_TOKEN_SCOPE_INSUFFICIENT")
    if m.request is None:
        if body not in (None, {}):
            raise Refused(400, f"Invalid JSON payload received. {m.id} takes no request body.")
    elif body is not None:
        check_value(body, {"$ref": m.request}, m.request[0].lower() + m.request[1:])
    return m


def check_value(value: Any, schema: dict[str, Any], where: str) -> None:
    """Refused(400) when `value` does not fit `schema` (discovery's JSON-schema subset)."""
    schemas = document()["schemas"]
    if "$ref" in schema:
        schema = schemas[schema["$ref"]]
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            raise Refused(400, f"Invalid JSON payload received. Expected an object at '{where}'.")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for k, v in value.items():
            if k in props:
                check_value(v, props[k], f"{where}.{k}")
            elif extra is not None:
                check_value(v, extra, f"{where}.{k}")
            else:
                raise Refused(400, f'Invalid JSON payload received. Unknown name "{k}" at \'{where}\': '
                                   "Cannot find field.")
    elif kind == "array":
        if not isinstance(value, list):
            raise Refused(400, f"Invalid JSON payload received. Expected a list at '{where}'.")
        for i, v in enumerate(value):
            check_value(v, schema.get("items", {}), f"{where}[{i}]")
    elif kind == "string":
        # int64 fields travel as JSON strings; Google also accepts a number for them.
        ok = isinstance(value, str) or (schema.get("format") in ("int64", "uint64") and isinstance(value, int))
        if not ok:
            raise Refused(400, f"Invalid value at '{where}' ({type(value).__name__}), expected a string.")
        if "enum" in schema and value not in schema["enum"]:
            raise Refused(400, f"Invalid value at '{where}' ({value}): not one of {', '.join(schema['enum'])}.")
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise Refused(400, f"Invalid value at '{where}' ({value!r}), expected a boolean.")
    elif kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
        raise Refused(400, f"Invalid value at '{where}' ({value!r}), expected an integer.")
