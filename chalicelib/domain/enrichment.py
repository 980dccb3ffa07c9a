"""Enrichment rules: which profiles a run looks up, and how an answer becomes fields.

Pure: no I/O. The engine path is chalicelib/runs/enrichment.py; the providers
(FullContact, "call my endpoint") turn their answers into documents this module maps.
See docs/providers/enrichment.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from chalicelib.domain.profiles import MAX_SET_VALUES, MAX_VALUE_BYTES, Profile, field_name, profile_id_for

MARKER_PREFIX = "enriched_at_"
DEFAULT_REFRESH_DAYS = 30

# Omitted reasons of enrichment runs (SPEC rule 5: each omitted record has a reason code).
UNMATCHED = "unmatched"  # the provider knows nobody by these identifiers, or has no data
MISSING_IDENTIFIER = "missing_identifier"  # the profile has nothing the provider looks up by
RECENTLY_ENRICHED = "recently_enriched"  # this job enriched it less than N days ago
REJECTED = "rejected"  # the provider refused this profile's identifier (400/422)
TOO_LARGE = "too_large"  # the merged profile would pass the store's size limit


def marker_field(job_id: str) -> str:
    """The profile field in which a job records when it last enriched a profile.

    One field per job, a plain snake_case name (job ids are lower-case base32): audiences
    can filter on it ("enriched_at_job_… exists") and two jobs never refresh each other.
    """
    return field_name(MARKER_PREFIX + job_id)


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def fresh_since(now: datetime, refresh_after_days: float) -> str:
    """Profiles whose marker is at or after this instant are not looked up again."""
    return iso(now - timedelta(days=refresh_after_days))


def is_fresh(profile: Profile, marker: str, since: str) -> bool:
    value = profile.fields.get(marker)
    # ISO-8601 UTC timestamps of one format compare as text.
    return isinstance(value, str) and value >= since


def creating_identifier(profile: Profile) -> tuple[str, str] | None:
    """The identifier whose derived id is the profile's id (the one that created it).

    An upsert record carrying only that identifier resolves to this very profile by key,
    without an identifier item; None when no identifier derives it (then any identifier
    linked to the profile reaches it through its identifier item)."""
    for kind, values in sorted(profile.identifiers.items()):
        for value in values:
            if profile_id_for(profile.account_id, kind, value) == profile.id:
                return kind, value
    for kind, values in sorted(profile.identifiers.items()):
        if values:
            return kind, values[0]
    return None


def pick(doc: Any, path: str) -> Any:
    """The value at a dotted path of a JSON document ("details.name.given"), or None."""
    node = doc
    for part in path.split("."):
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _scalar(value: Any) -> Any:
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip()
        if not text or len(text.encode()) > MAX_VALUE_BYTES:
            return None  # empty values never erase; oversized ones are dropped, not cut
        return text
    return None


def clean_value(value: Any) -> Any:
    """A value as a profile field: a scalar, or a list of scalars; None when unusable.

    Objects are not stored (profiles hold flat fields): map their parts by path instead."""
    if isinstance(value, list):
        items = [v for v in (_scalar(x) for x in value) if v is not None][:MAX_SET_VALUES]
        return items or None
    return _scalar(value)


def map_fields(doc: Any, field_mapping: Mapping[str, str]) -> dict[str, Any]:
    """Mapped fields of a provider's answer: source path -> profile field."""
    out: dict[str, Any] = {}
    for path, target in field_mapping.items():
        value = clean_value(pick(doc, path))
        if value is not None:
            out[target] = value
    return out


def map_open_fields(fields: Mapping[str, Any], renames: Mapping[str, str | None]) -> dict[str, Any]:
    """Fields an endpoint returned by name: renamed by `renames` (None drops one), the
    others kept under their normalized names, like unmapped import columns."""
    out: dict[str, Any] = {}
    for name, raw in fields.items():
        if not isinstance(name, str):
            continue
        norm = field_name(name)
        # Renamed by the name as returned, else as normalized; kept normalized otherwise.
        target = renames.get(name if name in renames else norm, norm)
        if not target or target.startswith(MARKER_PREFIX):
            continue  # an endpoint may not forge a job's marker
        value = clean_value(raw)
        if value is not None:
            out[target] = value
    return out


__all__ = [
    "DEFAULT_REFRESH_DAYS",
    "MISSING_IDENTIFIER",
    "RECENTLY_ENRICHED",
    "REJECTED",
    "TOO_LARGE",
    "UNMATCHED",
    "clean_value",
    "creating_identifier",
    "fresh_since",
    "is_fresh",
    "map_fields",
    "map_open_fields",
    "marker_field",
    "pick",
]
