"""What enrichment providers share (FullContact, "call my endpoint"): the config every
workflow has, and the step interface the engine path drives.

The engine side is chalicelib/services/enrichment.py; docs/providers/enrichment.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from chalicelib.domain import enrichment as E
from chalicelib.domain.enrichment import DEFAULT_REFRESH_DAYS, MARKER_PREFIX
from chalicelib.domain.profiles import Profile
from chalicelib.providers.base import StepContext

FIELD_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"


def _not_a_marker(name: str) -> str:
    if name.startswith(MARKER_PREFIX):
        raise ValueError(f"fields starting with {MARKER_PREFIX!r} are the jobs' own markers")
    return name


ProfileField = Annotated[str, Field(pattern=FIELD_PATTERN), AfterValidator(_not_a_marker)]


class EnrichmentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    audience_id: str | None = Field(
        None, min_length=1, max_length=64,
        description="Enrich only the members of this audience (none: every profile)",
    )
    refresh_after_days: int = Field(
        DEFAULT_REFRESH_DAYS, ge=0, le=3650,
        description="Skip profiles this job enriched less than this many days ago (0: look up every run)",
    )
    overwrite: bool = Field(
        True, description="Returned values replace stored ones; off: only empty fields are filled",
    )


def frozen_settings(config: dict[str, Any], field_mapping: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The settings a run keeps from its step 0 (services/enrichment.py: EnrichStep.freeze)."""
    return {"field_mapping": dict(field_mapping), "overwrite": bool(config.get("overwrite", True)), **extra}


# -- what an enrichment provider implements ------------------------------------------------


@dataclass(frozen=True)
class Lookup:
    """One profile's answer: `fields` to merge (mapped, non-empty), or None with the
    reason it is omitted (unmatched, rejected) and the provider's words, if any."""

    fields: dict[str, Any] | None
    reason: str = E.UNMATCHED
    words: str = ""


class EnrichStep(Protocol):
    """A provider's side of an enrichment workflow (providers/fullcontact.py,
    providers/http_enrichment.py); services/enrichment.py drives it."""

    def freeze(self, config: dict[str, Any]) -> dict[str, Any]:
        """The settings a run keeps from its step 0 (small JSON): the field mapping and
        whether to overwrite stored values. ProviderError when unusable."""
        ...

    def eligible(self, profile: Profile) -> bool:
        """Does the profile carry what the provider looks up by (e.g. an email)?"""
        ...

    def lookup(self, ctx: StepContext, frozen: dict[str, Any], profile: Profile) -> Lookup:
        """Ask the provider about one profile, through providers/http.py. 404 / no data is
        a Lookup without fields; auth and config errors raise ProviderError(transient=
        False), throttling and outages ProviderError(transient=True)."""
        ...


__all__ = ["EnrichStep", "EnrichmentConfig", "Lookup", "ProfileField", "frozen_settings"]
