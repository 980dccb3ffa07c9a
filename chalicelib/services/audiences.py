"""Use cases of audiences: saved filters over profiles, and how many profiles they hold.

Roles: observers read (a size preview is a read); data managers and admins write.
Every function checks the role itself, whatever the route already did.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from chalicelib.domain import audiences as A
from chalicelib.domain.access import Capability, Principal
from chalicelib.domain.audit import AuditEvent, diff
from chalicelib.domain.errors import Invalid, not_found, stale_version
from chalicelib.domain.ids import new_id
from chalicelib.services.audience_members import start_backfill
from chalicelib.store.dynamo import Page, now_iso

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.services.needs import AudiencesNeeds

EDITABLE = ("name", "description", "filter")
PAGE_SIZE = 1000  # profiles per Query while estimating (DynamoDB stops a page at 1 MB anyway)
SIZE_TTL_SECONDS = 60  # how long a size estimate is reused (docs/audiences.md, "Sizes")
clock: Callable[[], float] = time.time  # epoch seconds kept sizes expire by (tests hold it still)
# Profile x filter tests one sizes call may make: 20 filters at the full scan cap, a few
# seconds of CPU (200 filters at the full cap took ~40 s, past API Gateway's 29 s).
SIZES_WORK = 20 * A.MAX_SCAN


@dataclass(frozen=True)
class NewAudience:
    name: str
    description: str
    filter: Any


def create(d: AudiencesNeeds, p: Principal, new: NewAudience) -> A.Audience:
    p.require(Capability.MANAGE_INTEGRATIONS)
    compiled = A.parse_filter(new.filter)
    now = now_iso()
    audience = A.Audience(
        id=new_id("aud"),
        account_id=p.account_id,
        name=new.name,
        description=new.description,
        filter=compiled.tree,
        owner=p.user_id,
        created_at=now,
        updated_at=now,
    )
    d.audiences.create(audience)
    start_backfill(d, audience)
    _audit(d, p, "created", audience.id, audience.name, diff({}, {"name": audience.name, "description": audience.description,
                                               "filter": audience.filter}))
    return audience


def get(d: AudiencesNeeds, p: Principal, audience_id: str) -> A.Audience:
    p.require(Capability.READ)
    found = d.audiences.get(p.account_id, audience_id)
    if found is None:
        # Same answer for another account's audience and one that never existed.
        raise not_found("audience", audience_id)
    return found


def list_(d: AudiencesNeeds, p: Principal, *, limit: int, cursor: str | None) -> Page:
    p.require(Capability.READ)
    return d.audiences.page(p.account_id, limit=limit, cursor=cursor)


def edit(d: AudiencesNeeds, p: Principal, audience_id: str, patch: dict[str, Any], version: int | None) -> A.Audience:
    """Name, description and filter may change. The version is required: exports send an
    audience's membership, so silently overwriting a colleague's filter is not an option."""
    p.require(Capability.MANAGE_INTEGRATIONS)
    unknown = sorted(set(patch) - set(EDITABLE))
    if unknown:
        raise Invalid("only name, description and filter can change",
                      fields={k: "cannot be changed" for k in unknown})
    current = get(d, p, audience_id)
    if version is None:
        raise Invalid(
            "send the version you edited (If-Match header or 'version' in the body)",
            code="validation.version_required",
            fields={"version": "required"},
        )
    if version != current.version:
        raise stale_version("audience", version)
    changes = dict(patch)
    if "filter" in changes:
        changes["filter"] = A.parse_filter(changes["filter"]).tree
    changes = {k: v for k, v in changes.items() if getattr(current, k) != v}
    if not changes:
        return current
    # The read above only gives early, clear answers; the write itself is conditional
    # on the version, so an edit landing in between still makes this one a 409.
    saved = d.audiences.update(p.account_id, audience_id, changes, expected_version=version)
    if "filter" in changes:
        start_backfill(d, saved)
    _audit(d, p, "changed", saved.id, saved.name, diff({k: getattr(current, k) for k in changes}, changes))
    return saved


def delete(d: AudiencesNeeds, p: Principal, audience_id: str) -> None:
    """Refused (409 audience.in_use) while an export job sends it: a condition on the
    DeleteItem, on the count the job writes keep on the audience item."""
    p.require(Capability.MANAGE_INTEGRATIONS)
    d.audiences.delete(p.account_id, audience_id)
    _audit(d, p, "deleted", audience_id, "", {})


def _audit(d: AudiencesNeeds, p: Principal, action: str, audience_id: str, name: str, changes: dict[str, Any]) -> None:
    """Recorded once the change committed; audiences hold filters, never secrets."""
    d.audit.put(AuditEvent(p.account_id, p.user_id, action, "audience", audience_id, name, changes))


def preview(d: AudiencesNeeds, p: Principal, filter_: Any, *, max_scan: int = A.MAX_SCAN) -> A.Estimate:
    """How many of the account's profiles an (unsaved) filter selects, with a sample.

    Reads at most max_scan profiles, shard by shard (Queries, never a Scan), and keeps the
    answer SIZE_TTL_SECONDS per filter: asking again costs one GetItem.
    """
    p.require(Capability.READ)
    return _estimates(d, p, [A.parse_filter(filter_)], max_scan)[0]


def size(d: AudiencesNeeds, p: Principal, audience_id: str, *, max_scan: int = A.MAX_SCAN) -> A.Estimate:
    audience = get(d, p, audience_id)
    return _estimates(d, p, [A.parse_filter(audience.filter)], max_scan)[0]


def sizes(d: AudiencesNeeds, p: Principal, audience_ids: list[str], *,
          max_scan: int = A.MAX_SCAN) -> dict[str, A.Estimate]:
    """The sizes of several saved audiences (an audience list), by id; ids that are not
    this account's audiences are left out. Read together: one BatchGetItem of the
    audiences, one of the cached sizes, and one shared pass over the profiles for the rest.

    Every profile read is tested against every filter, so the work grows with both: past
    SIZES_WORK // max_scan distinct filters, each is counted among fewer profiles (the
    answers say so with `truncated`), which keeps one call within a few seconds."""
    p.require(Capability.READ)
    found = d.audiences.get_many(p.account_id, audience_ids)
    ids = [i for i in dict.fromkeys(audience_ids) if i in found]
    compiled = [A.parse_filter(found[i].filter) for i in ids]
    distinct = len({A.filter_key(c.tree) for c in compiled})
    cap = max(1, min(max_scan, SIZES_WORK // max(1, distinct)))
    return dict(zip(ids, _estimates(d, p, compiled, cap), strict=True))


def _estimates(d: AudiencesNeeds, p: Principal, compiled: list[A.CompiledFilter], max_scan: int) -> list[A.Estimate]:
    """Kept estimates where fresh, one shared read of the profiles for the others.
    Kept per normalised filter (so per audience version: a new filter, a new key); one
    counted among fewer profiles than max_scan does not answer for it. Profiles change
    with imports, hence the short TTL."""
    keys = [A.filter_key(c.tree) for c in compiled]
    now = clock()
    known = {k: e for k, e in d.audiences.cached_sizes(p.account_id, keys, now=now).items()
             if not e.truncated or e.scanned >= max_scan}
    missing = {k: c for k, c in zip(keys, compiled, strict=True) if k not in known}
    if missing:
        profiles = d.profiles.iterate(p.account_id, page_size=min(PAGE_SIZE, max_scan + 1))
        computed_at = now_iso()
        fresh = {k: replace(e, computed_at=computed_at) for k, e in zip(
            missing, A.estimate_many(list(missing.values()), profiles, max_scan=max_scan), strict=True)}
        d.audiences.cache_sizes(p.account_id, fresh, expires_at=int(now) + SIZE_TTL_SECONDS)
        known.update(fresh)
    return [known[k] for k in keys]


__all__ = ["NewAudience", "create", "delete", "edit", "get", "list_", "preview", "size", "sizes"]
