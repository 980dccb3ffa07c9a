"""GET /providers, /providers/{provider}, live options of a workflow's config field."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Response

from chalicelib.api.auth import token_authorizer
from chalicelib.api.http import QueryParam, ok, route
from chalicelib.bootstrap import deps
from chalicelib.domain.access import Principal
from chalicelib.services import catalog

bp = Blueprint(__name__)
TAG = "providers"


@route(bp, "/providers", "GET", summary="The provider catalog", tag=TAG,
       authorizer=token_authorizer, response="ProviderOut", list_response=True,
       query=(QueryParam("job_type", enum=("import", "export", "enrichment", "other")),))
def list_providers(principal: Principal, query: dict[str, Any]) -> Response:
    data = catalog.list_providers(deps(), principal, query["job_type"])
    return ok(data, next_cursor=None, paged=True)


@route(bp, "/providers/{provider}", "GET", summary="One provider", tag=TAG,
       authorizer=token_authorizer, response="ProviderOut", errors=(404,))
def get_provider(principal: Principal, provider: str, query: dict[str, Any]) -> Response:
    return ok(catalog.get_provider(deps(), principal, provider))


@route(bp, "/providers/{provider}/workflows/{workflow}/options/{field}", "GET",
       summary="Live choices for a config field, read through an authorization", tag=TAG,
       authorizer=token_authorizer, response="OptionOut", list_response=True, errors=(404, 422, 503),
       query=(QueryParam("authorization_id", description="Authorization to read through"),
              QueryParam("bucket", description="S3: bucket whose prefixes to list"),
              QueryParam("prefix", description="S3: list under this prefix; SQS: queue names starting with it"),
              QueryParam("list_id", description="Mailchimp: list whose merge fields or tags to list"),
              QueryParam("name", description="Mailchimp: tags whose name contains this"),
              QueryParam("account_id", description="Google Tag Manager: account whose containers to list"),
              QueryParam("container_id", description="Google Tag Manager: container whose workspaces to list")))
def options(principal: Principal, provider: str, workflow: str, field: str,
            query: dict[str, Any]) -> Response:
    params = {k: v for k, v in query.items() if k != "authorization_id" and v is not None}
    found = catalog.options(deps(), principal, provider, workflow, field,
                            query["authorization_id"], params)
    data = [{"value": o.value, "label": o.label, "kind": o.kind} for o in found]
    return ok(data, next_cursor=None, paged=True)
