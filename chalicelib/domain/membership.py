"""Audience membership kept current from profile changes: the pure part (docs/audiences.md).

A profile change (from the profiles table's stream, or read by a backfill) is evaluated
against the account's audiences; each audience the profile was or is a member of gives a
*verdict* (member now or not). Comparing a verdict with the recorded membership state
decides whether the profile enters, exits, or nothing happens. No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from chalicelib.domain.audiences import Audience, CompiledFilter, parse_filter
from chalicelib.domain.errors import Invalid
from chalicelib.domain.profiles import Profile

ENTER = "enter"
EXIT = "exit"


@dataclass(frozen=True)
class LiveAudience:
    """An audience with its filter compiled, as one batch of changes evaluates it."""

    id: str
    version: int
    member: CompiledFilter


def compile_audiences(audiences: Iterable[Audience]) -> list[LiveAudience]:
    """The audiences whose filter compiles (a stored filter is valid when saved; one that
    no longer parses matches nobody rather than stopping every change of the account)."""
    out = []
    for a in audiences:
        try:
            out.append(LiveAudience(a.id, a.version, parse_filter(a.filter)))
        except Invalid:
            continue
    return out


@dataclass(frozen=True)
class ProfileChange:
    """One profile as it was and as it is (None: did not exist / was removed). `position`
    orders the changes of one profile: the stream's sequence number, zero-padded."""

    account_id: str
    profile_id: str
    position: str
    old: Profile | None
    new: Profile | None

    @property
    def profile_version(self) -> int:
        """The profile version a verdict reflects; a removal counts as one more write."""
        if self.new is not None:
            return self.new.version
        return (self.old.version + 1) if self.old is not None else 0


@dataclass(frozen=True)
class Verdict:
    """Whether `profile_id` is a member of `audience_id` (at `audience_version`)."""

    audience_id: str
    audience_version: int
    profile_id: str
    member: bool


@dataclass(frozen=True)
class MemberState:
    """What is recorded for one (audience, profile): in or out, and what it reflects."""

    member: bool
    position: str  # the stream position that last changed it ("" when a backfill did)
    profile_version: int
    audience_version: int


def verdicts(change: ProfileChange, audiences: Iterable[LiveAudience]) -> list[Verdict]:
    """A verdict for each audience the profile was or is a member of. Profiles of another
    account are never evaluated: the caller passes this account's audiences only, and a
    change whose profile names another account gives nothing."""
    out = []
    for a in audiences:
        was = change.old is not None and change.old.account_id == change.account_id and a.member(change.old)
        now = change.new is not None and change.new.account_id == change.account_id and a.member(change.new)
        if was or now:
            out.append(Verdict(a.id, a.version, change.profile_id, now))
    return out


def evaluate(profile: Profile, audience: LiveAudience) -> Verdict:
    """A backfill's verdict: the profile as read now, against the audience."""
    return Verdict(audience.id, audience.version, profile.id, audience.member(profile))


def decide(verdict: Verdict, current: MemberState | None) -> str | None:
    """ENTER, EXIT or None (nothing to record): only a change of state is a change."""
    was = current.member if current is not None else False
    if verdict.member == was:
        return None
    return ENTER if verdict.member else EXIT


def pad_position(sequence_number: str) -> str:
    """Stream sequence numbers are decimal strings of 21 to 40 digits: padded, they compare
    as strings (a DynamoDB number keeps only 38 digits)."""
    digits = sequence_number.strip()
    if not digits.isdigit() or len(digits) > 40:
        raise ValueError(f"not a stream sequence number: {sequence_number!r}")
    return digits.zfill(40)


__all__ = [
    "ENTER",
    "EXIT",
    "LiveAudience",
    "MemberState",
    "ProfileChange",
    "Verdict",
    "compile_audiences",
    "decide",
    "evaluate",
    "pad_position",
    "verdicts",
]
