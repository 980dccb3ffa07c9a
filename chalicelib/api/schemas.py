"""Request models: validation of bodies (response models: response_schemas.py; the job
routes' models: job_schemas.py; their shared base: schema_base.py).

Imported on the first request that needs them, never at cold start.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from chalicelib.api.schema_base import Description, Ident, Label, Strict
from chalicelib.domain.access import Role

# -- requests ---------------------------------------------------------------------------


class AuthorizationCreate(Strict):
    provider: Ident
    method: Ident
    label: Label
    description: Description = ""
    credentials: dict[str, Any] = Field(description="Fields of the method's credentials_schema")


class AuthorizationPatch(Strict):
    label: Label | None = None
    description: Description | None = None
    version: int | None = Field(None, ge=1, description="Version being edited (or send If-Match)")


class CredentialsPut(Strict):
    credentials: dict[str, Any]
    version: int | None = Field(None, ge=1, description="Version being edited (or send If-Match)")


_EMAIL = r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{2,63}$"


class AlertSettingsPut(Strict):
    emails: list[Annotated[str, Field(pattern=_EMAIL, max_length=254)]] = Field(
        default_factory=list, max_length=10, description="Addresses that get alert e-mails (SNS asks each to confirm)")
    webhooks: list[Annotated[str, Field(pattern=r"^(https?://|whk_)", max_length=2048)]] = Field(
        default_factory=list, max_length=5,
        description="The id of each webhook to keep, and the URL of each to add (https; it gets signed "
                    "JSON alerts; its signing secret is shown once)")
    version: int = Field(ge=0, description="The version read (0 before the first save)")


class AlertRuleIn(Strict):
    metric: Literal["added", "removed", "omitted"] = Field(description="The job activity metric bounded")
    granularity: Literal["hour", "day", "week"] = Field(description="The bucket the bounds apply to")
    min: int | None = Field(None, ge=0, description="Alert when a bucket is below this")
    max: int | None = Field(None, ge=0, description="Alert when a bucket is above this")
    allowable_violations: int = Field(
        0, ge=0, description="Consecutive violating buckets tolerated before the alert fires")


class TokenCreate(Strict):
    label: Label
    user_id: Ident | None = Field(None, description="Whose token; the caller's when omitted")


class OAuthStartQuery(Strict):
    """The start route's query, checked like a body: the label becomes an authorization's."""

    label: Label | None = None


class UserCreate(Strict):
    email: Annotated[str, Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
    name: Label
    role: Role


class UserPatch(Strict):
    role: Role | None = Field(None, description="The new role: every token of the user acts with it")
    disabled: bool | None = Field(None, description="true: the user's tokens are revoked and no new one is issued")
