"""Profiles: mapping source rows to profile records, identifier rules, merge rules.

Pure: no I/O, no boto3, no pydantic. The store (chalicelib/store/profiles/) resolves
identifiers and persists; the engine maps each row read by a provider with `map_record`
and hands the records to `ProfileRepo.upsert_batch`. See docs/profiles.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any, Literal

# -- limits -------------------------------------------------------------------------------

MAX_VALUE_BYTES = 2048  # one field value (UTF-8); longer is "invalid"
MAX_IDENTIFIER_BYTES = 512  # identifiers are part of DynamoDB keys (partition key <= 2 KB)
MAX_RECORD_BYTES = 64 * 1024  # all fields of one record, as JSON
MAX_SET_VALUES = 100  # an "append" field keeps at most this many values
MAX_IDENTIFIER_KINDS = 8  # identifier fields one mapping may declare
MAX_VALUES_PER_KIND = 10  # values of one kind linked to one profile (e.g. 10 emails)

MergeRule = Literal["latest", "first", "append"]
RULES: tuple[str, ...] = ("latest", "first", "append")
Outcome = Literal["added", "updated", "unchanged", "too_large"]
Reason = Literal["missing_identifier", "invalid"]

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, as domain.ids
_B32 = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode())
PROFILE_ID = re.compile(r"^prof_[0-9a-hjkmnp-tv-z]{26}$")


# -- objects ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileRecord:
    """One mapped source row. `identifiers` is ordered by the mapping's priority."""

    identifiers: dict[str, str]
    fields: dict[str, Any]
    ref: str


@dataclass(frozen=True)
class Omitted:
    """A row deliberately not stored. `field` names the culprit; never the value (PII)."""

    reason: Reason
    ref: str
    field: str = ""
    detail: str = ""


@dataclass
class Profile:
    id: str
    account_id: str
    identifiers: dict[str, list[str]]  # kind -> sorted values linked to this profile
    fields: dict[str, Any]
    created_at: str
    updated_at: str
    version: int = 1


# Every row of a file repeats the same few column names: normalize each once.
@lru_cache(maxsize=4096)
def field_name(name: str) -> str:
    """A column or field name as a profile field: lower snake_case ASCII, <= 64 chars.

    "First Name" -> "first_name", "E-mail" -> "e_mail", "Prénom" -> "prenom",
    "2nd phone" -> "f_2nd_phone". Returns "" when nothing usable is left.
    """
    ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    snake = re.sub(r"[^a-z0-9]+", "_", ascii_.lower()).strip("_")
    if snake and not snake[0].isalpha():
        snake = "f_" + snake
    return snake[:64].rstrip("_")


