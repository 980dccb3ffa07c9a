"""What enrichment providers share (FullContact, "call my endpoint"): the config every
workflow has. Their step is an Enricher (providers/roles.py).

The engine side is chalicelib/runs/enrichment.py; docs/providers/enrichment.md.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from chalicelib.domain.enrichment import DEFAULT_REFRESH_DAYS, MARKER_PREFIX

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
    """The settings a run keeps from its step 0 (runs/enrichment.py: Enricher.freeze)."""
    return {"field_mapping": dict(field_mapping), "overwrite": bool(config.get("overwrite", True)), **extra}


__all__ = ["EnrichmentConfig", "ProfileField", "frozen_settings"]
