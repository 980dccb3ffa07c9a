""""Call my endpoint": enrich profiles with a customer's own HTTPS endpoint.

Contract (docs/providers/enrichment.md): Switchyard POSTs one profile per request,
`{"profile": {"id", "identifiers", "fields"}}` (fields: only those the job's `send_fields`
names), and merges the `{"fields": {...}}` it answers. 404, 204 or `{"fields": {}}` mean
"no match". The health check POSTs `{"check": true}`: any 2xx or 404 is healthy.

The endpoint URL lives in the credentials (a URL may carry a token) and every request goes
through providers/http.py, SSRF guard included: https only, public addresses only, unless
the stage allows private URLs (local stack, tests).
"""

from __future__ import annotations

import urllib.parse
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic.config import JsonDict

from chalicelib.config import settings
from chalicelib.domain import enrichment as E
from chalicelib.domain.catalog import AuthMethodSpec, JobType, ProviderSpec, Role, StepRef, WorkflowSpec
from chalicelib.domain.models import CheckResult, HealthStatus
from chalicelib.domain.profiles import Profile
from chalicelib.providers.base import Option, ProviderError
from chalicelib.providers.calls import CallCounter
from chalicelib.providers.enrichment import EnrichmentConfig, ProfileField, frozen_settings
from chalicelib.providers.models import HeaderSecret
from chalicelib.providers.roles import Lookup, StepContext

SECRET: JsonDict = {"x-secret": True}


def _check_url(value: SecretStr) -> SecretStr:
    url = value.get_secret_value()
    allowed = ("https://", "http://") if settings().allow_private_urls else ("https://",)
    if not url.lower().startswith(allowed):
        raise ValueError("must be an https:// URL")
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        raise ValueError("must name a host")
    if parts.username or parts.password:
        raise ValueError("may not contain a user name or password; use the bearer method")
    return value


class Endpoint(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    url: SecretStr = Field(min_length=9, max_length=2048, json_schema_extra=SECRET,
                           description="The endpoint's https URL (kept secret: it may carry a token)")

    _url = field_validator("url")(_check_url)


class EndpointBearer(Endpoint):
    token: HeaderSecret = Field(min_length=8, max_length=4096, json_schema_extra=SECRET,
                                description="Sent as 'Authorization: Bearer <token>'")


class HttpEnrichConfig(EnrichmentConfig):
    field_mapping: dict[Annotated[str, Field(min_length=1, max_length=128)], ProfileField | None] = Field(
        default_factory=dict, max_length=200,
        description="Returned field -> profile field (null drops it); others keep their names",
    )
    send_fields: list[ProfileField] = Field(
        default_factory=list, max_length=50,
        description="Profile fields sent with each profile (identifiers are always sent)",
    )


SPEC = ProviderSpec(
    id="http_enrichment",
    name="Your enrichment endpoint",
    description="Enrich profiles by calling your own HTTPS endpoint, one profile a request.",
    tags=("enrichment", "http"),
    auth_methods=(
        AuthMethodSpec(id="none", name="URL only", description="The endpoint's URL (it may carry a token).",
                       credentials_model=Endpoint),
        AuthMethodSpec(id="bearer", name="Bearer token", description="The endpoint's URL and a bearer token.",
                       credentials_model=EndpointBearer),
    ),
    workflows=(
        WorkflowSpec(
            id="http_profile_enrich",
            name="Endpoint enrichment",
            job_type=JobType.ENRICHMENT,
            step=StepRef(Role.ENRICHER, "chalicelib.providers.http_enrichment:enricher"),
            description="POSTs each profile to your endpoint and merges the fields it returns.",
            auth_methods=("none", "bearer"),
            config_model=HttpEnrichConfig,
        ),
    ),
)


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).hostname or "?"


