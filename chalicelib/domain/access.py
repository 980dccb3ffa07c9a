"""Roles and what each may do (SPEC rule 11)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from chalicelib.domain.errors import Forbidden


class Role(StrEnum):
    ADMIN = "admin"
    DATA_MANAGER = "data_manager"
    OBSERVER = "observer"


class Capability(StrEnum):
    READ = "read"
    MANAGE_INTEGRATIONS = "manage_integrations"  # jobs and authorizations
    ADMINISTER = "administer"  # tokens and users


GRANTS: dict[Role, frozenset[Capability]] = {
    Role.ADMIN: frozenset(Capability),
    Role.DATA_MANAGER: frozenset({Capability.READ, Capability.MANAGE_INTEGRATIONS}),
    Role.OBSERVER: frozenset({Capability.READ}),
}


@dataclass(frozen=True)
class Principal:
    """Who is calling: resolved from a token by the authorizer."""

    account_id: str
    user_id: str
    role: Role
    token_id: str

    def require(self, capability: Capability) -> None:
        if capability not in GRANTS[self.role]:
            raise Forbidden(
                f"role {self.role.value!r} may not do this (needs {capability.value!r})",
                code="auth.forbidden",
                details={"role": self.role.value, "needs": capability.value},
            )
