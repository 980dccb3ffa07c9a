"""Response model of the profile routes (registered for OpenAPI by chalicelib.api.schemas).

Imported on first use only, like schemas.py.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from chalicelib.api.response_schemas import Out


class ProfileOut(Out):
    id: str = Field(description="prof_… (stable)")
    identifiers: dict[str, list[str]] = Field(
        description="Identifier kind -> the values linked to this profile (emails lower-cased)"
    )
    fields: dict[str, Any] = Field(description="Profile fields as merged by imports")
    created_at: str
    updated_at: str
    version: int


__all__ = ["ProfileOut"]
