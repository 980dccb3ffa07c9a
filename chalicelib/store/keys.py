"""Key design of the single DynamoDB table (see docs/data-model.md) and opaque cursors."""

from __future__ import annotations

import base64
import binascii
import json
import zlib

from chalicelib.domain.errors import BadRequest

GSI1 = "GSI1"
GSI2 = "GSI2"  # sparse sweep index: PURGE#<shard>, HEALTH#<shard>, RULES#<shard>, ACCOUNTS#<shard>


def sweep_shard(kind: str, ident: str, shards: int) -> str:
    """The sweep index partition (GSI2PK) of one item: `<kind>#<crc32(ident) % shards>`,
    so a sweep reads `shards` partitions of bounded size instead of one hot one."""
    return f"{kind}#{zlib.crc32(ident.encode()) % shards}"


def account_pk(account_id: str) -> str:
    return f"ACCT#{account_id}"


ACCOUNT_SK = "META"


def user_sk(user_id: str) -> str:
    return f"USER#{user_id}"


def token_pk(token_id: str) -> str:
    return f"TOKEN#{token_id}"


def user_access_pk(user_id: str) -> str:
    # Under TOKEN#, the only keys the authorizer may read; never a token id (tok_...).
    return f"TOKEN#USER#{user_id}"


def account_tokens_gsi(account_id: str) -> str:
    return f"ACCT#{account_id}#TOKENS"


def auth_sk(auth_id: str) -> str:
    return f"AUTH#{auth_id}"


def job_sk(job_id: str) -> str:
    return f"JOB#{job_id}"


def auth_jobs_gsi(account_id: str, auth_id: str) -> str:
    return f"ACCT#{account_id}#AUTH#{auth_id}"


def encode_cursor(key: dict[str, str]) -> str:
    raw = json.dumps(key, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(
    cursor: str,
    *,
    expect: dict[str, str],
    key_names: tuple[str, ...],
    sk_prefix: str | None = None,
) -> dict[str, str]:
    """Decode a cursor and check it belongs to this very listing (same account, same index).

    A cursor is opaque to clients; one crafted to point into another account's partition
    is refused like any malformed cursor.
    """
    bad = BadRequest(
        "the cursor is not valid for this listing; start again without it",
        code="request.invalid_cursor",
        fields={"cursor": "invalid"},
    )
    if len(cursor) > 2048:
        raise bad
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError, RecursionError):
        raise bad from None
    if not isinstance(key, dict) or set(key) != set(key_names):
        raise bad
    if not all(isinstance(v, str) and v for v in key.values()):
        raise bad
    for name, value in expect.items():
        if key.get(name) != value:
            raise bad
    if sk_prefix is not None and not key["SK"].startswith(sk_prefix):
        raise bad
    return key


def audience_sk(audience_id: str) -> str:
    return "AUD#" + audience_id
