"""Reading the audit log (events are written by the services that make the changes)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from chalicelib.domain.access import GRANTS, Capability, Principal
from chalicelib.store.dynamo import Page

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.services.needs import AuditNeeds

# Their diffs hold people's emails and which token belongs to whom: for admins only. Other
# readers still see that the event happened, by whom and when.
ADMIN_DIFFS = frozenset({"user", "token"})


def list_(d: AuditNeeds, p: Principal, *, limit: int, cursor: str | None, object_id: str | None,
          user_id: str | None, since: str | None, until: str | None) -> Page:
    # Who did what is for the people who manage integrations, not for observers.
    p.require(Capability.MANAGE_INTEGRATIONS)
    page = d.audit.page(p.account_id, limit=limit, cursor=cursor, object_id=object_id,
                        user_id=user_id, since=since, until=until)
    if Capability.ADMINISTER in GRANTS[p.role]:
        return page
    return replace(page, items=[{**e, "diff": {}} if e["object_type"] in ADMIN_DIFFS else e
                                for e in page.items])
