"""Segment-compatible collection: reading a request body, checking each message, and turning
accepted messages into profile records. Pure (docs/realtime.md, sections 1, 3 and 4)."""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.domain import profiles as P
from chalicelib.domain.errors import BadRequest

MAX_BATCH_BYTES = 500 * 1024  # Segment's limit per request, decoded
MAX_MESSAGE_BYTES = 32 * 1024  # per message, compact JSON
MAX_ID_CHARS = 100
MAX_EVENT_CHARS = 200
FUTURE_SLACK = timedelta(minutes=5)
GZIP_MAGIC = b"\x1f\x8b"

APPLIED_TYPES = ("identify", "track", "alias")
KNOWN_TYPES = (*APPLIED_TYPES, "page", "screen", "group")
OBJECT_FIELDS = ("traits", "properties", "context", "integrations")
DEFAULT_IDENTIFIERS = ("user_id", "email", "anonymous_id")


def _too_large(what: str) -> BadRequest:
    return BadRequest(f"the {what} is larger than {MAX_BATCH_BYTES // 1024} KB; send fewer messages a request",
                      code="request.too_large", fields={"body": f"at most {MAX_BATCH_BYTES // 1024} KB"})


def inflate(raw: bytes) -> bytes:
    """The body as JSON bytes: gzip is recognised by its magic bytes, whatever the headers
    say (API Gateway may or may not have inflated it). Stops reading past the limit, so a
    small gzip bomb costs nothing."""
    if not raw.startswith(GZIP_MAGIC):
        if len(raw) > MAX_BATCH_BYTES:
            raise _too_large("request body")
        return raw
    bad = BadRequest("the gzip body is broken or cut short; send it again, or send plain JSON",
                     code="request.bad_gzip", fields={"Content-Encoding": "the body is not valid gzip"})
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(raw, MAX_BATCH_BYTES + 1)
    except zlib.error:
        raise bad from None
    if len(out) > MAX_BATCH_BYTES:
        raise _too_large("decompressed request body")
    if not inflater.eof or inflater.unused_data:
        raise bad
    return out


def _not_json(name: str) -> Any:
    # Python's parser takes NaN and Infinity; they are not JSON, and a NaN id would read "nan".
    raise ValueError(f"{name} is not JSON")


def parse_body(raw: bytes) -> dict[str, Any]:
    body = inflate(raw)
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_not_json)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest("the body is not valid JSON", code="request.malformed_json",
                         fields={"body": "not valid JSON"}) from None
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object", code="request.malformed_json",
                         fields={"body": "must be an object"})
    return value


def batch_of(body: dict[str, Any]) -> list[Any]:
    batch = body.get("batch")
    if not isinstance(batch, list) or not batch:
        raise BadRequest("'batch' must be a non-empty list of messages", code="request.malformed",
                         fields={"batch": "must be a non-empty list"})
    return batch