@dataclass(frozen=True)
class Mapping:
    """How a job turns source rows into profile records.

    field_mapping: source column -> profile field (None drops the column). Columns not
        mapped keep their name, as `field_name` spells it.
    identifier_fields: the profile fields that identify a profile, in priority order
        (the first one decides when identifiers point at different profiles).
    merge_rules: profile field -> "latest" (default) | "first" | "append".
    """

    field_mapping: dict[str, str | None] = field(default_factory=dict)
    identifier_fields: tuple[str, ...] = ("email",)
    merge_rules: dict[str, str] = field(default_factory=dict)
    _by_norm: dict[str, str | None] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        kinds = tuple(field_name(k) for k in self.identifier_fields)
        if not kinds or any(not _NAME.match(k) for k in kinds):
            raise ValueError("identifier_fields must name at least one field")
        if len(kinds) > MAX_IDENTIFIER_KINDS or len(set(kinds)) != len(kinds):
            raise ValueError(f"at most {MAX_IDENTIFIER_KINDS} distinct identifier fields")
        rules = {field_name(k): v for k, v in self.merge_rules.items()}
        bad = sorted(k for k, v in rules.items() if v not in RULES or not k)
        if bad:
            raise ValueError(f"merge rules must be one of {', '.join(RULES)}: {', '.join(bad)}")
        if any(r != "latest" for k, r in rules.items() if k in kinds):
            raise ValueError("identifier fields are linked, not merged: give them no merge rule")
        targets: dict[str, str | None] = {}
        for source, target in self.field_mapping.items():
            name = field_name(target) if target else None
            if target and not name:
                raise ValueError(f"field_mapping: {target!r} is not a usable field name")
            targets[source] = name
        object.__setattr__(self, "identifier_fields", kinds)
        object.__setattr__(self, "merge_rules", rules)
        object.__setattr__(self, "field_mapping", targets)
        # Lookup by the column as written, then by its normalized spelling.
        object.__setattr__(self, "_by_norm", {field_name(s): t for s, t in targets.items()})

    @classmethod
    def from_config(cls, config: MappingABC[str, Any]) -> Mapping:
        """From a job's config: field_mapping, identifier_fields (or the single
        identifier_field, a column or a profile field) and merge_rules."""
        fm = dict(config.get("field_mapping") or {})
        kinds = config.get("identifier_fields")
        if not kinds:
            single = str(config.get("identifier_field") or "email")
            # identifier_field may name a source column: follow the mapping.
            by_norm = {field_name(s): t for s, t in fm.items()}
            kinds = [fm.get(single) or by_norm.get(field_name(single)) or single]
        return cls(
            field_mapping=fm,
            identifier_fields=tuple(kinds),
            merge_rules=dict(config.get("merge_rules") or {}),
        )

    def target(self, column: str) -> str | None:
        if column in self.field_mapping:
            return self.field_mapping[column]
        norm = field_name(column)
        if norm in self._by_norm:
            return self._by_norm[norm]
        return norm or None

    def rule(self, field_: str) -> str:
        return self.merge_rules.get(field_, "latest")


# -- values -------------------------------------------------------------------------------


class _Bad(Exception):
    pass


def _is_email_kind(kind: str) -> bool:
    return kind == "email" or kind.endswith("_email")


# NUL, line breaks and other C0/C1 controls cannot be part of anyone's identifier.
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Unicode whitespace: the same characters as str.isspace(), in one C-level scan per value.
_SPACE = re.compile(r"\s")


def _utf8(text: str, error: type[Exception]) -> bytes:
    """The UTF-8 bytes of text; `error` when it holds an unpaired surrogate (JSON sources
    can spell one, "\\ud800", and it can be neither stored nor compared)."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        raise error("not valid Unicode text (an unpaired surrogate)") from None


def normalize_identifier(kind: str, value: Any) -> str | None:
    """The stored spelling of an identifier value; None when empty.

    Raises ValueError (with a reason, never the value) when it cannot identify anyone:
    not text or an integer, longer than MAX_IDENTIFIER_BYTES, or an email without "@".
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("must be text")
    text = str(value).strip()
    if _is_email_kind(kind):
        text = text.lower()
    if not text:
        return None
    if len(_utf8(text, ValueError)) > MAX_IDENTIFIER_BYTES:
        raise ValueError(f"longer than {MAX_IDENTIFIER_BYTES} bytes")
    if _CONTROL_CHARS.search(text):
        raise ValueError("contains control characters")
    if _is_email_kind(kind):
        local, at, domain = text.rpartition("@")
        if not at or not local or not domain or _SPACE.search(text):
            raise ValueError("not an email address")
    return text


def parse_identifier(text: str) -> tuple[str, str]:
    """'email:Ada@Example.com' -> ('email', 'ada@example.com'). ValueError when malformed."""
    kind, sep, value = text.partition(":")
    kind = kind.strip().lower()
    if not sep or not _NAME.match(kind):
        raise ValueError("use kind:value, e.g. email:ada@example.com")
    normalized = normalize_identifier(kind, value)
    if normalized is None:
        raise ValueError("the value after ':' is empty")
    return kind, normalized


