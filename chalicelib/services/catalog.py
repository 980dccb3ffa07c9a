"""The provider catalog and live config options read through an authorization."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.domain.access import Capability, Principal
from chalicelib.domain.catalog import ProviderSpec
from chalicelib.domain.errors import Invalid, NotFound, Unavailable
from chalicelib.domain.schedules import allows_realtime
from chalicelib.providers.base import Option, ProviderError
from chalicelib.services import credentials as creds_svc
from chalicelib.services.authorizations import record_requests

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.services.needs import CatalogNeeds


def describe(spec: ProviderSpec) -> dict[str, Any]:
    return {
        "id": spec.id,
        "name": spec.name,
        "description": spec.description,
        "job_types": [t.value for t in spec.job_types],
        "auth_methods": [
            {
                "id": m.id,
                "name": m.name,
                "description": m.description,
                "verifiable": m.verifiable,
                "credentials_schema": creds_svc.input_schema(m.credentials_model),
                "secret_fields": [f for f in secret_fields(m.credentials_model)
                                  if f not in creds_svc.generated_fields(m.credentials_model)],
                "generated_fields": sorted(creds_svc.generated_fields(m.credentials_model)),
            }
            for m in spec.auth_methods
        ],
        "workflows": [
            {
                "id": w.id,
                "name": w.name,
                "job_type": w.job_type.value,
                "description": w.description,
                "auth_methods": list(w.auth_methods),
                "config_schema": w.config_model.model_json_schema(),
                "option_fields": list(w.option_fields),
                "realtime": allows_realtime(spec.id, w.job_type.value),
            }
            for w in spec.workflows
        ],
    }


def secret_fields(model: Any) -> list[str]:
    out = []
    for name, f in model.model_fields.items():
        extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
        if extra.get("x-secret"):
            out.append(name)
    return out


def list_providers(d: CatalogNeeds, p: Principal, job_type: str | None = None) -> list[dict[str, Any]]:
    p.require(Capability.READ)
    specs = [prov.spec for prov in d.registry.all()]
    if job_type:
        specs = [s for s in specs if any(t.value == job_type for t in s.job_types)]
    return [describe(s) for s in specs]


def get_provider(d: CatalogNeeds, p: Principal, provider_id: str) -> dict[str, Any]:
    p.require(Capability.READ)
    return describe(d.registry.get(provider_id).spec)


def options(
    d: CatalogNeeds,
    p: Principal,
    provider_id: str,
    workflow_id: str,
    field: str,
    authorization_id: str | None,
    params: dict[str, str],
) -> list[Option]:
    p.require(Capability.READ)
    provider = d.registry.get(provider_id)
    wf = provider.spec.workflow_or_404(workflow_id)
    if field not in wf.option_fields:
        raise NotFound(
            f"field {field!r} of {workflow_id!r} has no live options "
            f"(fields that do: {', '.join(wf.option_fields) or 'none'})",
            code="options.not_found",
        )
    if not authorization_id:
        raise Invalid(
            "choose an authorization to read options through",
            fields={"authorization_id": "required"},
        )
    auth = d.auths.get(p.account_id, authorization_id)
    if auth is None or auth.provider != provider.spec.id:
        # The authorization is the resource being read through: same 404 as its own route.
        raise NotFound(
            f"authorization {authorization_id!r} was not found for {provider.spec.id}",
            code="authorization.not_found",
        )
    counter = d.calls(auth.id)
    try:
        credentials = creds_svc.load(d, auth, provider.spec)
        return provider.options(auth.method, credentials, wf.id, field, params, counter)
    except ProviderError as exc:
        if exc.transient:
            raise Unavailable(f"{provider.spec.name}: {exc.reason}") from None
        raise Invalid(
            f"{provider.spec.name} refused: {exc.reason}",
            code="provider.refused",
            fields={exc.field or "authorization_id": exc.reason},
        ) from None
    finally:
        record_requests(d, p.account_id, auth.id, counter)
