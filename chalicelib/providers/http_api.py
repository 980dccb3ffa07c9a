"""HTTP API (collection): customers push events with any Segment-compatible SDK.

The only auth method is a Switchyard-issued write key, and it enables only `http_collect`:
one job type needs it, the others don't. Nothing is called on a provider's side, so the
check has nothing to reach (docs/realtime.md, section 2)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from chalicelib.domain.catalog import AuthMethodSpec, JobType, ProviderSpec, WorkflowSpec
from chalicelib.domain.models import CheckResult, HealthStatus
from chalicelib.providers.base import Option, ProviderError
from chalicelib.providers.calls import CallCounter
from chalicelib.providers.models import StrictModel

FIELD_NAME = r"^[a-z][a-z0-9_]{0,63}$"
IDENTIFIER = Literal["user_id", "email", "anonymous_id"]


def _default_identifiers() -> list[IDENTIFIER]:
    return ["user_id", "email", "anonymous_id"]


class WriteKeyCredentials(StrictModel):
    """Nothing to give: Switchyard issues the key and shows it once."""


class CollectConfig(StrictModel):
    identifier_fields: list[IDENTIFIER] = Field(
        default_factory=_default_identifiers, min_length=1, max_length=3,
        description="Identifiers in priority order: user_id (userId), email (traits.email), "
                    "anonymous_id (anonymousId)")
    merge_rules: dict[Annotated[str, Field(pattern=FIELD_NAME)], Literal["latest", "first", "append"]] = Field(
        default_factory=dict, max_length=200, description="Trait -> latest | first | append (latest by default)")
    max_messages_per_second: int = Field(1000, ge=1, le=10_000,
                                         description="Messages a second this job accepts (10 s of burst)")


SPEC = ProviderSpec(
    id="http_api",
    name="HTTP API",
    description="Push profiles and events with any Segment-compatible SDK (HTTP Tracking API: "
                "batch, identify, track, alias).",
    tags=("import", "realtime"),
    auth_methods=(
        AuthMethodSpec(id="write_key", name="Write key",
                       description="Issued by Switchyard and shown once; SDKs send it as the Basic-auth user name.",
                       credentials_model=WriteKeyCredentials, issued=True),
    ),
    workflows=(
        WorkflowSpec(id="http_collect", name="Collect events", job_type=JobType.IMPORT,
                     description="identify merges traits into profiles, track counts events and last-seen "
                                 "times, alias links identities.",
                     auth_methods=("write_key",), config_model=CollectConfig, pushed=True),
    ),
)


class HttpApiProvider:
    spec = SPEC

    def check(self, method: str, credentials: Any, resources: dict[str, str],
              counter: CallCounter | None = None) -> CheckResult:
        return CheckResult(HealthStatus.HEALTHY, "write key issued by Switchyard; accepts events for its job")

    def options(self, method: str, credentials: Any, workflow: str, field: str, params: dict[str, str],
                counter: CallCounter | None = None) -> list[Option]:
        raise ProviderError(f"{field!r} has no choices to read: nothing here is read from a provider", field="field")

    def credential_hint(self, method: str, credentials: Any) -> str | None:
        return None  # the key's last four characters are set when it is issued


PROVIDER = HttpApiProvider()
