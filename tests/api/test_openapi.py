"""The generated OpenAPI 3.1 document covers every route, and real responses conform to it."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
from referencing import Registry, Resource

from tests.api.helpers import create_auth, create_job, make_bucket


def _doc(api) -> dict[str, Any]:
    r = api.get("/openapi.json")
    assert r.status_code == 200
    return r.json


def _validator(doc: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    resource = Resource.from_contents({**doc, "$schema": "https://json-schema.org/draft/2020-12/schema"})
    registry = Registry().with_resource("urn:openapi", resource)
    rewritten = _rewrite(schema)
    return jsonschema.Draft202012Validator(rewritten, registry=registry)


def _rewrite(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: ("urn:openapi" + v if k == "$ref" and v.startswith("#/") else _rewrite(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite(v) for v in node]
    return node


def _match(doc: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    for template, ops in doc["paths"].items():
        pattern = "^" + re.sub(r"\{[^/]+\}", "[^/]+", template) + "$"
        if re.match(pattern, "/api/v1" + path.split("?")[0]) and method.lower() in ops:
            return ops[method.lower()]
    raise AssertionError(f"{method} {path} is not in the OpenAPI document")


def _conforms(doc: dict[str, Any], method: str, path: str, resp: Any) -> None:
    op = _match(doc, method, path)
    declared = op["responses"].get(str(resp.status_code))
    assert declared, f"{method} {path} answered {resp.status_code}, not declared"
    if resp.status_code == 204:
        return
    schema = declared["content"]["application/json"]["schema"]
    errors = sorted(_validator(doc, schema).iter_errors(resp.json), key=str)
    assert not errors, f"{method} {path}: {errors[0].message} at {list(errors[0].absolute_path)}"


def test_document_is_openapi_31_and_lists_every_route(api, client):
    doc = _doc(api)
    assert doc["openapi"].startswith("3.1")
    from app import app

    chalice_routes = {(m.lower(), p) for p, ops in app.routes.items() for m in ops if p != "/api/v1/openapi.json"}
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert chalice_routes == documented
    schemas = doc["components"]["schemas"]
    assert {"JobCreate", "JobSummary", "AuthorizationRow", "ErrorOut", "ProviderOut"} <= set(schemas)
    job_create = schemas["JobCreate"]
    assert job_create["additionalProperties"] is False and "provider" in job_create["required"]


def test_real_responses_conform(api, crm):
    doc = _doc(api)
    bucket = make_bucket()
    auth = create_auth(api)
    job = create_job(api, auth["id"], bucket, schedule={"type": "weekly", "day": "mon", "at": "09:00"})
    pro = {"all": [{"field": "plan", "op": "equals", "value": "pro"}]}
    audience = api.post("/audiences", {"name": "Pro", "filter": pro}).json["data"]
    calls = [
        ("POST", "/audiences", {"name": "Pro 2", "filter": pro}), ("GET", "/audiences", None),
        ("GET", f"/audiences/{audience['id']}", None), ("GET", f"/audiences/{audience['id']}/size", None),
        ("POST", "/audiences/preview", {"filter": pro}), ("POST", "/audiences/preview", {"filter": {"any": []}}),
        ("PATCH", f"/audiences/{audience['id']}", {"name": "n", "version": 1}),
        ("DELETE", f"/audiences/{audience['id']}", None),
        ("GET", "/providers", None), ("GET", "/providers/amazon_s3", None),
        ("GET", f"/providers/amazon_s3/workflows/s3_file_import/options/bucket?authorization_id={auth['id']}", None),
        ("GET", "/authorizations", None), ("GET", f"/authorizations/{auth['id']}", None),
        ("PATCH", f"/authorizations/{auth['id']}", {"description": "d"}),
        ("POST", f"/authorizations/{auth['id']}/check", None),
        ("GET", f"/authorizations/{auth['id']}/activity?granularity=hour", None),
        ("GET", "/jobs", None), ("GET", f"/jobs/{job['id']}", None),
        ("PATCH", f"/jobs/{job['id']}", {"label": "n", "version": 1}),
        ("PATCH", f"/jobs/{job['id']}?dry_run=true", {"label": "m", "version": 2}),
        ("POST", f"/jobs/{job['id']}/pause", None), ("POST", f"/jobs/{job['id']}/pause", None),
        ("GET", f"/jobs/{job['id']}/runs", None), ("GET", f"/jobs/{job['id']}/logs", None),
        ("GET", f"/jobs/{job['id']}/activity", None),
        ("DELETE", f"/authorizations/{auth['id']}", None),
        ("POST", "/jobs", {"provider": "amazon_s3"}), ("GET", "/jobs?limit=0", None),
        ("GET", "/me", None), ("GET", "/users", None), ("POST", "/tokens", {"label": "t"}),
        ("GET", "/tokens", None), ("GET", "/jobs/nope", None), ("GET", "/healthz", None),
        ("DELETE", f"/jobs/{job['id']}", None),
    ]
    for method, path, body in calls:
        _conforms(doc, method, path, api.call(method, path, body))


def test_links_lead_from_collections_to_their_items(api):
    # Clients and the stateful fuzzer (tests/proof/test_fuzz.py) follow these.
    paths = _doc(api)["paths"]
    created = paths["/api/v1/jobs"]["post"]["responses"]["201"]["links"]
    assert created["get_job"] == {"operationId": "get_job", "parameters": {"job_id": "$response.body#/data/id"}}
    assert {"update_job", "pause_job", "delete_job"} <= set(created)
    listed = paths["/api/v1/authorizations"]["get"]["responses"]["200"]["links"]
    assert listed["get_authorization"]["parameters"] == {"auth_id": "$response.body#/data/0/id"}
    rule = paths["/api/v1/jobs/{job_id}/alert-rules"]["post"]["responses"]["201"]["links"]
    assert rule["delete_job_alert_rule"]["parameters"] == {
        "job_id": "$request.path.job_id", "rule_id": "$response.body#/data/id"}
    # a deeper item is linked from its own collection only
    assert "delete_job_alert_rule" not in created
    operation_ids = {op["operationId"] for ops in paths.values() for op in ops.values()}
    for ops in paths.values():
        for op in ops.values():
            for resp in op["responses"].values():
                for link in resp.get("links", {}).values():
                    assert link["operationId"] in operation_ids


def test_operation_ids_name_actions_and_are_grouped_by_tag(api):
    # Generated clients take their method names from these (tests/api/test_generated_client.py).
    doc = _doc(api)
    ops = {(m.upper(), p.removeprefix("/api/v1")): op for p, by_method in doc["paths"].items()
           for m, op in by_method.items()}
    names = {key: op["operationId"] for key, op in ops.items()}
    assert len(set(names.values())) == len(names), "operation ids must be unique"
    expected = {
        ("GET", "/jobs"): "list_jobs", ("POST", "/jobs"): "create_job", ("GET", "/jobs/{job_id}"): "get_job",
        ("PATCH", "/jobs/{job_id}"): "update_job", ("DELETE", "/jobs/{job_id}"): "delete_job",
        ("POST", "/jobs/{job_id}/pause"): "pause_job", ("POST", "/jobs/{job_id}/resume"): "resume_job",
        ("POST", "/jobs/{job_id}/run"): "run_job", ("GET", "/jobs/{job_id}/runs"): "list_job_runs",
        ("GET", "/jobs/{job_id}/logs"): "list_job_logs", ("GET", "/jobs/{job_id}/activity"): "get_job_activity",
        ("POST", "/authorizations/{auth_id}/check"): "check_authorization",
        ("PUT", "/authorizations/{auth_id}/credentials"): "rotate_authorization_credentials",
        ("DELETE", "/tokens/{token_id}"): "revoke_token",
        ("GET", "/providers/{provider}/workflows/{workflow}/options/{field}"): "list_field_choices",
        ("POST", "/jobs/{job_id}/alert-rules"): "create_job_alert_rule",
        ("GET", "/oauth/{provider}/start"): "start_oauth", ("POST", "/jobs/preview"): "preview_job",
    }
    assert {k: names[k] for k in expected} == expected
    verbs = {"list", "get", "create", "update", "delete", "replace", "rotate", "revoke", "pause", "resume", "run",
             "check", "preview", "send", "start", "finish"}
    for key, name in names.items():
        assert re.fullmatch(r"[a-z]+(_[a-z]+)+", name) and name.split("_")[0] in verbs, (key, name)
        assert "api" not in name.split("_") and "v1" not in name, (key, name)
    # Every operation has exactly one tag, and each tag is declared with a description.
    declared = {t["name"]: t["description"] for t in doc["tags"]}
    for key, op in ops.items():
        [tag] = op["tags"]
        assert declared.get(tag), (key, tag)


def test_run_now_takes_an_optional_body_and_only_run_now_does(api):
    doc = _doc(api)
    jobs = "/api/v1/jobs/{job_id}"
    run = doc["paths"][f"{jobs}/run"]["post"]
    # THEN run now documents an optional JSON body, its bad-body answers included
    assert run["requestBody"]["required"] is False
    assert run["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/JobRunRequest")
    assert {"400", "413", "415", "422"} <= set(run["responses"])
    schemas = doc["components"]["schemas"]
    req = schemas["JobRunRequest"]
    assert req["additionalProperties"] is False and req["properties"]["resync"]["type"] == "boolean"
    assert "resync_requested" in schemas["JobSummary"]["properties"] and "resync" in schemas["RunOut"]["properties"]
    # AND pause and resume still take no body; every other body stays required (the control)
    assert "requestBody" not in doc["paths"][f"{jobs}/pause"]["post"]
    assert "requestBody" not in doc["paths"][f"{jobs}/resume"]["post"]
    assert doc["paths"]["/api/v1/jobs"]["post"]["requestBody"]["required"] is True
    optional = [(p, m) for p, ops in doc["paths"].items() for m, op in ops.items()
                if op.get("requestBody") and not op["requestBody"]["required"]]
    assert optional == [(f"{jobs}/run", "post")]