def _client(method: str, credentials: Any, counter: CallCounter | None, deadline: float | None) -> Any:
    from chalicelib.providers.http import HttpClient, RateLimit

    url = credentials.url.get_secret_value()
    secrets = [url]
    headers = {"Accept": "application/json"}
    if method == "bearer":
        token = credentials.token.get_secret_value()
        headers["Authorization"] = f"Bearer {token}"
        secrets += [token, headers["Authorization"]]
    return HttpClient("http_enrichment", label=f"the endpoint {_host(url)}", secrets=secrets, counter=counter,
                      deadline=deadline, headers=headers, rate_limit=RateLimit(rate=20.0, burst=20))


class EndpointEnrich:
    """The enrichment step of `http_profile_enrich` (runs/enrichment.py)."""

    def __init__(self) -> None:
        self._client: Any = None

    def freeze(self, config: dict[str, Any]) -> dict[str, Any]:
        return frozen_settings(config, config.get("field_mapping") or {},
                               send_fields=list(config.get("send_fields") or []))

    def eligible(self, profile: Profile) -> bool:
        return any(profile.identifiers.values())

    def lookup(self, ctx: StepContext, frozen: dict[str, Any], profile: Profile) -> Lookup:
        from chalicelib.providers.http import HttpError

        if self._client is None:
            self._client = _client(ctx.method, ctx.credentials, ctx.counter, ctx.deadline)
        sent = {k: profile.fields[k] for k in frozen.get("send_fields", []) if k in profile.fields}
        body = {"profile": {"id": profile.id, "identifiers": profile.identifiers, "fields": sent}}
        try:
            # The contract makes a lookup safe to repeat: every retry is allowed.
            resp = self._client.post(ctx.credentials.url.get_secret_value(), "profile.enrich", json_body=body,
                                     idempotent=True)
        except HttpError as exc:
            if exc.status == 404:
                return Lookup(None, E.UNMATCHED)
            if exc.status in (400, 422):
                return Lookup(None, E.REJECTED, exc.words)
            raise
        if resp.status == 204 or not resp.body.strip():
            return Lookup(None, E.UNMATCHED)
        doc = resp.json()
        returned = doc.get("fields") if isinstance(doc, dict) else None
        if not isinstance(returned, dict):
            raise ProviderError(f"{self._client.label} answered {resp.status} without a \"fields\" object; "
                                "see the contract in the enrichment docs")
        fields = E.map_open_fields(returned, frozen.get("field_mapping") or {})
        return Lookup(fields or None, E.UNMATCHED)


class HttpEnrichmentProvider:
    spec = SPEC

    def check(self, method: str, credentials: Any, resources: dict[str, str],
              counter: CallCounter | None = None) -> CheckResult:
        """POST {"check": true}: any 2xx or 404 means the endpoint is there and takes our
        credentials; 401/403, a refused URL or an unknown host is unhealthy."""
        from chalicelib.providers.http import HttpError

        client = _client(method, credentials, counter, None)
        url = credentials.url.get_secret_value()
        try:
            client.post(url, "check", json_body={"check": True}, idempotent=True)
        except HttpError as exc:
            if exc.status == 404:
                return CheckResult(HealthStatus.HEALTHY, f"the endpoint {_host(url)} answers")
            if exc.transient:
                raise
            return CheckResult(HealthStatus.UNHEALTHY, exc.reason)
        return CheckResult(HealthStatus.HEALTHY, f"the endpoint {_host(url)} answers")

    def options(self, method: str, credentials: Any, workflow: str, field: str, params: dict[str, str],
                counter: CallCounter | None = None) -> list[Option]:
        raise ProviderError(f"field {field!r} has no live options", field="field")

    def credential_hint(self, method: str, credentials: Any) -> str | None:
        url = credentials.url.get_secret_value()
        return f"{urllib.parse.urlsplit(url).scheme}://{_host(url)}/…"


def enricher(provider: object) -> EndpointEnrich:
    """The step of http_profile_enrich (declared in SPEC)."""
    return EndpointEnrich()


PROVIDER = HttpEnrichmentProvider()
