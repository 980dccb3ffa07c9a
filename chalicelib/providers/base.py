"""The one interface every provider implements (STYLE: spec, check, options, steps)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from chalicelib.domain.catalog import ProviderSpec
from chalicelib.domain.models import CheckResult
from chalicelib.providers.calls import CallCounter

if TYPE_CHECKING:
    from pydantic import BaseModel

ConfigT = TypeVar("ConfigT", bound="BaseModel")


@dataclass(frozen=True)
class Option:
    value: str
    label: str
    kind: str | None = None  # e.g. "prefix" or "object" for S3 keys


class Provider(Protocol):
    spec: ProviderSpec

    def check(
        self,
        method: str,
        credentials: Any,
        resources: dict[str, str],
        counter: CallCounter | None = None,
    ) -> CheckResult:
        """Verify credentials (and named resources).

        Bad credentials or missing resources are a result (unhealthy + reason), never an
        exception; ProviderError(transient=True) means nothing could be concluded.
        """
        ...

    def options(
        self,
        method: str,
        credentials: Any,
        workflow: str,
        field: str,
        params: dict[str, str],
        counter: CallCounter | None = None,
    ) -> list[Option]:
        """Choices for a config field, read live through the credentials."""
        ...

    def credential_hint(self, method: str, credentials: Any) -> str | None:
        """A masked, non-secret reminder of which credentials these are."""
        ...


class ProviderError(Exception):
    """A provider call failed in a way the user must fix or wait out.

    `transient` separates throttling/outages (retry later) from config/auth errors.
    The message is the provider's reason in plain words, never a credential.
    """

    def __init__(
        self,
        reason: str,
        *,
        transient: bool = False,
        field: str | None = None,
        retry_after: float | None = None,
        auth: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        # The credentials themselves were refused (401/403, revoked or expired keys): the
        # authorization is unhealthy, not just this job's configuration.
        self.auth = auth
        self.field = field
        self.retry_after = retry_after  # seconds the provider asked us to wait (Retry-After)


def mask(value: str, keep: int = 4) -> str:
    if len(value) <= keep * 2:
        return "…" + value[-2:] if len(value) > 2 else "…"
    return f"{value[:keep]}…{value[-keep:]}"


def job_config(model: type[ConfigT], config: Mapping[str, Any]) -> ConfigT:
    """A source's job config as `model`; a ProviderError naming the first problem otherwise."""
    from pydantic import ValidationError  # pydantic stays off `import app`

    try:
        return model.model_validate(config)
    except ValidationError as exc:
        raise ProviderError(f"the job's config is not valid: {exc.errors()[0]['msg']}") from None
