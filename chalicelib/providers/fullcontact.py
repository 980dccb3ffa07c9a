"""FullContact: enrich profiles with the Person Enrich API (v3).

`POST {base}/v3/person.enrich` with `Authorization: Bearer <API key>` and a JSON body
naming the person (`email`, or `emails` for several); 200 with the person's JSON, 404 when
FullContact knows nobody by it, 401/403 for a bad key, 429 when over the rate limit
(FullContact first delays requests up to 1 s, then answers 429). Every call goes through
providers/http.py. The base URL is a setting (SWITCHYARD_FULLCONTACT_BASE_URL) so tests and
the local stack reach a fake. docs/providers/enrichment.md.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from chalicelib.config import settings
from chalicelib.domain import enrichment as E
from chalicelib.domain.catalog import AuthMethodSpec, JobType, ProviderSpec, Role, StepRef, WorkflowSpec
from chalicelib.domain.models import CheckResult, HealthStatus
from chalicelib.domain.profiles import Profile
from chalicelib.providers.base import Option, ProviderError, mask
from chalicelib.providers.calls import CallCounter
from chalicelib.providers.enrichment import EnrichmentConfig, ProfileField, frozen_settings
from chalicelib.providers.models import HeaderSecret
from chalicelib.providers.roles import Lookup, StepContext

SECRET: JsonDict = {"x-secret": True}
PATH = "/v3/person.enrich"
# The health check asks about an address of a reserved domain (RFC 2606): FullContact can
# never match it, answers 404 for a valid key, and bills matches only.
CHECK_EMAIL = "switchyard-health-check@example.com"
MAX_EMAILS = 10  # a profile links at most 10 emails (domain.profiles.MAX_VALUES_PER_KIND)

DEFAULT_MAPPING: dict[str, str] = {
    "fullName": "full_name",
    "ageRange": "age_range",
    "location": "location",
    "title": "title",
    "organization": "organization",
    "linkedin": "linkedin",
    "twitter": "twitter",
}


class ApiKey(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    api_key: HeaderSecret = Field(
        min_length=8, max_length=512, description="FullContact API key (sent as a bearer token)",
        json_schema_extra=SECRET,
    )


ResponsePath = Annotated[str, Field(pattern=r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+){0,5}$", max_length=200)]


class PersonEnrichConfig(EnrichmentConfig):
    field_mapping: dict[ResponsePath, ProfileField] = Field(
        default_factory=lambda: dict(DEFAULT_MAPPING), min_length=1, max_length=100,
        description="FullContact response path (e.g. fullName, details.name.given) -> profile field",
    )


SPEC = ProviderSpec(
    id="fullcontact",
    name="FullContact",
    description="Enrich profiles with FullContact's Person Enrich API (by email).",
    tags=("enrichment",),
    auth_methods=(
        AuthMethodSpec(id="api_key", name="API key", description="A FullContact API key (bearer).",
                       credentials_model=ApiKey),
    ),
    workflows=(
        WorkflowSpec(
            id="fullcontact_person_enrich",
            name="FullContact person enrichment",
            job_type=JobType.ENRICHMENT,
            step=StepRef(Role.ENRICHER, "chalicelib.providers.fullcontact:enricher"),
            description="Looks up each profile's emails and merges the person's returned fields.",
            auth_methods=("api_key",),
            config_model=PersonEnrichConfig,
        ),
    ),
)


def _client(key: str, counter: CallCounter | None, deadline: float | None) -> Any:
    from chalicelib.providers.http import HttpClient, RateLimit

    bearer = f"Bearer {key}"
    return HttpClient(
        "fullcontact", label="FullContact", secrets=[key, bearer], counter=counter, deadline=deadline,
        headers={"Authorization": bearer, "Accept": "application/json"},
        # FullContact's default limit is 6,000 requests a minute per key.
        rate_limit=RateLimit(rate=100.0, burst=20),
    )


def _url() -> str:
    return settings().fullcontact_base_url + PATH


def _request(emails: list[str]) -> dict[str, Any]:
    return {"email": emails[0]} if len(emails) == 1 else {"emails": emails[:MAX_EMAILS]}


class PersonEnrich:
    """The enrichment step of `fullcontact_person_enrich` (runs/enrichment.py)."""

    def __init__(self) -> None:
        self._client: Any = None

    def freeze(self, config: dict[str, Any]) -> dict[str, Any]:
        return frozen_settings(config, config.get("field_mapping") or DEFAULT_MAPPING)

    def eligible(self, profile: Profile) -> bool:
        return bool(profile.identifiers.get("email"))

    def lookup(self, ctx: StepContext, frozen: dict[str, Any], profile: Profile) -> Lookup:
        from chalicelib.providers.http import HttpError

        if self._client is None:  # one client per step: its counter and deadline are the step's
            self._client = _client(ctx.credentials.api_key.get_secret_value(), ctx.counter, ctx.deadline)
        try:
            # A lookup changes nothing at FullContact: repeating one after a lost answer is
            # safe (at worst it is billed twice), so every retry is allowed.
            resp = self._client.post(_url(), "person.enrich", json_body=_request(profile.identifiers["email"]),
                                     idempotent=True)
        except HttpError as exc:
            if exc.status == 404:
                return Lookup(None, E.UNMATCHED)
            if exc.status in (400, 422):
                return Lookup(None, E.REJECTED, exc.words)
            raise
        if resp.status != 200:  # 202: queued for a webhook we did not ask for; no data now
            return Lookup(None, E.UNMATCHED)
        fields = E.map_fields(resp.json(), frozen["field_mapping"])
        return Lookup(fields or None, E.UNMATCHED)


class FullContactProvider:
    spec = SPEC

    def check(self, method: str, credentials: Any, resources: dict[str, str],
              counter: CallCounter | None = None) -> CheckResult:
        """One Person Enrich call for an address that cannot match: 404 (or 200) means the
        key works; 401/403 is FullContact refusing it, in its words. Costs one request a
        check (one a day per authorization), never billed as a match."""
        from chalicelib.providers.http import HttpError

        client = _client(credentials.api_key.get_secret_value(), counter, None)
        try:
            client.post(_url(), "person.enrich", json_body={"email": CHECK_EMAIL}, idempotent=True)
        except HttpError as exc:
            if exc.status == 404:
                return CheckResult(HealthStatus.HEALTHY, "FullContact accepts the API key")
            if exc.transient:
                raise
            return CheckResult(HealthStatus.UNHEALTHY, exc.reason)
        return CheckResult(HealthStatus.HEALTHY, "FullContact accepts the API key")

    def options(self, method: str, credentials: Any, workflow: str, field: str, params: dict[str, str],
                counter: CallCounter | None = None) -> list[Option]:
        raise ProviderError(f"field {field!r} has no live options", field="field")

    def credential_hint(self, method: str, credentials: Any) -> str | None:
        return mask(credentials.api_key.get_secret_value(), keep=2)


def enricher(provider: object) -> PersonEnrich:
    """The step of fullcontact_person_enrich (declared in SPEC)."""
    return PersonEnrich()


PROVIDER = FullContactProvider()
