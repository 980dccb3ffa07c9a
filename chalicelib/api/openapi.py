"""The OpenAPI 3.1 document, generated from the route table and the pydantic models."""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import Any

from chalicelib.api.http import PREFIX, ROUTES, STATUS, QueryParam, RouteDoc

REF = "#/components/schemas/{model}"
REASONS = {
    400: "Malformed JSON, query or cursor",
    401: "Missing or invalid token",
    403: "Role not allowed",
    404: "Not found (or another account's)",
    409: "Conflict: delete guard, stale version, illegal transition",
    413: "Body too large",
    415: "Body is not JSON",
    422: "Well-formed but invalid",
    500: "Server error",
    503: "A dependency is unavailable",
}


def _param(p: QueryParam) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": p.kind}
    if p.enum:
        schema["enum"] = list(p.enum)
    if p.minimum is not None:
        schema["minimum"] = p.minimum
    if p.maximum is not None:
        schema["maximum"] = p.maximum
    if p.default is not None:
        schema["default"] = p.default
    if p.kind == "string":
        schema["maxLength"] = 2048
    # An empty value means "not given" (?status= lists every status): say so, or a client
    # reading the document would take `?status=` for an invalid request.
    if p.enum:
        schema["enum"].append("")
    elif p.kind != "string":
        default = schema.pop("default", None)
        schema = {"anyOf": [schema, {"type": "string", "const": ""}]}
        if default is not None:
            schema["default"] = default
    description = f"{p.description} (empty: not given)" if p.description else "Empty: not given"
    return {"name": p.name, "in": "query", "required": False, "schema": schema, "description": description}


# Modules holding the models that routes name, searched in order (imported on first use).
MODEL_MODULES = ("chalicelib.api.schemas", "chalicelib.api.job_schemas", "chalicelib.api.schema_base",
                 "chalicelib.api.response_schemas", "chalicelib.api.profiles_schemas",
                 "chalicelib.api.audience_schemas")


def _model(name: str) -> Any:
    for module in MODEL_MODULES:
        found = getattr(importlib.import_module(module), name, None)
        if found is not None:
            return found
    raise LookupError(f"no model named {name!r} in {', '.join(MODEL_MODULES)}")


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    from pydantic.json_schema import models_json_schema

    names = sorted({n for r in ROUTES for n in (r.body, r.response, *r.also) if n} | {"ErrorOut"})
    models = [(_model(n), "validation" if _is_request(n) else "serialization") for n in names]
    _, top = models_json_schema(models, ref_template=REF)  # type: ignore[arg-type]
    components: dict[str, Any] = top.get("$defs", {})
    error = {"description": "", "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorOut")}}}}

    paths: dict[str, Any] = {}
    for r in ROUTES:
        op: dict[str, Any] = {
            "summary": r.summary,
            "operationId": _operation_id(r),
            "tags": [r.tag],
            "parameters": [
                {"name": n, "in": "path", "required": True,
                 "schema": {"type": "string", "minLength": 1, "maxLength": 128}}
                for n in r.path_params
            ] + [_param(q) for q in r.query],
            "responses": {},
        }
        if not r.public:
            op["security"] = [{"bearer": []}]
        if r.body:
            op["requestBody"] = {"required": r.body_required, "content": {"application/json": {
                "schema": {"$ref": REF.format(model=r.body)}}}}
        if r.status == 204:
            op["responses"]["204"] = {"description": "Done"}
        elif r.status in (302, 303):
            op["responses"][str(r.status)] = {"description": "Redirect", "headers": {
                "Location": {"schema": {"type": "string"}, "description": "Where the browser goes next"}}}
        else:
            refs = [{"$ref": REF.format(model=n)} for n in (r.response, *r.also) if n]
            item = refs[0] if len(refs) == 1 else {"anyOf": refs} if refs else {}
            data: dict[str, Any] = {"type": "array", "items": item} if r.list_response else item
            props: dict[str, Any] = {"data": data}
            required = ["data"]
            if r.list_response:
                props["next_cursor"] = {"type": ["string", "null"]}
                required.append("next_cursor")
            op["responses"][str(r.status)] = {
                "description": "OK",
                "content": {"application/json": {"schema": {
                    "type": "object", "properties": props, "required": required}}},
            }
            links = _links(r)
            if links:
                op["responses"][str(r.status)]["links"] = links
        codes = set(r.errors) | ({400} if r.query or r.body else set()) | ({413, 415} if r.body else set()) | ({401, 403} if not r.public else set())
        for code in sorted(codes | {500}):
            op["responses"][str(code)] = {**error, "description": REASONS.get(code, "Error")}
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Switchyard API", "version": "1",
                 "description": "Jobs and authorizations of the Switchyard integration control plane."},
        "servers": [{"url": "/"}],
        "tags": [{"name": t, "description": TAGS.get(t, "")} for t in sorted({r.tag for r in ROUTES})],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


