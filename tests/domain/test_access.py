"""Roles and capabilities (SPEC rule 11)."""

from __future__ import annotations

import itertools

import pytest

from chalicelib.domain.access import GRANTS, Capability, Principal, Role
from chalicelib.domain.errors import ErrorKind, Forbidden

C = Capability

EXPECTED = {
    Role.OBSERVER: {C.READ},
    Role.DATA_MANAGER: {C.READ, C.MANAGE_INTEGRATIONS},
    Role.ADMIN: {C.READ, C.MANAGE_INTEGRATIONS, C.ADMINISTER},
}


def principal(role: Role) -> Principal:
    return Principal(account_id="acct_1", user_id="user_1", role=role, token_id="tok_1")


def test_grants_per_role() -> None:
    # THEN observers only read, data managers also manage integrations, admins do everything
    assert set(GRANTS) == set(Role)
    assert {role: set(caps) for role, caps in GRANTS.items()} == EXPECTED
    assert GRANTS[Role.ADMIN] == frozenset(Capability)


@pytest.mark.parametrize(
    ("role", "capability"),
    [p for p in itertools.product(Role, Capability) if p[1] in EXPECTED[p[0]]],
    ids=lambda v: v.value,
)
def test_require_allows_granted_capability(role: Role, capability: Capability) -> None:
    # GIVEN a caller whose role grants the capability
    # WHEN it is required
    # THEN nothing is raised
    assert principal(role).require(capability) is None


@pytest.mark.parametrize(
    ("role", "capability"),
    [p for p in itertools.product(Role, Capability) if p[1] not in EXPECTED[p[0]]],
    ids=lambda v: v.value,
)
def test_require_forbids_other_capabilities(role: Role, capability: Capability) -> None:
    # GIVEN a caller whose role lacks the capability
    # WHEN it is required
    with pytest.raises(Forbidden) as caught:
        principal(role).require(capability)

    # THEN the caller is forbidden, told its role and what was needed
    err = caught.value
    assert err.kind is ErrorKind.FORBIDDEN
    assert err.code == "auth.forbidden"
    assert err.details == {"role": role.value, "needs": capability.value}
