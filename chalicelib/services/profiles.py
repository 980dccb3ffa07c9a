"""Use cases of the profile store seen by people: look a profile up, list, read one.

Imports write profiles through the engine (ProfileRepo.upsert_batch), not through here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalicelib.domain.access import Capability, Principal
from chalicelib.domain.errors import BadRequest, not_found
from chalicelib.domain.profiles import Profile, parse_identifier
from chalicelib.store.dynamo import Page

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.services.needs import ProfilesNeeds


def find(d: ProfilesNeeds, p: Principal, identifier: str) -> list[Profile]:
    """'kind:value' -> the profile it identifies, as a list of zero or one."""
    p.require(Capability.READ)
    try:
        kind, value = parse_identifier(identifier)
    except ValueError as exc:
        raise BadRequest(
            f"query parameter 'identifier' {exc}",
            code="request.invalid_query",
            fields={"identifier": str(exc)},
        ) from None
    found = d.profiles.find(p.account_id, kind, value)
    return [found] if found is not None else []


def list_(d: ProfilesNeeds, p: Principal, *, limit: int, cursor: str | None) -> Page:
    p.require(Capability.READ)
    return d.profiles.page(p.account_id, limit=limit, cursor=cursor)


def get(d: ProfilesNeeds, p: Principal, profile_id: str) -> Profile:
    p.require(Capability.READ)
    found = d.profiles.get(p.account_id, profile_id)
    if found is None:
        # Same answer for another account's profile and one that never existed.
        raise not_found("profile", profile_id)
    return found
