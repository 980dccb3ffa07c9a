"""The tracking API: write keys, the endpoints, bad input, and messages reaching profiles."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.collect.helpers import basic, drain, receive, send, write_key_job


@pytest.fixture(autouse=True)
def empty_queue(deps: Any) -> None:
    receive()  # hand-offs left by an earlier test


def test_write_key_is_shown_once_and_identify_reaches_the_profile(api: Any, client: Any, deps: Any, tenant: Any) -> None:
    key, job = write_key_job(api)
    assert key.startswith("wk_")
    again = api.get(f"/authorizations/{job['authorization_id']}").json["data"]
    assert "write_key" not in again and key not in str(again)
    resp = send(client, key, {"batch": [
        {"type": "identify", "messageId": "m1", "userId": "u1", "traits": {"email": "Ada@Example.com",
                                                                         "plan": "pro", "address": {"city": "Oslo"}}},
        {"type": "track", "messageId": "m2", "userId": "u1", "event": "Order Completed",
         "timestamp": "2026-01-01T10:00:00.000Z"},
        {"type": "track", "messageId": "m3", "userId": "u1", "event": "Order Completed",
         "timestamp": "2026-01-01T09:00:00.000Z"},
        {"type": "page", "messageId": "m4", "userId": "u1"},
    ], "sentAt": "2026-01-01T10:00:01.000Z"})
    assert resp.status_code == 200, resp.json
    assert resp.json == {"success": True, "accepted": 4, "duplicates": 0, "rejected": []}
    assert drain(deps) == ["3 added, 1 omitted, 0 duplicates"]
    prof = deps.profiles.find(tenant.account_id, "user_id", "u1")
    assert prof is not None
    assert prof.identifiers["email"] == ["ada@example.com"]
    assert prof.fields["plan"] == "pro" and prof.fields["address_city"] == "Oslo"
    assert prof.fields["event_order_completed_count"] == 2
    # The later event wins whatever order they came in.
    assert prof.fields["event_order_completed_last_at"] > prof.fields["event_order_completed_last_at"][:10]
    runs = api.get(f"/jobs/{job['id']}/runs").json["data"]
    assert len(runs) == 1 and runs[0]["added"] == 3 and runs[0]["omitted"] == 1


# SDKs send any string as messageId; the key's separator "#" must not cut it.
@pytest.mark.parametrize("same", ["same", "order#42", "a#b#c"])
def test_message_ids_deduplicate(api: Any, client: Any, deps: Any, tenant: Any, same: str) -> None:
    key, _job = write_key_job(api)
    batch = {"batch": [{"type": "track", "messageId": same, "anonymousId": "a1", "event": "Clicked"}]}
    assert send(client, key, batch).json["accepted"] == 1
    drain(deps)
    again = send(client, key, batch, gzipped=True)
    assert again.json == {"success": True, "accepted": 0, "duplicates": 1, "rejected": []}
    # Only its count is handed off, for the job's totals: no message reaches the engine.
    assert drain(deps) == ["0 added, 0 omitted, 1 duplicates"]
    # In flight: the second copy arrives before the first is applied; the engine's claim catches it.
    other = {"batch": [{"type": "track", "messageId": same + "#twice", "anonymousId": "a1", "event": "Clicked"}]}
    assert send(client, key, other).json["accepted"] == 1
    assert send(client, key, other).json["accepted"] == 1
    assert drain(deps) == ["1 added, 0 omitted, 0 duplicates", "0 added, 0 omitted, 1 duplicates"]
    prof = deps.profiles.find(tenant.account_id, "anonymous_id", "a1")
    assert prof is not None and prof.fields["event_clicked_count"] == 2


def test_a_message_id_is_a_duplicate_for_24_hours_and_new_after(api: Any, client: Any, deps: Any, tenant: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.services import collect
    from chalicelib.store.collect import CLAIM_SECONDS

    assert CLAIM_SECONDS == 24 * 3600
    t0 = collect.clock()
    now = [t0]
    monkeypatch.setattr(collect, "clock", lambda: now[0])
    key, _job = write_key_job(api)
    batch = {"batch": [{"type": "track", "messageId": "day", "anonymousId": "a2", "event": "Clicked"}]}
    assert send(client, key, batch).json["accepted"] == 1
    drain(deps)
    # One second before the window ends: still a duplicate, at the route and in the engine.
    now[0] = t0 + CLAIM_SECONDS - 1
    assert send(client, key, batch).json == {"success": True, "accepted": 0, "duplicates": 1, "rejected": []}
    drain(deps)
    # Once it has ended the same id is a new message, counted again (the positive control).
    now[0] = t0 + CLAIM_SECONDS + 1
    assert send(client, key, batch).json["accepted"] == 1
    assert drain(deps) == ["1 added, 0 omitted, 0 duplicates"]
    prof = deps.profiles.find(tenant.account_id, "anonymous_id", "a2")
    assert prof is not None and prof.fields["event_clicked_count"] == 2


def test_alias_links_the_two_identities(api: Any, client: Any, deps: Any, tenant: Any) -> None:
    key, _job = write_key_job(api)
    send(client, key, {"type": "track", "anonymousId": "anon-9", "event": "Viewed", "messageId": "t"},
         path="/track")
    drain(deps)
    resp = send(client, key, {"previousId": "anon-9", "userId": "user-9", "messageId": "al"}, path="/alias")
    assert resp.json["accepted"] == 1
    drain(deps)
    by_user = deps.profiles.find(tenant.account_id, "user_id", "user-9")
    by_anon = deps.profiles.find(tenant.account_id, "anonymous_id", "anon-9")
    assert by_user is not None and by_anon is not None and by_user.id == by_anon.id


@pytest.mark.parametrize(("message", "code", "names"), [
    ("not an object", "message.malformed", "batch[0]"),
    ({"messageId": "x", "userId": "u"}, "message.malformed", "batch[0].type"),
    ({"type": "identify", "messageId": "x", "traits": {"plan": "pro"}}, "missing_identifier", "batch[0]"),
    ({"type": "alias", "messageId": "x", "userId": "u"}, "missing_identifier", "batch[0].previousId"),
    ({"type": "track", "messageId": "x", "userId": "u"}, "invalid", "batch[0].event"),
    ({"type": "track", "messageId": "x", "userId": ["u"], "event": "e"}, "invalid", "batch[0].userId"),
    ({"type": "identify", "messageId": "x", "userId": "u", "traits": "no"}, "invalid", "batch[0].traits"),
    ({"type": "identify", "messageId": 7, "userId": "u"}, "invalid", "batch[0].messageId"),
    ({"type": "identify", "messageId": "x", "userId": "u", "timestamp": "yesterday"}, "invalid",
     "batch[0].timestamp"),
    ({"type": "identify", "messageId": "x", "userId": "u", "traits": {"bio": "x" * 33_000}}, "message.too_large",
     "batch[0]"),
    ({"type": "track", "messageId": "x", "userId": "u", "event": "e", "context": "web"}, "invalid",
     "batch[0].context"),
    ({"type": "track", "messageId": "x", "userId": "u", "event": "e", "properties": [1]}, "invalid",
     "batch[0].properties"),
    ({"type": "identify", "messageId": "x", "userId": True}, "invalid", "batch[0].userId"),
    # An id longer than an identifier may be (it is part of a DynamoDB key): refused here, by
    # index, not accepted and then dropped by the engine.
    ({"type": "identify", "messageId": "x", "userId": "u" * 600}, "invalid", "batch[0].userId"),
    ({"type": "alias", "messageId": "x", "userId": "u", "previousId": "a\x00b"}, "invalid", "batch[0].previousId"),
    # Text with no UTF-8 form (a lone surrogate escape), in an id the store keys on or anywhere
    ({"type": "track", "messageId": "\ud800", "userId": "u", "event": "e"}, "message.malformed", "batch[0]"),
    ({"type": "identify", "messageId": "x", "userId": "u", "traits": {"city": "\udfff"}}, "message.malformed",
     "batch[0]"),
    # A date no UTC time can hold (year 1 in a zone ahead of UTC)
    ({"type": "identify", "messageId": "x", "userId": "u", "timestamp": "0001-01-01T00:00:00+05:00"}, "invalid",
     "batch[0].timestamp"),
])
def test_a_bad_message_is_rejected_by_index_and_counted_omitted(api: Any, client: Any, deps: Any, message: Any,
                                                                code: str, names: str) -> None:
    key, job = write_key_job(api)
    good = {"type": "identify", "messageId": "ok", "userId": "fine", "traits": {"plan": "pro"}}
    resp = send(client, key, {"batch": [message, good]})
    assert resp.status_code == 200
    assert resp.json["accepted"] == 1
    [rejected] = resp.json["rejected"]
    assert rejected["index"] == 0 and rejected["code"] == code and names in rejected["message"]
    assert drain(deps) == ["1 added, 1 omitted, 0 duplicates"]
    runs = api.get(f"/jobs/{job['id']}/runs").json["data"]
    assert runs[0]["omitted"] == 1 and runs[0]["added"] == 1


def test_a_clock_correction_out_of_range_rejects_the_message(api: Any, client: Any, deps: Any) -> None:
    key, _ = write_key_job(api)
    # sentAt 9,999 years after the message's timestamp: corrected, it would fall before year 1
    old = {"type": "identify", "messageId": "old", "userId": "u", "timestamp": "0001-01-01T00:00:00Z"}
    good = {"type": "identify", "messageId": "ok", "userId": "fine"}
    resp = send(client, key, {"batch": [old, good], "sentAt": "9999-12-31T23:59:59Z"})
    assert resp.status_code == 200, resp.json
    assert resp.json["accepted"] == 1
    [rejected] = resp.json["rejected"]
    assert rejected["index"] == 0 and rejected["code"] == "invalid" and "batch[0].timestamp" in rejected["message"]
    assert drain(deps) == ["1 added, 1 omitted, 0 duplicates"]


@pytest.mark.parametrize(("raw", "code"), [
    (b"\x1f\x8b\x08\x00broken", "request.bad_gzip"),
    (b"{not json", "request.malformed_json"),
    (b"[1, 2]", "request.malformed_json"),
    (b'{"batch": []}', "request.malformed"),
    (b'{"batch": {"type": "track"}}', "request.malformed"),
    (b'{"batch": ["' + b"x" * (501 * 1024) + b'"]}', "request.too_large"),
    (b"{}", "request.malformed"),
    (b"", "request.malformed_json"),
    (b'{"batch": [{"type": "track", "userId": "u", "event": "\xff\xfe"}]}', "request.malformed_json"),
    (b"[" * 100_000 + b"]" * 100_000, "request.malformed_json"),
    # Not JSON, though Python's parser takes them: a NaN would become an id "nan" or a trait
    # no JSON reader can read back.
    (b'{"batch": [{"type": "track", "userId": NaN, "event": "e"}]}', "request.malformed_json"),
    (b'{"batch": [{"type": "identify", "userId": "u", "traits": {"score": Infinity}}]}', "request.malformed_json"),
    # mtime=0: the bytes are this case's id, and each xdist worker must collect the same id
    (__import__("gzip").compress(b'{"batch": [{"type": "track", "userId": "u", "event": "e"}]}', mtime=0)[:-6],
     "request.bad_gzip"),
])
def test_a_bad_request_is_a_400_naming_the_problem_and_stores_nothing(api: Any, client: Any, raw: bytes,
                                                                     code: str) -> None:
    key, _ = write_key_job(api)
    resp = send(client, key, None, raw=raw)
    assert resp.status_code == 400, resp.json
    assert resp.json["error"]["code"] == code and resp.json["error"]["fields"]
    assert receive() == []


def sized(i: int, size: int) -> dict[str, Any]:
    """An identify message whose compact JSON is exactly `size` bytes, its traits (each
    under a profile value's 2 KB) text that compresses poorly: a hash chain, the same on
    every run."""
    import hashlib

    from chalicelib.domain.profiles import MAX_VALUE_BYTES

    traits: dict[str, str] = {}
    msg: dict[str, Any] = {"type": "identify", "messageId": f"big{i}", "userId": f"big-{i}", "traits": traits}
    h = str(i).encode()

    def length() -> int:
        return len(json.dumps(msg, separators=(",", ":")).encode())

    while length() < size:
        name = f"p{len(traits)}"
        traits[name] = ""
        text = ""
        while len(text) < min(MAX_VALUE_BYTES, size - length()):
            h = hashlib.sha256(h).digest()
            text += h.hex()
        traits[name] = text[:min(MAX_VALUE_BYTES, size - length())]
    assert length() == size, (length(), size)
    return msg


def test_a_batch_at_the_limits_is_accepted_whole_and_one_byte_more_is_not(api: Any, client: Any, deps: Any,
                                                                           tenant: Any) -> None:
    from chalicelib.domain.collect import MAX_BATCH_BYTES, MAX_MESSAGE_BYTES
    from chalicelib.services.collect import apply_handoff

    key, _ = write_key_job(api)
    # 15 messages of exactly 32 KB and one that brings the body to exactly 500 KB.
    batch = [sized(i, MAX_MESSAGE_BYTES) for i in range(15)]

    def body(msgs: list[dict[str, Any]]) -> bytes:
        return json.dumps({"batch": msgs}, separators=(",", ":")).encode()

    rest = MAX_BATCH_BYTES - len(body([*batch, sized(15, 200)])) + 200
    assert 0 < rest <= MAX_MESSAGE_BYTES
    batch.append(sized(15, rest))
    assert len(body(batch)) == MAX_BATCH_BYTES
    # One byte more, anywhere, is refused whole: the body, or one message (by its index).
    over = body(batch)[:-1] + b" }"
    assert len(over) == MAX_BATCH_BYTES + 1
    refused = send(client, key, None, raw=over)
    assert refused.status_code == 400 and refused.json["error"]["code"] == "request.too_large"
    assert receive() == []
    one_over = send(client, key, None, raw=body([sized(99, MAX_MESSAGE_BYTES + 1), sized(98, 100)]))
    assert one_over.json["accepted"] == 1
    assert [(r["index"], r["code"]) for r in one_over.json["rejected"]] == [(0, "message.too_large")]
    drain(deps)
    # At the limits: every message accepted, handed off in parts under SQS's size limit, and applied.
    resp = send(client, key, None, raw=body(batch))
    assert resp.status_code == 200 and resp.json["accepted"] == 16 and resp.json["rejected"] == [], resp.json
    handoffs = receive()
    assert len(handoffs) > 1, "500 KB of text that barely compresses needs more than one hand-off"
    added = sum(int(apply_handoff(deps, h).split(" added")[0]) for h in handoffs)
    assert added == 16
    last = deps.profiles.find(tenant.account_id, "user_id", "big-15")
    assert last is not None and all(last.fields[k] == v for k, v in batch[15]["traits"].items())


def test_a_gzip_bomb_stops_at_the_limit(api: Any, client: Any) -> None:
    import gzip

    key, _ = write_key_job(api)
    bomb = gzip.compress(b'{"batch": ["' + b"a" * (20 * 1024 * 1024) + b'"]}')
    assert len(bomb) < 100_000
    resp = send(client, key, None, raw=bomb)
    assert resp.status_code == 400 and resp.json["error"]["code"] == "request.too_large"


def test_keys_and_tokens_are_not_interchangeable(api: Any, client: Any, api_for: Any, new_tenant: Any) -> None:
    key, _ = write_key_job(api)
    token = api.token
    as_token = api_for(key).get("/jobs")
    assert as_token.status_code == 401 and as_token.json["error"]["code"] == "auth.write_key_not_api_token"
    body = {"batch": [{"type": "track", "userId": "u", "event": "e"}]}
    as_key = send(client, token, body)
    assert as_key.status_code == 401 and as_key.json["error"]["code"] == "auth.api_token_not_write_key"
    unknown = send(client, key[:-4] + "AAAA", body)
    assert unknown.status_code == 401 and unknown.json["error"]["code"] == "write_key.invalid"
    assert send(client, None, body).status_code == 401
    # Positive control: the same body with the key is accepted.
    assert send(client, key, body).json["accepted"] == 1
    # The body's writeKey (analytics-python sends it too) works without a header.
    assert send(client, None, {**body, "writeKey": key}).json["accepted"] == 1
    assert len(receive()) == 2


def test_a_paused_job_answers_409_and_stores_nothing(api: Any, client: Any) -> None:
    key, job = write_key_job(api)
    assert api.post(f"/jobs/{job['id']}/pause").status_code == 200
    resp = send(client, key, {"batch": [{"type": "track", "userId": "u", "event": "e"}]})
    assert resp.status_code == 409 and resp.json["error"]["details"]["status"] == "paused"
    assert receive() == []
    assert api.post(f"/jobs/{job['id']}/resume").status_code == 200
    assert send(client, key, {"batch": [{"type": "track", "userId": "u", "event": "e"}]}).status_code == 200
    assert len(receive()) == 1


def test_the_rate_limit_answers_429_with_retry_after(api: Any, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.services import collect

    frozen = collect.clock()
    monkeypatch.setattr(collect, "clock", lambda: frozen)  # no time passes between the requests
    key, _ = write_key_job(api, config={"max_messages_per_second": 1})
    batch = {"batch": [{"type": "track", "userId": "u", "event": "e", "messageId": f"r{i}"} for i in range(10)]}
    assert send(client, key, batch).status_code == 200  # 10 s of burst at 1 a second
    refused = send(client, key, batch)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "10" and refused.json["error"]["code"] == "rate.limited"
    assert len(receive()) == 1  # the refused request handed nothing off


def test_a_write_key_enables_only_collection_and_feeds_one_job(api: Any) -> None:
    cat = api.get("/providers/http_api").json["data"]
    assert [w["id"] for w in cat["workflows"]] == ["http_collect"]
    assert cat["workflows"][0]["auth_methods"] == ["write_key"]
    _key, job = write_key_job(api)
    second = api.post("/jobs", {"provider": "http_api", "job_type": "import", "workflow": "http_collect",
                                "authorization_id": job["authorization_id"], "label": "again", "config": {}})
    assert second.status_code == 409 and second.json["error"]["code"] == "authorization.in_use"
    inline = api.post("/jobs", {"provider": "http_api", "job_type": "import", "workflow": "http_collect",
                                "authorization": {"method": "write_key", "label": "x", "credentials": {}},
                                "label": "inline", "config": {}})
    assert inline.status_code == 422 and "authorization" in inline.json["error"]["fields"]
    run_now = api.post(f"/jobs/{job['id']}/run")
    assert run_now.status_code == 409 and run_now.json["error"]["code"] == "job.continuous"


def test_a_rotated_key_is_shown_once_and_the_old_one_works_for_a_grace_period(
        api: Any, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.services import collect

    old, job = write_key_job(api)
    resp = api.put(f"/authorizations/{job['authorization_id']}/credentials", {"credentials": {}})
    assert resp.status_code == 200, resp.json
    new = resp.json["data"]["write_key"]
    assert new != old and resp.json["data"]["credential_hint"] == "…" + new[-4:]
    body = {"batch": [{"type": "track", "userId": "u", "event": "e"}]}
    assert send(client, new, body).status_code == 200
    assert send(client, old, body).status_code == 200  # redeploys have a day
    # A day later the old key is refused, the new one still works.
    later = collect.clock() + collect.ROTATION_GRACE_SECONDS + 1
    monkeypatch.setattr(collect, "clock", lambda: later)
    collect.key_cache.clear()
    assert send(client, old, body).status_code == 401
    assert send(client, new, body).status_code == 200
    monkeypatch.undo()
    receive()


def test_a_key_rotated_before_its_job_exists_feeds_that_job_in_its_grace_period(api: Any, client: Any) -> None:
    made = api.post("/authorizations", {"provider": "http_api", "method": "write_key", "label": "site",
                                        "credentials": {}}).json["data"]
    old = made["write_key"]
    new = api.put(f"/authorizations/{made['id']}/credentials", {"credentials": {}}).json["data"]["write_key"]
    body = {"batch": [{"type": "track", "userId": "u", "event": "e"}]}
    # No job yet: neither key feeds anything
    assert send(client, old, body).json["error"]["code"] == "write_key.no_job"
    job = api.post("/jobs", {"provider": "http_api", "job_type": "import", "workflow": "http_collect",
                             "authorization_id": made["id"], "label": "events", "config": {}, "start": True})
    assert job.status_code == 201, job.json
    assert send(client, new, body).json["accepted"] == 1
    assert send(client, old, body).json["accepted"] == 1  # the app not yet redeployed with the new key
    assert [e["job_id"] for e in receive()] == [job.json["data"]["id"]] * 2


def test_a_deleted_jobs_key_feeds_a_new_job_and_a_deleted_authorizations_key_nothing(
        api: Any, client: Any) -> None:
    key, job = write_key_job(api)
    body = {"batch": [{"type": "track", "userId": "u", "event": "e"}]}
    assert api.delete(f"/jobs/{job['id']}").status_code == 204
    assert send(client, key, body).status_code == 401  # it feeds nothing now
    again = api.post("/jobs", {"provider": "http_api", "job_type": "import", "workflow": "http_collect",
                               "authorization_id": job["authorization_id"], "label": "again", "config": {},
                               "start": True})
    assert again.status_code == 201, again.json
    from chalicelib.services.collect import key_cache

    key_cache.clear()  # another container, or a minute later
    assert send(client, key, body).status_code == 200
    assert api.delete(f"/jobs/{again.json['data']['id']}").status_code == 204
    assert api.delete(f"/authorizations/{job['authorization_id']}").status_code == 204
    key_cache.clear()
    refused = send(client, key, body)
    assert refused.status_code == 401 and refused.json["error"]["code"] == "write_key.invalid"
    receive()


def test_each_hour_is_a_window_run_and_a_new_hour_closes_the_last(api: Any, client: Any, deps: Any) -> None:
    from datetime import UTC, datetime

    from chalicelib.services import collect

    key, job = write_key_job(api)
    for n, hour in enumerate((9, 9, 10)):
        at = datetime(2026, 3, 1, hour, 30, tzinfo=UTC)
        body = {"batch": [{"type": "track", "userId": "u", "event": "e", "messageId": f"w{n}"}]}
        collect.accept(deps, {"authorization": basic(key)}, json.dumps(body).encode(), None, now=at)
        drain(deps)
    runs = {r["id"]: r for r in api.get(f"/jobs/{job['id']}/runs").json["data"]}
    assert set(runs) == {"win_2026030109", "win_2026030110"}
    assert runs["win_2026030109"]["added"] == 2 and runs["win_2026030109"]["status"] == "succeeded"
    assert runs["win_2026030109"]["finished_at"] == "2026-03-01T10:00:00Z"
    assert runs["win_2026030110"]["added"] == 1 and runs["win_2026030110"]["status"] == "running"


def test_an_alias_between_two_existing_profiles_is_omitted_as_a_conflict(
        api: Any, client: Any, deps: Any, tenant: Any) -> None:
    key, job = write_key_job(api)
    send(client, key, {"batch": [{"type": "track", "anonymousId": "anon-c", "event": "Viewed", "messageId": "a"},
                                 {"type": "track", "userId": "user-c", "event": "Viewed", "messageId": "b"}]})
    drain(deps)
    send(client, key, {"previousId": "anon-c", "userId": "user-c", "messageId": "al"}, path="/alias")
    assert drain(deps) == ["0 added, 1 omitted, 0 duplicates"]
    by_user = deps.profiles.find(tenant.account_id, "user_id", "user-c")
    by_anon = deps.profiles.find(tenant.account_id, "anonymous_id", "anon-c")
    assert by_user is not None and by_anon is not None and by_user.id != by_anon.id  # never merged
    runs = api.get(f"/jobs/{job['id']}/runs").json["data"]
    assert runs[0]["omitted_reasons"] == {"alias_conflict": 1}
    logs = api.get(f"/jobs/{job['id']}/logs").json["data"]
    assert any("different profiles" in line["message"] for line in logs)


def test_a_100_message_call_costs_five_aws_requests_whatever_its_size(api: Any, deps: Any) -> None:
    from chalicelib.services import collect
    from chalicelib.store import aws

    key, _ = write_key_job(api)
    headers = {"authorization": basic(key)}

    def call(n: int, tag: str) -> dict[str, int]:
        body = {"batch": [{"type": "track", "userId": f"u{i % 7}", "event": "e", "messageId": f"{tag}{i}"}
                          for i in range(n)]}
        tally = aws.track_requests()
        out = collect.accept(deps, headers, json.dumps(body).encode(), None)
        assert out.accepted == n
        return tally.by_service()

    call(1, "warm")  # the key's lookup and the queue's URL are cached per container
    # the job, the rate (read + conditional write), the claims (one BatchGetItem per 100 ids),
    # one SendMessageBatch
    assert call(100, "a") == {"dynamodb": 4, "sqs": 1}
    assert call(10, "b") == {"dynamodb": 4, "sqs": 1}
    receive()


def test_a_collection_job_keeps_its_write_key(api: Any) -> None:
    _, job = write_key_job(api)
    other = api.post("/authorizations", {"provider": "http_api", "method": "write_key", "label": "other",
                                         "credentials": {}}).json["data"]
    current = api.get(f"/jobs/{job['id']}").json["data"]
    resp = api.patch(f"/jobs/{job['id']}", {"authorization_id": other["id"], "version": current["version"]})
    assert resp.status_code == 422 and resp.json["error"]["fields"] == {
        "authorization_id": "cannot change on a collection job; rotate its key"}
    # Positive control: the same PATCH of its label goes through.
    assert api.patch(f"/jobs/{job['id']}", {"label": "renamed", "version": current["version"]}).status_code == 200


def _record(entry: dict[str, Any], ident: str, group: str, received: int) -> dict[str, Any]:
    return {"messageId": ident, "receiptHandle": ident, "body": json.dumps(entry), "md5OfBody": "",
            "attributes": {"MessageGroupId": group, "ApproximateReceiveCount": str(received),
                           "ApproximateFirstReceiveTimestamp": "1764979200000", "SenderId": "AIDAEXAMPLE",
                           "SentTimestamp": "1764979200000", "SequenceNumber": "1", "MessageDeduplicationId": ident},
            "messageAttributes": {}, "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:switchyard-collect.fifo", "awsRegion": "eu-west-1"}


def test_a_failing_hand_off_holds_its_jobs_later_ones_and_says_so_in_the_log(
        api: Any, client: Any, deps: Any, tenant: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.workers import collect as worker

    key, job = write_key_job(api)
    for tag in ("first", "second"):
        send(client, key, {"batch": [{"type": "track", "userId": "u", "event": "e", "messageId": tag}]})
    first, second = receive()
    key2, job2 = write_key_job(api)
    send(client, key2, {"batch": [{"type": "track", "userId": "u2", "event": "e", "messageId": "other"}]})
    [third] = receive()
    real = worker.apply_handoff

    def failing_first(d: Any, entry: dict[str, Any]) -> str:
        if entry["handoff"] == first["handoff"]:
            raise RuntimeError("DynamoDB unavailable")
        return real(d, entry)

    monkeypatch.setattr(worker, "apply_handoff", failing_first)
    event = {"Records": [_record(first, "m1", job["id"], 3), _record(second, "m2", job["id"], 3),
                         _record(third, "m3", job2["id"], 1)]}
    # the second hand-off of the same job waits behind the first; another job's is not held
    out = worker.collect_handoffs(event, None)
    assert out == {"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m2"}]}
    logs = api.get(f"/jobs/{job['id']}/logs").json["data"]
    assert any(line["code"] == "collect.blocked" and "3 times" in line["message"] for line in logs)
    monkeypatch.undo()
    # Redelivered once the trouble is over: both apply, in order, once.
    out = worker.collect_handoffs({"Records": [_record(first, "m1", job["id"], 4),
                                               _record(second, "m2", job["id"], 4)]}, None)
    assert out == {"batchItemFailures": []}
    prof = deps.profiles.find(tenant.account_id, "user_id", "u")
    assert prof is not None and prof.fields["event_e_count"] == 2


def test_the_job_shows_when_data_last_arrived_and_its_counts(api: Any, client: Any, deps: Any) -> None:
    from datetime import UTC, datetime

    key, job = write_key_job(api)
    # GIVEN a job that has received nothing: zeros and no time
    assert api.get(f"/jobs/{job['id']}").json["data"]["collection"] == {
        "last_received_at": None, "accepted": 0, "duplicates": 0, "rejected": 0}
    # WHEN a batch with 2 good messages and 1 bad arrives
    good = [{"type": "track", "messageId": f"m{i}", "userId": "u1", "event": "Clicked"} for i in range(2)]
    before = datetime.now(UTC).replace(microsecond=0)
    assert send(client, key, {"batch": [*good, {"type": "track", "messageId": "bad"}]}).json["accepted"] == 2
    # THEN the counts wait for the engine (committed with the messages they count)...
    assert api.get(f"/jobs/{job['id']}").json["data"]["collection"]["accepted"] == 0
    drain(deps)

    def counts() -> dict[str, Any]:
        got: dict[str, Any] = api.get(f"/jobs/{job['id']}").json["data"]["collection"]
        return got

    got = counts()
    assert {k: got[k] for k in ("accepted", "duplicates", "rejected")} == {"accepted": 2, "duplicates": 0,
                                                                           "rejected": 1}
    arrived = datetime.fromisoformat(got["last_received_at"].replace("Z", "+00:00"))
    assert before <= arrived <= datetime.now(UTC)
    # AND an SDK's retry of one of them counts as a duplicate, not as accepted
    assert send(client, key, {"batch": good[:1]}).json["duplicates"] == 1
    drain(deps)
    again = counts()
    assert {k: again[k] for k in ("accepted", "duplicates", "rejected")} == {"accepted": 2, "duplicates": 1,
                                                                             "rejected": 1}
    assert again["last_received_at"] >= got["last_received_at"]
    # AND a job that is not a collection has no such figures
    from tests.api.helpers import create_auth, create_job, make_bucket

    bucket = make_bucket()
    other = create_job(api, create_auth(api)["id"], bucket, start=False)
    assert "collection" not in api.get(f"/jobs/{other['id']}").json["data"]


def test_a_cold_write_key_lookup_reads_dynamodb_only_never_secrets_manager(api: Any, client: Any) -> None:
    from chalicelib.services.collect import key_cache
    from chalicelib.store import aws

    key, _ = write_key_job(api)
    sent: list[str] = []
    # The app's clients, made now if not yet, so that none escapes the count; each counts
    # under its own name (botocore's event names spell Secrets Manager otherwise).
    clients = {s: aws.client(s) for s in ("dynamodb", "secretsmanager", "sqs")}

    def hook(service: str) -> Any:
        return lambda **_: sent.append(service)

    hooks = {s: hook(s) for s in clients}
    for s, c in clients.items():
        c.meta.events.register("before-call", hooks[s])
    try:
        key_cache.clear()  # a new container: nothing known about the key
        resp = send(client, key, {"batch": [{"type": "track", "messageId": "cold", "userId": "u", "event": "e"}]})
        assert resp.json["accepted"] == 1
        # The positive control: the key was looked up in DynamoDB (and the hand-off queued).
        assert "dynamodb" in sent and "sqs" in sent, sent
        assert "secretsmanager" not in sent, sent
        clients["secretsmanager"].list_secrets(MaxResults=1)  # the count would see a secret read
        assert sent[-1] == "secretsmanager"
    finally:
        for s, c in clients.items():
            c.meta.events.unregister("before-call", hooks[s])
    assert len(receive()) == 1
