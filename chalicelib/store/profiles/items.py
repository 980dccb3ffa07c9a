"""The profile table's items: their keys, and a profile read back from its JSON attribute
(from an item, or from a stream record's image).

Items (the profiles table, keys PK/SK):
  profile     PK=ACCT#<a>#PROFILES#<shard 00..15>  SK=PROF#<profile_id>   d=<JSON>
  identifier  PK=ACCT#<a>#ID#<kind>#<value>          SK=ID                 profile_id
  writer      PK=ACCT#<a>#PROFILES                   SK=WRITER  (the account's write lease)

A profile's id is derived from its creating identifier, so a record's identifiers are
looked up first as profile keys (no lookup item); only identifiers linked later to a
profile created by another one have an identifier item. A profile is one JSON attribute:
DynamoDB (and moto) pay per attribute, and nothing queries inside a profile.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from typing import Any

from chalicelib.domain import profiles as P
from chalicelib.store import keys as K

SHARDS = 16
PROFILE_PREFIX = "PROF#"
ID_SK = "ID"
WRITER_SK = "WRITER"
DATA = "d"  # the one attribute that holds a profile (JSON)


def shard_of(profile_id: str) -> int:
    return zlib.crc32(profile_id.encode()) % SHARDS


def profiles_pk(account_id: str, shard: int) -> str:
    return f"{K.account_pk(account_id)}#PROFILES#{shard:02d}"


def profile_key(account_id: str, profile_id: str) -> dict[str, str]:
    return {"PK": profiles_pk(account_id, shard_of(profile_id)), "SK": PROFILE_PREFIX + profile_id}


def identifier_key(account_id: str, kind: str, value: str) -> dict[str, str]:
    return {"PK": f"{K.account_pk(account_id)}#ID#{kind}#{value}", "SK": ID_SK}


def writer_key(account_id: str) -> dict[str, str]:
    return {"PK": f"{K.account_pk(account_id)}#PROFILES", "SK": WRITER_SK}


def attr_key(key: Mapping[str, str]) -> dict[str, Any]:
    return {k: {"S": v} for k, v in key.items()}


def data_of(row: Mapping[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(row[DATA])
    return data


def profile_of(data: Mapping[str, Any]) -> P.Profile:
    return P.Profile(
        id=data["id"],
        account_id=data["account_id"],
        identifiers=data.get("identifiers") or {},
        fields=data.get("fields") or {},
        created_at=data["created_at"],
        updated_at=data["updated_at"],
        version=int(data.get("version", 1)),
    )


def profile_from_image(image: Mapping[str, Any] | None) -> P.Profile | None:
    """A profile from a stream record's image (typed attributes); None for an absent image
    or an item that is not a profile (identifier items, the write lease)."""
    if not image or not str((image.get("SK") or {}).get("S", "")).startswith(PROFILE_PREFIX):
        return None
    data = image.get(DATA) or {}
    if "S" not in data:
        return None
    return profile_of(json.loads(data["S"]))


def account_of_profiles_pk(pk: str) -> str | None:
    """The account of a profile item's partition key (ACCT#<a>#PROFILES#<nn>)."""
    head, sep, shard = pk.rpartition("#PROFILES#")
    if not sep or not head.startswith("ACCT#") or not shard.isdigit():
        return None
    return head[len("ACCT#"):]