def _scalar(value: Any) -> Any:
    """A clean scalar, or None when empty; raises _Bad when unusable."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
        if len(_utf8(value, _Bad)) > MAX_VALUE_BYTES:
            raise _Bad(f"longer than {MAX_VALUE_BYTES // 1024} KB")
        return value
    if isinstance(value, bool | int):
        return value
    if isinstance(value, Decimal):
        value = int(value) if value == value.to_integral_value() else float(value)
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Bad("not a finite number")
        return value
    raise _Bad("must be a single value")


def _clean(value: Any, *, many: bool) -> Any:
    if isinstance(value, list | tuple) and many:
        items = [v for v in (_scalar(x) for x in value) if v is not None]
        return _sorted_unique(items)[:MAX_SET_VALUES] or None
    return _scalar(value)


def map_record(row: MappingABC[str, Any], mapping: Mapping, ref: str) -> ProfileRecord | Omitted:
    """One source row -> a profile record, or why it is omitted.

    Reasons: "missing_identifier" (no identifier field has a value) and "invalid" (a value
    that cannot be stored: an email without "@", a value over 2 KB, a nested object, a
    list where one value is expected (lists are fine for "append" fields), NaN, or a
    record over 64 KB). Empty values are dropped, strings are stripped.
    """
    if not isinstance(row, MappingABC):
        return Omitted("invalid", ref, detail="not an object")
    idents: dict[str, str] = {}
    fields: dict[str, Any] = {}
    kinds = mapping.identifier_fields
    for column, raw in row.items():
        if not isinstance(column, str):
            continue
        target = mapping.target(column)
        if not target:
            continue
        if target in kinds:
            try:
                ident = normalize_identifier(target, raw)
            except ValueError as exc:
                return Omitted("invalid", ref, field=target, detail=str(exc))
            if ident is not None:
                idents[target] = ident
            continue
        append = mapping.rule(target) == "append"
        try:
            value = _clean(raw, many=append)
        except _Bad as exc:
            return Omitted("invalid", ref, field=target, detail=str(exc))
        if value is None:
            continue
        if append and target in fields:
            value = union(fields[target], value)
        fields[target] = value
    if not idents:
        return Omitted("missing_identifier", ref, field=kinds[0])
    if not _surely_fits(fields) and len(_dumps(fields).encode()) > MAX_RECORD_BYTES:
        return Omitted("invalid", ref, detail=f"record larger than {MAX_RECORD_BYTES // 1024} KB")
    ordered = {k: idents[k] for k in kinds if k in idents}
    return ProfileRecord(identifiers=ordered, fields=fields, ref=ref)


def _surely_fits(fields: dict[str, Any]) -> bool:
    """A cheap upper bound of the record's JSON size (6 bytes a character at worst, 32 for
    a number), so that most records skip encoding it just to measure it."""
    rough = 0
    for key, value in fields.items():
        if isinstance(value, list):
            return False
        rough += len(key) + (len(value) if isinstance(value, str) else 26) + 6
    return rough * 6 < MAX_RECORD_BYTES


# -- merging ------------------------------------------------------------------------------


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _order(v: Any) -> tuple[int, Any]:
    if isinstance(v, bool):
        return (0, v)
    if isinstance(v, int | float):
        return (1, v)
    return (2, str(v))


def _sorted_unique(values: Iterable[Any]) -> list[Any]:
    seen: dict[str, Any] = {}
    for v in values:
        seen.setdefault(_dumps(v), v)  # 1, 1.0 and True stay distinct
    return sorted(seen.values(), key=_order)


def _as_list(v: Any) -> list[Any]:
    if v is None or v == "":
        return []
    return list(v) if isinstance(v, list) else [v]


def union(existing: Any, incoming: Any) -> list[Any]:
    """Sorted unique values of both; existing values are kept first when over the cap."""
    kept = _sorted_unique(_as_list(existing))
    keys = {_dumps(v) for v in kept}
    for v in _sorted_unique(_as_list(incoming)):
        if len(kept) >= MAX_SET_VALUES:
            break
        if _dumps(v) not in keys:
            kept.append(v)
            keys.add(_dumps(v))
    return sorted(kept, key=_order)


def _number(v: Any) -> int | float:
    return v if isinstance(v, int | float) and not isinstance(v, bool) else 0


def _empty(v: Any) -> bool:
    return v is None or v == "" or v == []


def merge(
    existing: dict[str, Any],
    incoming: dict[str, Any],
    rules: MappingABC[str, str],
    default: str = "latest",
) -> tuple[dict[str, Any], bool]:
    """Merge an incoming record's fields into a profile's fields.

    latest: the incoming value replaces the stored one. first: a stored non-empty value
    stays. append: the field becomes the sorted set of stored and incoming values. add and
    max (set by collection jobs, not offered to imports): the sum, the greater value.
    Fields the record does not carry are left alone. Returns (merged, changed).
    """
    out = dict(existing)
    for name, value in incoming.items():
        if _empty(value):
            continue
        rule = rules.get(name, default)
        if rule == "first":
            if _empty(out.get(name)):
                out[name] = value
        elif rule == "append":
            out[name] = union(out.get(name), value)
        elif rule == "add":
            # Event counters (collection jobs only): exactly once because a replayed step
            # is recognised by its tag before any merge.
            out[name] = _number(out.get(name)) + _number(value)
        elif rule == "max":
            # Event times arrive out of order; one ISO spelling sorts as time does.
            old = out.get(name)
            out[name] = value if _empty(old) or _order(value) > _order(old) else old
        else:
            out[name] = value
    return out, not _same_fields(out, existing)


def _same_fields(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal as stored (JSON). Text values equal as Python values are equal as JSON too,
    so most records skip encoding both sides; numbers and lists go through JSON
    (1, 1.0 and True are == but are stored apart)."""
    if a.keys() != b.keys():
        return False
    for key, value in a.items():
        other = b[key]
        if type(value) is not str or type(other) is not str:
            return _dumps(a) == _dumps(b)
        if value != other:
            return False
    return True


