"""Use cases of audience membership kept current (docs/audiences.md, "Membership"):
profile changes from the profiles table's stream, and backfills of a new or edited audience.

Both end in `record_verdict`: read the (audience, profile) member item, decide with the
pure rules of domain/membership.py, and record an enter or exit as the next change of the
audience's log (store/audience_members.py), retrying when another writer got there first.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chalicelib.domain import membership as M
from chalicelib.domain.audiences import Audience
from chalicelib.services import realtime
from chalicelib.store.audience_members import Refused
from chalicelib.store.profiles import SHARDS, account_of_profiles_pk, profile_from_image

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.services.needs import AudienceMembersNeeds

log = logging.getLogger("switchyard.membership")

MAX_TRIES = 20  # writers racing for one audience's next change number
REPLAYED = 0  # record_verdict: an earlier delivery of the same stream record recorded it
BACKFILL_PAGE = 200  # profiles evaluated per backfill message


class Contended(RuntimeError):
    """A change could not be recorded after MAX_TRIES (other writers kept winning): the
    record is reported failed and redelivered."""


def change_from_record(raw: Mapping[str, Any]) -> M.ProfileChange | None:
    """A profile change from one stream record (the Lambda event's shape); None for items
    that are not profiles."""
    ddb = raw.get("dynamodb") or {}
    keys = ddb.get("Keys") or {}
    old = profile_from_image(ddb.get("OldImage"))
    new = profile_from_image(ddb.get("NewImage"))
    sk = str((keys.get("SK") or {}).get("S", ""))
    account = account_of_profiles_pk(str((keys.get("PK") or {}).get("S", "")))
    if account is None or not sk.startswith("PROF#") or (old is None and new is None):
        return None
    return M.ProfileChange(account, sk[len("PROF#"):], M.pad_position(str(ddb.get("SequenceNumber", ""))),
                           old, new)


def record_verdict(d: AudienceMembersNeeds, account_id: str, verdict: M.Verdict, *, position: str,
                   profile_version: int) -> int | None:
    """Record the enter or exit `verdict` implies, once; the change's number, REPLAYED when
    an earlier delivery of this stream record recorded it (its nudge may have been lost), or
    None when nothing changes (something newer is recorded). Idempotent: a replay finds the
    member item already in the verdict's state, or newer than the replayed change."""
    repo = d.audience_members
    for _ in range(MAX_TRIES):
        current = repo.state(account_id, verdict.audience_id, verdict.profile_id)
        if current is not None and is_stale(current, verdict, position, profile_version):
            return REPLAYED if position and current.position == position else None
        change = M.decide(verdict, current)
        if change is None:
            return None
        head = repo.head(account_id, verdict.audience_id)
        try:
            return repo.record(account_id, verdict, change, was=current, head=head, position=position,
                               profile_version=profile_version)
        except Refused:
            continue  # re-read: the member item or the head moved
    raise Contended(f"audience {verdict.audience_id}: could not record a change in {MAX_TRIES} tries")


def is_stale(current: M.MemberState, verdict: M.Verdict, position: str, profile_version: int) -> bool:
    """Whether the recorded state already reflects something newer than this verdict."""
    if current.audience_version > verdict.audience_version:
        return True  # decided with a newer filter
    if position:
        return bool(current.position) and current.position >= position
    return current.profile_version > profile_version


@dataclass
class ChangeBatch:
    """One batch of stream records: each account's audiences are read once (a Query) and
    kept for the batch."""

    d: AudienceMembersNeeds
    audiences: dict[str, list[M.LiveAudience]] = field(default_factory=dict)
    recorded: int = 0
    # account -> audiences whose change log grew in this batch, or had grown in an earlier
    # delivery of it (their real-time jobs are nudged)
    grown: dict[str, set[str]] = field(default_factory=dict)
    # account -> the stream records (sequence numbers) that grew its logs: retried when the
    # account's nudge is refused
    growers: dict[str, list[str]] = field(default_factory=dict)

    def live(self, account_id: str) -> list[M.LiveAudience]:
        found = self.audiences.get(account_id)
        if found is None:
            found = self.audiences[account_id] = M.compile_audiences(self.d.audiences.all(account_id))
        return found

    def apply(self, raw: Mapping[str, Any]) -> int:
        """One stream record; the changes recorded."""
        change = change_from_record(raw)
        if change is None:
            return 0
        n = 0
        seq = str((raw.get("dynamodb") or {}).get("SequenceNumber", ""))
        for verdict in M.verdicts(change, self.live(change.account_id)):
            number = record_verdict(self.d, change.account_id, verdict, position=change.position,
                                    profile_version=change.profile_version)
            if number is None:
                continue
            n += number != REPLAYED
            self.grown.setdefault(change.account_id, set()).add(verdict.audience_id)
            growers = self.growers.setdefault(change.account_id, [])
            if seq and seq not in growers:
                growers.append(seq)
        self.recorded += n
        return n

    def nudge(self) -> list[str]:
        """Nudge the real-time jobs of the logs that grew; the stream records to retry
        because their account's nudge was refused (a retry records nothing twice and nudges
        again, so a lost nudge cannot strand the changes)."""
        return [seq for account_id in nudge_quietly(self.d, self.grown) for seq in self.growers.get(account_id, [])]


def nudge_quietly(d: AudienceMembersNeeds, grown: Mapping[str, set[str]]) -> list[str]:
    """Tell the real-time jobs of audiences whose log grew; the accounts whose nudge the
    queue refused (logged; the caller has it tried again)."""
    refused = []
    for account_id, audiences in grown.items():
        try:
            realtime.nudge(d, account_id, audiences)
        except Exception:
            log.exception("could not nudge the real-time jobs of %d audiences", len(audiences))
            refused.append(account_id)
    return refused


# -- backfills ---------------------------------------------------------------------------


def start_backfill(d: AudienceMembersNeeds, audience: Audience) -> bool:
    """Queue the first page of a backfill of the audience's current version (a new or
    edited filter). The page's handler creates the backfill item, so a lost send leaves
    nothing half started. False (logged) when the queue refused: the audience is saved."""
    try:
        d.backfill_queue.send(backfill_message(audience.account_id, audience.id, audience.version, 0))
    except Exception:
        log.exception("could not queue the backfill of audience %s", audience.id)
        return False
    return True


def backfill_message(account_id: str, audience_id: str, version: int, page: int) -> dict[str, Any]:
    return {"account_id": account_id, "audience_id": audience_id, "version": version, "page": page}


def backfill_page(d: AudienceMembersNeeds, message: Mapping[str, Any]) -> str:
    """One page of a backfill. The backfill item says where it stands; a message for a page
    it is no longer at is a duplicate (or a crash after moving it: then the next message is
    sent again). Re-evaluating a page is harmless: recorded verdicts are not recorded twice."""
    account_id, audience_id = str(message["account_id"]), str(message["audience_id"])
    version, page = int(message["version"]), int(message["page"])
    repo = d.audience_members
    state = repo.backfill(account_id, audience_id)
    if page == 0 and (state is None or state.audience_version < version):
        repo.start_backfill(account_id, audience_id, version)
        state = repo.backfill(account_id, audience_id)
    if state is None or state.audience_version != version:
        return "superseded"
    if state.pages != page:
        if state.pages == page + 1 and not state.done:
            d.backfill_queue.send(backfill_message(account_id, audience_id, version, page + 1))
            return "resent"
        return "duplicate"
    if state.done:
        return "done"
    audience = d.audiences.get(account_id, audience_id, consistent=True)
    if audience is None or audience.version != version:
        return "superseded"
    compiled = M.compile_audiences([audience])
    profiles, last = d.profiles.shard_page(account_id, state.shard, state.start, BACKFILL_PAGE)
    recorded = 0
    for live in compiled:  # none when the stored filter no longer compiles
        states = repo.states(account_id, audience_id, [p.id for p in profiles]) if profiles else {}
        for profile in profiles:
            verdict = M.evaluate(profile, live)
            if M.decide(verdict, states.get(profile.id)) is None:
                continue  # the common case: nothing to write, no further read
            if record_verdict(d, account_id, verdict, position="", profile_version=profile.version) is not None:
                recorded += 1
    shard, start = (state.shard, last) if last else (state.shard + 1, None)
    done = shard >= SHARDS
    # The last page nudges whatever it recorded: a nudge an earlier page lost is covered
    # there. A refused nudge fails the page before it moves on, so SQS brings it back.
    if (recorded or done) and nudge_quietly(d, {account_id: {audience_id}}):
        raise RuntimeError(f"audience {audience_id}: the real-time queue refused the backfill's nudge")
    if repo.advance_backfill(account_id, audience_id, state, shard, start, done) and not done:
        d.backfill_queue.send(backfill_message(account_id, audience_id, version, page + 1))
    return "done" if done else "page"


__all__ = [
    "ChangeBatch",
    "Contended",
    "backfill_message",
    "backfill_page",
    "change_from_record",
    "is_stale",
    "nudge_quietly",
    "record_verdict",
    "start_backfill",
]
