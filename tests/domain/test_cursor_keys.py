"""Opaque listing cursors (chalicelib/store/keys.py): round trip and every refusal."""

from __future__ import annotations

import base64
import json

import pytest

from chalicelib.domain.errors import BadRequest, ErrorKind
from chalicelib.store.keys import account_pk, decode_cursor, encode_cursor, job_sk

ACCOUNT = "acct_01hx"
KEY_NAMES = ("PK", "SK")


def decode(cursor: str) -> dict[str, str]:
    # A job listing of ACCOUNT: the cursor must point into that partition, at a job.
    return decode_cursor(cursor, expect={"PK": account_pk(ACCOUNT)}, key_names=KEY_NAMES, sk_prefix="JOB#")


def raw_cursor(payload: bytes) -> str:
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def json_cursor(value: object) -> str:
    return raw_cursor(json.dumps(value).encode())


def test_round_trip() -> None:
    # GIVEN the last key of a page
    key = {"PK": account_pk(ACCOUNT), "SK": job_sk("job_01hxabc")}

    # WHEN it is encoded and decoded
    cursor = encode_cursor(key)

    # THEN the same key comes back, and the cursor is URL-safe without padding
    assert decode(cursor) == key
    assert not set(cursor) & set("+/=")


def test_round_trip_with_gsi_keys() -> None:
    # GIVEN a GSI page key, which has four attributes
    key = {"PK": account_pk(ACCOUNT), "SK": job_sk("j1"), "GSI1PK": "ACCT#x#AUTH#a", "GSI1SK": "JOB#j1"}

    # WHEN it is encoded and decoded with those key names
    got = decode_cursor(
        encode_cursor(key), expect={"PK": account_pk(ACCOUNT)}, key_names=tuple(key), sk_prefix="JOB#"
    )

    # THEN it survives unchanged
    assert got == key


REFUSED = {
    "garbage": "hello",
    "not-base64": "%%%%***!!",
    "non-ascii": "é" * 8,
    "base64-of-non-json": raw_cursor(b"not json at all"),
    "base64-of-binary": raw_cursor(b"\xff\xfe\x00\x01"),
    "json-list": json_cursor(["PK", "SK"]),
    "json-string": json_cursor("ACCT#acct_01hx"),
    "missing-key": json_cursor({"PK": account_pk(ACCOUNT)}),
    "extra-key": json_cursor({"PK": account_pk(ACCOUNT), "SK": "JOB#j", "GSI1PK": "x"}),
    "wrong-key-names": json_cursor({"pk": account_pk(ACCOUNT), "sk": "JOB#j"}),
    "non-string-value": json_cursor({"PK": account_pk(ACCOUNT), "SK": 7}),
    "empty-value": json_cursor({"PK": account_pk(ACCOUNT), "SK": ""}),
    "another-account": encode_cursor({"PK": account_pk("acct_other"), "SK": "JOB#j"}),
    "wrong-sk-prefix": encode_cursor({"PK": account_pk(ACCOUNT), "SK": "AUTH#a"}),
    "overlong": encode_cursor({"PK": account_pk(ACCOUNT), "SK": "JOB#" + "x" * 1600}),
    "empty": "",
}


@pytest.mark.parametrize("cursor", list(REFUSED.values()), ids=list(REFUSED))
def test_decode_refuses(cursor: str) -> None:
    # GIVEN a cursor that is malformed or does not belong to this listing
    # WHEN it is decoded
    with pytest.raises(BadRequest) as caught:
        decode(cursor)

    # THEN it is refused as a bad request on the cursor field
    err = caught.value
    assert err.kind is ErrorKind.BAD_REQUEST
    assert err.code == "request.invalid_cursor"
    assert err.fields == {"cursor": "invalid"}


def test_overlong_is_refused_even_though_it_decodes() -> None:
    # GIVEN an overlong cursor whose content would otherwise be valid
    cursor = REFUSED["overlong"]
    assert len(cursor) > 2048

    # THEN the length alone refuses it (the same key, shorter, is accepted)
    with pytest.raises(BadRequest):
        decode(cursor)
    assert decode(encode_cursor({"PK": account_pk(ACCOUNT), "SK": "JOB#" + "x" * 100}))["SK"].startswith(
        "JOB#"
    )


def test_decode_refuses_deeply_nested_json() -> None:
    # GIVEN a cursor under the 2048-character limit that decodes to 1500 nested JSON arrays
    cursor = raw_cursor(b"[" * 1500)
    assert len(cursor) <= 2048

    # WHEN it is decoded
    # THEN it is refused like any malformed cursor (not a RecursionError, i.e. a 500)
    with pytest.raises(BadRequest):
        decode(cursor)
