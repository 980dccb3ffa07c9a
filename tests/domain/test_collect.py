"""domain/collect.py: reading bodies, checking messages, mapping them to profile records (pure)."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime

import pytest

from chalicelib.domain import collect as C
from chalicelib.domain.errors import BadRequest

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


def check(msg: object, **kw: object) -> dict | C.Rejection:
    return C.check(0, msg, forced_type=kw.get("forced_type"), defaults=kw.get("defaults") or {},  # type: ignore[arg-type]
                   sent_at=kw.get("sent_at"), received_at=NOW)


def test_gzip_is_recognised_by_its_magic_bytes_and_cut_short_is_refused() -> None:
    body = json.dumps({"batch": [{"type": "track"}]}).encode()
    assert C.parse_body(gzip.compress(body)) == json.loads(body)
    assert C.parse_body(body) == json.loads(body)
    with pytest.raises(BadRequest) as cut:
        C.parse_body(gzip.compress(body)[:-6])
    assert cut.value.code == "request.bad_gzip"
    with pytest.raises(BadRequest) as trailing:
        C.parse_body(gzip.compress(body) + b"junk")
    assert trailing.value.code == "request.bad_gzip"


def test_event_time_is_corrected_for_the_clients_clock_and_never_far_in_the_future() -> None:
    # The client's clock is 1 h ahead: sent at 13:00 its time, the event 10 s before that.
    out = check({"type": "track", "userId": "u", "event": "e", "timestamp": "2026-05-01T12:59:50Z"},
                sent_at="2026-05-01T13:00:00Z")
    assert isinstance(out, dict) and out["at"] == "2026-05-01T11:59:50.000Z"
    future = check({"type": "track", "userId": "u", "event": "e", "timestamp": "2026-05-02T00:00:00Z"})
    assert isinstance(future, dict) and future["at"] == "2026-05-01T12:00:00.000Z"


def test_ids_may_be_numbers_or_null_and_the_batch_context_applies_to_each_message() -> None:
    out = check({"type": "identify", "userId": 42, "anonymousId": None, "traits": {"email": "a@b.co"}},
                defaults={"context": {"library": {"name": "analytics-python"}}, "integrations": {"All": False}})
    assert isinstance(out, dict)
    assert out["userId"] == "42" and "anonymousId" not in out
    assert out["library"] == "analytics-python" and out["excluded"] is True
    assert out["messageId"].startswith("h:")  # no messageId: a content hash dedups a resent copy
    again = check({"type": "identify", "userId": 42, "anonymousId": None, "traits": {"email": "a@b.co"}})
    assert isinstance(again, dict) and again["messageId"] == out["messageId"]
    kept = check({"type": "track", "userId": "u", "event": "e", "integrations": {"All": False, "Switchyard": True}})
    assert isinstance(kept, dict) and "excluded" not in kept


def test_records_flatten_one_level_and_refuse_deeper_naming_the_field() -> None:
    mapping = C.mapping_of({})
    ok = C.apply_plan([{"type": "identify", "messageId": "1", "userId": "u", "at": "2026-05-01T12:00:00.000Z",
                        "traits": {"address": {"city": "Oslo"}, "plan": "pro"}}], mapping)
    [rec] = ok.records
    assert rec.fields == {"address_city": "Oslo", "plan": "pro", "last_seen_at": "2026-05-01T12:00:00.000Z"}
    deep = C.apply_plan([{"type": "identify", "messageId": "2", "userId": "u", "at": "2026-05-01T12:00:00.000Z",
                          "traits": {"address": {"geo": {"lat": 1}}}}], mapping)
    assert deep.records == [] and deep.omitted == {"invalid": 1} and "address_geo" in deep.invalid[0]


def test_track_counts_add_up_and_times_keep_the_latest() -> None:
    from chalicelib.domain.profiles import merge

    plan = C.apply_plan([{"type": "track", "messageId": "1", "userId": "u", "event": "Bought", "at": "2026-05-01T12:00:00.000Z"}],
                        C.mapping_of({}))
    [rec] = plan.records
    stored = {"event_bought_count": 2, "event_bought_last_at": "2026-05-02T00:00:00.000Z"}
    merged, _ = merge(stored, rec.fields, plan.rules)
    assert merged["event_bought_count"] == 3
    assert merged["event_bought_last_at"] == "2026-05-02T00:00:00.000Z"  # an older event came late
