"""Identifiers: prefixed, fixed length, sortable by creation time, unique."""

from __future__ import annotations

import time

from chalicelib.domain.ids import _ALPHABET, new_id


def _decode(chars: str) -> int:
    value = 0
    for ch in chars:
        value = value * 32 + _ALPHABET.index(ch)
    return value


def test_new_id_has_prefix_and_fixed_length() -> None:
    # WHEN an id is made
    ident = new_id("job")

    # THEN it is "<prefix>_" followed by 26 lower-case Crockford base32 characters
    prefix, _, body = ident.partition("_")
    assert prefix == "job"
    assert len(body) == 26
    assert set(body) <= set(_ALPHABET)
    assert not set(body) & set("ilou")


def test_new_id_starts_with_the_creation_time_in_milliseconds() -> None:
    # GIVEN the clock around the creation of an id
    before = int(time.time() * 1000)
    ident = new_id("auth")
    after = int(time.time() * 1000)

    # WHEN its first 10 characters are decoded
    millis = _decode(ident.removeprefix("auth_")[:10])

    # THEN they are the creation time
    assert before <= millis <= after


def test_ids_made_apart_in_time_sort_in_creation_order() -> None:
    # GIVEN ids made 2 ms apart
    ids = []
    for _ in range(20):
        ids.append(new_id("job"))
        time.sleep(0.002)

    # THEN sorting them as strings gives the creation order
    assert sorted(ids) == ids


def test_ids_are_unique() -> None:
    # WHEN 10 000 ids are made in a tight loop (many share a millisecond)
    ids = [new_id("job") for _ in range(10_000)]

    # THEN none repeats
    assert len(set(ids)) == 10_000


def test_created_ms_reads_the_creation_time_back() -> None:
    from chalicelib.domain.ids import created_ms

    # GIVEN an id made between two clock readings
    before = int(time.time() * 1000)
    ident = new_id("run")
    after = int(time.time() * 1000)

    # THEN its creation time is read back; ids not made by new_id() have none
    assert before <= (created_ms(ident) or 0) <= after
    assert created_ms("run_1") is None and created_ms("run_" + "!" * 26) is None
