"""The base of every provider's credentials and config models (imported by providers only,
which load on first use: pydantic stays out of the app's import time)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Unknown fields are refused (named in the error), strings are stripped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
