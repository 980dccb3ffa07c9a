"""Identifiers that sort by creation time, so a newest-first listing is a key-order Query."""

from __future__ import annotations

import secrets
import time
import uuid

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _b32(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        value, rem = divmod(value, 32)
        out.append(_ALPHABET[rem])
    return "".join(reversed(out))


def new_id(prefix: str) -> str:
    millis = int(time.time() * 1000)
    return f"{prefix}_{_b32(millis, 10)}{_b32(secrets.randbits(80), 16)}"


def role_session_name(account_id: str | None) -> str:
    """The session name of a role Switchyard assumes for an account: `switchyard-<account>`,
    so the customer's CloudTrail shows which tenant assumed it (64 characters at most)."""
    return f"switchyard-{account_id}"[:64] if account_id else "switchyard"


def created_ms(value: str) -> int | None:
    """When an id made by new_id() was minted (epoch milliseconds); None for other ids."""
    _, _, body = value.rpartition("_")
    if len(body) != 26:
        return None
    millis = 0
    for ch in body[:10]:
        digit = _ALPHABET.find(ch)
        if digit < 0:
            return None
        millis = millis * 32 + digit
    return millis


def new_transition_id() -> str:
    """A state change's id: its time to the microsecond (one reading: it orders transitions
    within a second) and a random tail. Alerts carry it; the alerts worker delivers one per id."""
    ns = time.time_ns()
    moment = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns / 1e9))
    return f"{moment}.{ns // 1000 % 10**6:06d}Z#{uuid.uuid4().hex[:6]}"
