"""The base of every provider's credentials and config models (imported by providers only,
which load on first use: pydantic stays out of the app's import time)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, SecretStr


class StrictModel(BaseModel):
    """Unknown fields are refused (named in the error), strings are stripped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, defer_build=True)


def _header_safe(value: SecretStr) -> SecretStr:
    # The value goes into an HTTP header as it is: a line break would end the header (and
    # inject another), a space breaks the Bearer syntax, a non-ASCII character cannot be sent.
    if not all("\x21" <= ch <= "\x7e" for ch in value.get_secret_value()):
        raise ValueError("must be printable ASCII without spaces, tabs or line breaks")
    return value


HeaderSecret = Annotated[SecretStr, AfterValidator(_header_safe)]
"""A secret sent as it is in a header (a bearer token, an API key)."""