@dataclass(frozen=True)
class Rejection:
    index: int
    code: str  # message.malformed | message.too_large | missing_identifier | invalid
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "code": self.code, "message": self.message}


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def _ident(value: Any) -> str | None:
    """SDKs send ids as strings, numbers or null (analytics-python stringifies, may send null)."""
    if value is None or isinstance(value, bool):
        return None if value is None else "\x00bad"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return value.strip() or None
    return "\x00bad"


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError
    at = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def iso(at: datetime) -> str:
    """One fixed spelling, so that a later time always sorts after an earlier one ("max")."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def check(index: int, msg: Any, *, forced_type: str | None, defaults: dict[str, Any],
          sent_at: Any, received_at: datetime) -> dict[str, Any] | Rejection:
    """One message -> the compact form the engine applies, or why it is refused."""
    where = f"batch[{index}]"

    def invalid(name: str, why: str) -> Rejection:
        return Rejection(index, "invalid", f"{where}.{name} {why}")

    if not isinstance(msg, dict):
        return Rejection(index, "message.malformed", f"{where} is not an object")
    try:
        # UTF-8 as stored; a lone surrogate escape ("\ud800") has no UTF-8 form and no store takes it.
        size = len(json.dumps(msg, separators=(",", ":"), ensure_ascii=False, default=str).encode())
    except UnicodeEncodeError:
        return Rejection(index, "message.malformed", f"{where} holds text that is not valid Unicode "
                         "(a lone surrogate escape such as \\ud800)")
    if size > MAX_MESSAGE_BYTES:
        return Rejection(index, "message.too_large", f"{where} is larger than {MAX_MESSAGE_BYTES // 1024} KB")
    kind = forced_type or msg.get("type")
    if not isinstance(kind, str) or not kind:
        return Rejection(index, "message.malformed", f"{where}.type is missing; use one of: {', '.join(KNOWN_TYPES)}")
    kind = kind.lower()
    if kind not in KNOWN_TYPES:
        return Rejection(index, "message.malformed", f"{where}.type {kind[:40]!r} is unknown; use one of: "
                         f"{', '.join(KNOWN_TYPES)}")
    for name in OBJECT_FIELDS:
        if msg.get(name) is not None and not isinstance(msg[name], dict):
            return invalid(name, "must be an object")
    message_id = msg.get("messageId")
    if message_id is None:
        # A retried request carries the same content: the hash dedups it like an id would.
        message_id = "h:" + hashlib.sha256(_compact(msg).encode()).hexdigest()[:40]
    elif not isinstance(message_id, str) or not 1 <= len(message_id) <= MAX_ID_CHARS:
        return invalid("messageId", f"must be a string of 1 to {MAX_ID_CHARS} characters")
    ids: dict[str, str | None] = {}
    for name, kind_of_id in (("userId", "user_id"), ("anonymousId", "anonymous_id"), ("previousId", "anonymous_id")):
        value = _ident(msg.get(name))
        if value == "\x00bad":
            return invalid(name, "must be a string or a number")
        try:
            P.normalize_identifier(kind_of_id, value)  # what the engine will require of it
        except ValueError as why:
            return invalid(name, f"cannot identify anyone: {why}")
        ids[name] = value
    try:
        at = _time(msg["timestamp"]) if msg.get("timestamp") is not None else None
    except (ValueError, TypeError):
        return invalid("timestamp", "must be an ISO-8601 date and time")
    try:
        sent = _time(sent_at) if sent_at is not None else None
    except (ValueError, TypeError):
        sent = None
    when = received_at
    try:
        if at is not None:
            when = received_at - (sent - at) if sent is not None else at
            if when > received_at + FUTURE_SLACK:
                when = received_at
        stamp = iso(when)
    except (OverflowError, ValueError):
        return invalid("timestamp", "is out of range (corrected by the request's sentAt, or in UTC)")
    traits = msg.get("traits") or {}
    out: dict[str, Any] = {"type": kind, "messageId": message_id, "at": stamp}
    if kind == "alias":
        if not ids["previousId"]:
            return Rejection(index, "missing_identifier", f"{where}.previousId is required for alias")
        if not ids["userId"]:
            return Rejection(index, "missing_identifier", f"{where}.userId is required for alias")
    elif not (ids["userId"] or ids["anonymousId"] or (kind == "identify" and traits.get("email"))):
        wanted = "userId, anonymousId or traits.email" if kind == "identify" else "userId or anonymousId"
        return Rejection(index, "missing_identifier", f"{where} has no {wanted}")
    if kind == "track":
        event = msg.get("event")
        if not isinstance(event, str) or not 1 <= len(event.strip()) <= MAX_EVENT_CHARS:
            return invalid("event", f"must be a string of 1 to {MAX_EVENT_CHARS} characters")
        out["event"] = event.strip()
    out.update({k: v for k, v in ids.items() if v})
    if kind == "identify" and traits:
        out["traits"] = traits
    integrations = {**(defaults.get("integrations") or {}), **(msg.get("integrations") or {})}
    if integrations.get("All") is False and integrations.get("Switchyard") is not True:
        out["excluded"] = True
    library = ((msg.get("context") or defaults.get("context") or {}).get("library") or {})
    if isinstance(library, dict) and isinstance(library.get("name"), str):
        out["library"] = library["name"][:100]
    return out


# -- applying (the engine side) -----------------------------------------------------------


@dataclass
class Applied:
    records: list[P.ProfileRecord] = field(default_factory=list)
    aliases: list[int] = field(default_factory=list)  # indexes in `records` of alias records
    rules: dict[str, str] = field(default_factory=dict)
    omitted: dict[str, int] = field(default_factory=dict)
    invalid: list[str] = field(default_factory=list)  # why, naming the message (never a value)

    def omit(self, reason: str) -> None:
        self.omitted[reason] = self.omitted.get(reason, 0) + 1


def _flatten(traits: dict[str, Any]) -> dict[str, Any]:
    """`address.city` -> `address_city`; deeper objects stay nested and are refused by the
    profile mapping, which names the field."""
    out: dict[str, Any] = {}
    for key, value in traits.items():
        if isinstance(value, dict):
            for sub, inner in value.items():
                out[f"{key}_{sub}"] = inner
        else:
            out[key] = value
    return out


def mapping_of(config: dict[str, Any]) -> P.Mapping:
    return P.Mapping(identifier_fields=tuple(config.get("identifier_fields") or DEFAULT_IDENTIFIERS),
                     merge_rules=dict(config.get("merge_rules") or {}))


def apply_plan(messages: list[dict[str, Any]], mapping: P.Mapping) -> Applied:
    """Accepted messages -> profile records and omitted reasons, in message order.

    identify: its traits, by the job's merge rules. track: `event_<name>_count` (added up),
    `event_<name>_last_at` and `last_seen_at` (the latest wins, whatever order events come
    in). alias: a record with both identities and no fields, which the profile store links."""
    out = Applied(rules=dict(mapping.merge_rules))
    out.rules["last_seen_at"] = "max"
    for msg in messages:
        kind = msg["type"]
        ref = f"message {msg['messageId']}"
        if msg.get("excluded"):
            out.omit("excluded_by_integrations")
            continue
        if kind not in APPLIED_TYPES:
            out.omit("unsupported_type")
            continue
        row: dict[str, Any] = {"user_id": msg.get("userId"), "anonymous_id": msg.get("anonymousId")}
        if kind == "alias":
            row["anonymous_id"] = msg["previousId"]
        elif kind == "identify":
            row = {**_flatten(msg.get("traits") or {}), **{k: v for k, v in row.items() if v is not None}}
            row["last_seen_at"] = msg["at"]
        else:
            name = P.field_name(msg["event"])[:40] or "unnamed"
            count, last = f"event_{name}_count", f"event_{name}_last_at"
            out.rules[count] = "add"
            out.rules[last] = "max"
            row.update({count: 1, last: msg["at"], "last_seen_at": msg["at"]})
        mapped = P.map_record(row, mapping, ref)
        if isinstance(mapped, P.Omitted):
            out.omit(mapped.reason)
            out.invalid.append(f"{ref}: {mapped.field or 'record'} {mapped.detail}".strip())
            continue
        if kind == "alias":
            out.aliases.append(len(out.records))
        out.records.append(mapped)
    return out


def drop_conflicts(applied: Applied, found: dict[tuple[str, str], str]) -> Applied:
    """Alias records whose two identities already reach different profiles: profiles are
    never merged, so they are omitted as `alias_conflict` instead of linking nothing silently.
    `found` is what the store says each identifier reaches now."""
    keep: list[P.ProfileRecord] = []
    aliases = set(applied.aliases)
    for i, rec in enumerate(applied.records):
        if i in aliases and len({found[k] for k in rec.identifiers.items() if k in found}) > 1:
            applied.omit("alias_conflict")
            applied.invalid.append(f"{rec.ref}: its two identities belong to different profiles; not linked")
            continue
        keep.append(rec)
    applied.records = keep
    applied.aliases = []
    return applied


__all__ = [
    "Applied",
    "Rejection",
    "apply_plan",
    "batch_of",
    "check",
    "drop_conflicts",
    "inflate",
    "iso",
    "mapping_of",
    "parse_body",
]
