"""Request and response models of the audience routes (validation and OpenAPI).

Imported on first use only, like schemas.py. The filter itself is checked by
chalicelib.domain.audiences.parse_filter, which names paths like "filter.all[1].op";
here it is only required to be an object.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator

from chalicelib.api.response_schemas import Out
from chalicelib.api.schema_base import Description, Strict, clean_text

Name = Annotated[str, Field(min_length=1, max_length=200, description="Human name of the audience")]

FILTER_DOC = (
    'A group {"all": [...]} or {"any": [...]} of conditions and groups (at most 5 deep, '
    '50 conditions). A condition is {"field": "plan", "op": "equals", "value": "pro"}; op is '
    "one of equals, not_equals, in (a list of at most 500 values), exists, not_exists (no "
    "value), gt, gte, lt, lte (numbers with numbers, strings with strings such as ISO dates), "
    "contains (case-insensitive substring of text, membership in a list). A field is a profile "
    "field or, when the profile has no such field, an identifier kind; force one with "
    "field.<name> or identifier.<kind>; profile.id, profile.created_at and profile.updated_at "
    'name the profile itself. {"all": []} selects every profile. See docs/audiences.md.'
)
FILTER_EXAMPLE = {"all": [{"field": "plan", "op": "in", "value": ["pro", "team"]},
                          {"any": [{"field": "age", "op": "gte", "value": 18},
                                   {"field": "identifier.email", "op": "contains", "value": "@example.com"}]}]}
Filter = Annotated[dict[str, Any], Field(description=FILTER_DOC, examples=[FILTER_EXAMPLE])]


class _Named(Strict):
    @field_validator("name", check_fields=False)
    @classmethod
    def _no_control_in_name(cls, v: Any) -> Any:
        return clean_text(v) if isinstance(v, str) else v


class AudienceCreate(_Named):
    name: Name
    description: Description = ""
    filter: Filter


class AudiencePatch(_Named):
    name: Name | None = None
    description: Description | None = None
    filter: Filter | None = None
    version: int | None = Field(None, ge=1, description="Version being edited (or send If-Match)")


class AudiencePreview(Strict):
    filter: Filter


class AudienceOut(Out):
    id: str = Field(description="aud_… (time-sortable)")
    name: str
    description: str
    filter: dict[str, Any] = Field(description="The filter as stored: field names normalised")
    owner: str = Field(description="User who created it")
    created_at: str
    updated_at: str
    version: int = Field(description="Send it back (If-Match or version) to edit")
    export_jobs: int = Field(0, description="Export jobs that send this audience; it can be deleted only at 0")


class AudienceMemberOut(Out):
    id: str = Field(description="prof_…")
    email: str | None = Field(description="The profile's first email identifier (or email field)")


class AudienceSizesIn(Strict):
    ids: list[str] = Field(min_length=1, max_length=200, description="Audience ids (aud_…), at most 200")


class AudienceSize(Out):
    size: int = Field(description="Profiles that match, among those scanned: exact unless truncated")
    sample: list[AudienceMemberOut] = Field(description="Up to 10 members")
    scanned: int = Field(description="Profiles read (at most 20,000)")
    truncated: bool = Field(description="True when reading stopped at the 20,000-profile cap with profiles "
                                        "left unread: then size is a lower bound, the matches among those read")
    computed_at: str = Field(description="When the profiles were read (UTC); a size is kept a minute per filter")
    cached: bool = Field(description="True when this is a kept answer rather than a fresh read")


class AudienceSizeOf(AudienceSize):
    id: str = Field(description="The audience (aud_…)")


__all__ = ["AudienceCreate", "AudienceMemberOut", "AudienceOut", "AudiencePatch", "AudiencePreview", "AudienceSize", "AudienceSizeOf",
           "AudienceSizesIn"]