def same(a: Any, b: Any) -> bool:
    """Equal as stored (JSON): 1, 1.0 and True differ."""
    return _dumps(a) == _dumps(b)


# -- ids ------------------------------------------------------------------------------------


def profile_id_for(account_id: str, kind: str, value: str) -> str:
    """The id of the profile that identifier kind:value creates (its creating identifier).

    Deterministic, so the store finds a profile by its creating identifier with no lookup
    item, and a redelivered step mints the same id for the same new profile. Unique across
    accounts. Whoever can read the id can read the profile and its identifiers anyway.
    """
    digest = hashlib.sha256("\x1f".join((account_id, kind, value)).encode()).digest()
    # 130 bits as 26 Crockford base32 characters (b32encode + translate: C speed, hot path).
    return "prof_" + base64.b32encode(digest[:20])[:26].translate(_B32).decode()


# -- the values an export sends --------------------------------------------------------------


def field_value(profile: Profile, name: str) -> Any:
    """An exported field: the profile's field of that name, else its identifier of that
    kind (one value, or the list when several are linked), else None."""
    value = profile.fields.get(name)
    if value is not None and value != "" and value != []:
        return value
    ids = profile.identifiers.get(name)
    if ids:
        return ids[0] if len(ids) == 1 else list(ids)
    return None


def values_of(profile: Profile, fields: Sequence[str]) -> list[Any]:
    return [field_value(profile, f) for f in fields]


__all__ = [
    "MAX_IDENTIFIER_BYTES",
    "MAX_RECORD_BYTES",
    "MAX_SET_VALUES",
    "MAX_VALUES_PER_KIND",
    "MAX_VALUE_BYTES",
    "RULES",
    "Mapping",
    "MergeRule",
    "Omitted",
    "Outcome",
    "Profile",
    "ProfileRecord",
    "field_name",
    "field_value",
    "map_record",
    "merge",
    "normalize_identifier",
    "parse_identifier",
    "profile_id_for",
    "same",
    "union",
    "values_of",
]
