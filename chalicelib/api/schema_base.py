"""The base of the API's request models: `Strict` (unknown fields refused, strings stripped,
no control characters in labels, descriptions and names) and the shared field types.

Imported on the first request that needs a request model, never at cold start.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Bidirectional embeddings, overrides and isolates reorder how the text around them is
# displayed ("Trojan Source", CVE-2021-42574): a label could show one name and hold another.
# Right-to-left text itself (Arabic, Hebrew) and the LRM/RLM marks stay allowed.
_BIDI_CONTROL = re.compile("[\u202a-\u202e\u2066-\u2069]")


def clean_text(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    if _BIDI_CONTROL.search(value):
        raise ValueError("must not contain bidirectional control characters (U+202A-U+202E, U+2066-U+2069)")
    return value


Label = Annotated[str, Field(min_length=1, max_length=200, description="Human name")]
Description = Annotated[str, Field(max_length=2000)]
Ident = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]


class Strict(BaseModel):
    # Built on first use: a request validates one body, not every model of the API.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, defer_build=True)

    @field_validator("label", "description", "name", check_fields=False)
    @classmethod
    def _no_control(cls, v: Any) -> Any:
        return clean_text(v) if isinstance(v, str) else v
