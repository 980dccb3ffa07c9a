"""An audience's membership read from its change log: the member items, with the changes
since a given change number folded over them (docs/realtime.md). The export runs and the
real-time sends both read membership this way."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from chalicelib.domain.membership import ENTER, EXIT
from chalicelib.store.audience_members import Change

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.services.needs import MembershipLogNeeds


def net_changes(changes: Sequence[Change]) -> dict[str, tuple[bool, bool]]:
    """Per profile of a stretch of the log: (member before it, member after it). A profile's
    changes alternate, so its first change says where it stood and its last where it stands. Pure."""
    out: dict[str, tuple[bool, bool]] = {}
    for c in changes:
        before = out[c.profile_id][0] if c.profile_id in out else c.change == EXIT
        out[c.profile_id] = (before, c.change == ENTER)
    return out


def log_membership(d: MembershipLogNeeds, account_id: str, audience_id: str, at: int | None,
                   keep: Callable[[], None] | None = None) -> tuple[set[str], int]:
    """The audience's members as of change `at` (None: as of the head, read last), and that
    change's number. The member items are read first: one that changed while they were
    read has its changes after `at` (or after the first head read) in the log, which
    settles its state at that number."""
    repo = d.audience_members
    since = repo.head(account_id, audience_id) if at is None else at
    ids = set(repo.members(account_id, audience_id))
    head = repo.head(account_id, audience_id)
    for pid, (before, after) in net_changes(repo.all_changes(account_id, audience_id, after=since,
                                                             upto=head, on_page=keep)).items():
        if (after if at is None else before):
            ids.add(pid)
        else:
            ids.discard(pid)
    return ids, head if at is None else at


__all__ = ["log_membership", "net_changes"]