# Operation ids become the method names of generated clients, so they name the action.
# Most follow from the method and the path (see _operation_id); these read better said outright.
OPERATION_NAMES: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): "get_liveness",
    ("GET", "/alerts"): "get_alert_settings",
    ("PUT", "/alerts"): "replace_alert_settings",
    ("POST", "/alerts/test"): "send_test_alert",
    ("DELETE", "/tokens/{token_id}"): "revoke_token",
    ("GET", "/audit"): "list_audit_events",
    ("PUT", "/authorizations/{auth_id}/credentials"): "rotate_authorization_credentials",
    ("GET", "/authorizations/{auth_id}/health"): "list_authorization_health_changes",
    ("GET", "/providers/{provider}/workflows/{workflow}/options/{field}"): "list_field_choices",
    ("GET", "/oauth/{provider}/start"): "start_oauth",
    ("POST", "/audiences/sizes"): "get_audience_sizes",
    ("GET", "/oauth/{provider}/callback"): "finish_oauth",
    # The Segment-compatible collection endpoints (write key, not an API token)
    ("POST", "/batch"): "send_event_batch",
    ("POST", "/identify"): "send_identify_event",
    ("POST", "/track"): "send_track_event",
    ("POST", "/alias"): "send_alias_event",
}

# Tags group operations (a generated client gets one module per tag).
TAGS: dict[str, str] = {
    "access": "The caller, users of the account and API tokens",
    "alerts": "Where alerts go, and metric threshold rules of jobs",
    "audiences": "Saved filters over profiles",
    "audit": "Who changed what, and when",
    "collection": "Profiles pushed in over HTTP with a write key (Segment-compatible tracking API)",
    "authorizations": "Credentials for a provider, stored in Secrets Manager and checked",
    "providers": "The catalog: providers, their job types and the live choices of config fields",
    "jobs": "Imports and exports: their schedules, runs, logs and activity",
    "meta": "Liveness",
    "oauth": "Connecting a provider with OAuth 2.0",
    "profiles": "Customer profiles built by imports",
}


def _singular(noun: str) -> str:
    if noun.endswith("ies"):
        return noun[:-3] + "y"
    return noun[:-1] if noun.endswith("s") and not noun.endswith("ss") else noun


def _operation_id(r: RouteDoc) -> str:
    """verb_[owner_]noun: GET /jobs -> list_jobs, GET /jobs/{job_id} -> get_job,
    POST /jobs/{job_id}/pause -> pause_job, GET /jobs/{job_id}/runs -> list_job_runs."""
    path = r.path.removeprefix(PREFIX)
    if (r.method, path) in OPERATION_NAMES:
        return OPERATION_NAMES[(r.method, path)]
    parts: list[tuple[str, bool]] = []  # (noun, followed by an id)
    for seg in path.strip("/").split("/"):
        if seg.startswith("{"):
            parts[-1] = (parts[-1][0], True)
        else:
            parts.append((seg.replace("-", "_"), False))
    noun, item = parts[-1]
    owners = [_singular(n) for n, _ in parts[:-1]]
    if item:
        verb = {"GET": "get", "PATCH": "update", "DELETE": "delete", "PUT": "replace"}.get(r.method, "post")
        words = [verb, *owners, _singular(noun)]
    elif r.method == "GET":
        words = ["list" if r.list_response else "get", *owners, noun]
    elif r.method == "POST" and r.status == 201:
        words = ["create", *owners, _singular(noun)]
    elif r.method == "PUT":
        words = ["replace", *owners, noun]
    else:  # an action on its owner: POST /jobs/{job_id}/pause
        words = [noun, *owners]
    return "_".join(words)


def _links(source: RouteDoc) -> dict[str, Any]:
    """OpenAPI links from a collection to its items, derived from the route table: what a
    create (201) or a listing returns is the `{id}` of every route under `<collection>/{id}`
    (clients and stateful fuzzers follow them). A listing links through its first row."""
    created = source.method == "POST" and source.status == 201
    if not (created or (source.method == "GET" and source.list_response)):
        return {}
    pointer = "$response.body#/data/id" if created else "$response.body#/data/0/id"
    prefix = source.path + "/{"
    links: dict[str, Any] = {}
    for target in ROUTES:
        if not target.path.startswith(prefix):
            continue
        item = target.path[len(prefix):].split("}", 1)[0]
        params = {p: f"$request.path.{p}" for p in source.path_params}
        params[item] = pointer
        if set(target.path_params) - set(params):
            continue  # a deeper item (e.g. a job's rule): its own collection links to it
        links[_operation_id(target)] = {"operationId": _operation_id(target), "parameters": params}
    return links


def _is_request(name: str) -> bool:
    return name.endswith(("Create", "Patch", "Put"))


__all__ = ["STATUS", "document"]
