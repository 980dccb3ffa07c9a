"""Edges of the store seen through the API: bounded filtered reads, token store outages."""

from __future__ import annotations

from chalicelib.store import dynamo
from tests.api.helpers import create_auth, create_job, make_bucket


def test_filtered_listing_spends_bounded_reads_and_skips_nothing(api, monkeypatch):
    # GIVEN 7 jobs of which only the oldest is paused, and tiny read batches
    bucket = make_bucket()
    auth = create_auth(api)
    paused = create_job(api, auth["id"], bucket, label="paused", start=False)
    for i in range(6):
        create_job(api, auth["id"], bucket, label=f"s{i}")
    monkeypatch.setattr(dynamo, "FILTER_BATCH", 2)
    monkeypatch.setattr(dynamo, "MAX_READS", 2)
    # WHEN listing paused jobs page by page
    found, cursors, pages = [], 0, 0
    cursor = None
    while True:
        r = api.get("/jobs?status=paused&limit=1" + (f"&cursor={cursor}" if cursor else ""))
        assert r.status_code == 200
        pages += 1
        found += [j["id"] for j in r.json["data"]]
        cursor = r.json["next_cursor"]
        if not cursor:
            break
        cursors += 1
    # THEN early pages come back short (read cap) with a cursor, and the match is found once
    assert found == [paused["id"]]
    assert pages >= 2 and cursors == pages - 1


def test_token_store_outage_is_503_in_the_envelope(api, deps):
    import dataclasses

    from chalicelib.bootstrap import use
    from chalicelib.services.accounts import token_cache

    token_cache.clear()
    # adapters are fixed once built: a Deps of its own points them at the missing table
    use(dataclasses.replace(deps, table=dynamo.Table("switchyard-test-missing-table")))
    r = api.get("/jobs")
    assert r.status_code == 503
    assert r.json["error"]["code"] == "auth.unavailable"
