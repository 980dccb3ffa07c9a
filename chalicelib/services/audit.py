"""Reading the audit log (events are written by the services that make the changes)."""

from __future__ import annotations

from chalicelib.domain.access import Capability, Principal
from chalicelib.services.deps import Deps
from chalicelib.store.dynamo import Page


def list_(d: Deps, p: Principal, *, limit: int, cursor: str | None, object_id: str | None,
          user_id: str | None, since: str | None, until: str | None) -> Page:
    # Who did what is for the people who manage integrations, not for observers.
    p.require(Capability.MANAGE_INTEGRATIONS)
    return d.audit.page(p.account_id, limit=limit, cursor=cursor, object_id=object_id,
                        user_id=user_id, since=since, until=until)
