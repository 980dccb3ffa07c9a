"""Audiences through the HTTP API, on moto: CRUD, versions, size previews, tenancy, roles.

The use-case logic alone (sizes, edits that change nothing, roles) is tested without moto in
tests/services/test_audience_use_cases.py; the store's conditions in tests/store/test_repo_contract.py."""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest

from chalicelib.domain.profiles import ProfileRecord

PRO = {"all": [{"field": "plan", "op": "equals", "value": "pro"}]}


def add_profiles(deps: Any, account_id: str, count: int, start: int = 0) -> None:
    """`count` profiles keyed by email; every third is on the pro plan; ages 20, 21, ..."""
    records = [
        ProfileRecord(identifiers={"email": f"p{i}@acme.example"},
                      fields={"plan": "pro" if i % 3 == 0 else "free", "age": 20 + i}, ref=str(i))
        for i in range(start, start + count)
    ]
    outcomes = deps.profiles.upsert_batch(account_id, records, step_tag=f"seed-{secrets.token_hex(4)}")
    assert outcomes == ["added"] * count


def create_audience(api: Any, name: str = "Pro customers", filter_: dict[str, Any] | None = None,
                    **extra: Any) -> dict[str, Any]:
    r = api.post("/audiences", {"name": name, "filter": filter_ or PRO, **extra})
    assert r.status_code == 201, r.body
    return r.json["data"]


def token_for(api_admin: Any, role: str) -> str:
    user = api_admin.post("/users", {"email": f"{role}-{secrets.token_hex(3)}@acme.example", "name": role,
                                     "role": role})
    assert user.status_code == 201, user.body
    tok = api_admin.post("/tokens", {"label": role, "user_id": user.json["data"]["id"]})
    assert tok.status_code == 201, tok.body
    return str(tok.json["data"]["token"])


@contextmanager
def dynamodb_operations() -> Iterator[list[str]]:
    """The DynamoDB operations the app sends meanwhile (a botocore event hook, not a patch)."""
    from chalicelib.store import aws

    seen: list[str] = []

    def record(event_name: str = "", **_: Any) -> None:
        seen.append(event_name.rsplit(".", 1)[-1])

    events = aws.client("dynamodb").meta.events  # the app's own (cached) client
    events.register("before-call.dynamodb", record, unique_id="audience-test-ops")
    try:
        yield seen
    finally:
        events.unregister("before-call.dynamodb", unique_id="audience-test-ops")


# -- CRUD -----------------------------------------------------------------------------------


def test_create_read_list_and_delete(api, tenant):
    # GIVEN a filter written with column spellings
    body = {"name": "Adults on pro", "description": "for the newsletter",
            "filter": {"all": [{"field": "Plan", "op": "equals", "value": "pro"},
                               {"any": [{"field": "age", "op": "gte", "value": 18},
                                        {"field": "identifier.email", "op": "contains", "value": "@acme"}]}]}}
    # WHEN it is saved
    r = api.post("/audiences", body)
    # THEN the audience is created with its normalised filter, owner and version 1
    assert r.status_code == 201, r.body
    made = r.json["data"]
    assert made["id"].startswith("aud_") and made["version"] == 1
    assert made["owner"] == tenant.admin_user_id and made["description"] == "for the newsletter"
    assert made["filter"]["all"][0] == {"field": "plan", "op": "equals", "value": "pro"}
    assert made["created_at"] == made["updated_at"]
    # AND it reads back as saved
    assert api.get(f"/audiences/{made['id']}").json["data"] == made
    # AND lists newest first, page by page
    second = create_audience(api, "Second")
    page = api.get("/audiences?limit=1").json
    assert [a["id"] for a in page["data"]] == [second["id"]] and page["next_cursor"]
    rest = api.get(f"/audiences?limit=1&cursor={page['next_cursor']}").json
    assert [a["id"] for a in rest["data"]] == [made["id"]]
    # WHEN it is deleted THEN it is gone
    assert api.delete(f"/audiences/{made['id']}").status_code == 204
    gone = api.get(f"/audiences/{made['id']}")
    assert gone.status_code == 404 and gone.json["error"]["code"] == "audience.not_found"
    assert api.delete(f"/audiences/{made['id']}").status_code == 404
    assert [a["id"] for a in api.get("/audiences").json["data"]] == [second["id"]]


def test_responses_match_their_models(api, deps, tenant):
    # GIVEN an audience and some profiles
    from chalicelib.api import audience_schemas as S

    add_profiles(deps, tenant.account_id, 3)
    made = create_audience(api)
    # WHEN each route answers THEN the body is exactly what its (extra="forbid") model describes
    S.AudienceOut.model_validate(made)
    for a in api.get("/audiences").json["data"]:
        S.AudienceOut.model_validate(a)
    S.AudienceSize.model_validate(api.get(f"/audiences/{made['id']}/size").json["data"])
    S.AudienceSize.model_validate(api.post("/audiences/preview", {"filter": PRO}).json["data"])
    patched = api.patch(f"/audiences/{made['id']}", {"name": "n", "version": 1}).json["data"]
    S.AudienceOut.model_validate(patched)


@pytest.mark.parametrize(("body", "field"), [
    ({"filter": PRO}, "name"),
    ({"name": "x"}, "filter"),
    ({"name": "", "filter": PRO}, "name"),
    ({"name": "x", "filter": "plan=pro"}, "filter"),
    ({"name": "x", "filter": PRO, "owner": "someone"}, "owner"),
    ({"name": "bad\x00name", "filter": PRO}, "name"),
])
def test_create_refuses_bad_bodies_naming_the_field(api, body, field):
    # WHEN the body misses or misuses a field
    r = api.post("/audiences", body)
    # THEN 422 names it and nothing is stored
    assert r.status_code == 422, r.body
    assert field in r.json["error"]["fields"]
    assert api.get("/audiences").json["data"] == []


def test_bad_filters_are_422_naming_the_path(api):
    # GIVEN a filter with a wrong operator deep inside and a missing value
    bad = {"all": [{"field": "plan", "op": "equals", "value": "pro"},
                   {"any": [{"field": "age", "op": "bigger", "value": 3}, {"field": "age", "op": "lt"}]}]}
    # WHEN it is saved, previewed or patched in
    for r in (api.post("/audiences", {"name": "x", "filter": bad}),
              api.post("/audiences/preview", {"filter": bad}),
              api.patch(f"/audiences/{create_audience(api)['id']}", {"filter": bad, "version": 1})):
        # THEN each answer is 422 with the paths at fault
        assert r.status_code == 422, r.body
        assert r.json["error"]["code"] == "audience.invalid_filter"
        assert set(r.json["error"]["fields"]) == {"filter.all[1].any[0].op", "filter.all[1].any[1].value"}


# -- edits and versions --------------------------------------------------------------------


def test_edit_needs_the_current_version(api):
    # GIVEN a saved audience
    made = create_audience(api)
    path = f"/audiences/{made['id']}"
    # WHEN edited without a version THEN it is refused
    r = api.patch(path, {"name": "Renamed"})
    assert r.status_code == 422 and r.json["error"]["code"] == "validation.version_required"
    # WHEN edited with If-Match THEN the change lands and the version moves on
    r = api.patch(path, {"name": "Renamed", "filter": {"any": [{"field": "plan", "op": "in", "value": ["pro"]}]}},
                  headers={"If-Match": '"1"'})
    assert r.status_code == 200, r.body
    edited = r.json["data"]
    assert edited["name"] == "Renamed" and edited["version"] == 2 and edited["description"] == ""
    assert edited["filter"] == {"any": [{"field": "plan", "op": "in", "value": ["pro"]}]}
    assert edited["updated_at"] >= made["updated_at"]
    # WHEN a colleague edits from the old version THEN 409 and nothing changes
    r = api.patch(path, {"description": "stale", "version": 1})
    assert r.status_code == 409 and r.json["error"]["code"] == "conflict.stale_version"
    assert api.get(path).json["data"] == edited
    # AND the version in the body works too
    r = api.patch(path, {"description": "fresh", "version": 2})
    assert r.status_code == 200 and r.json["data"]["version"] == 3


def test_edit_refuses_nulls_and_unknown_fields(api):
    made = create_audience(api)
    path = f"/audiences/{made['id']}"
    # WHEN a field is nulled or an unknown one is sent THEN 422 names it
    r = api.patch(path, {"name": None, "version": 1})
    assert r.status_code == 422 and r.json["error"]["fields"] == {"name": "cannot be null"}
    r = api.patch(path, {"owner": "me", "version": 1})
    assert r.status_code == 422 and "owner" in r.json["error"]["fields"]
    assert api.get(path).json["data"]["version"] == 1


# -- sizes ------------------------------------------------------------------------------------


@pytest.fixture()
def still(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Time held still: the caller's token stays in the authorizer's cache and kept sizes
    stay fresh however slow the machine is; the test moves the clock (`still[0] += s`)."""
    from chalicelib.services import audiences as svc
    from chalicelib.services.accounts import token_cache

    now = [time.time()]
    monkeypatch.setattr(token_cache, "clock", lambda: 0.0)
    monkeypatch.setattr(svc, "clock", lambda: now[0])
    return now


def counted(size: dict[str, Any]) -> dict[str, Any]:
    """What a size answer counted, without when or whether it was kept."""
    return {k: v for k, v in size.items() if k not in ("computed_at", "cached")}


def test_preview_counts_the_accounts_matching_profiles(api, deps, tenant, new_tenant):
    # GIVEN 36 profiles (12 on pro) in this account and 9 (3 on pro) in another
    add_profiles(deps, tenant.account_id, 36)
    add_profiles(deps, new_tenant("Other").account_id, 9)
    # WHEN previewing "plan is pro"
    with dynamodb_operations() as ops:
        r = api.post("/audiences/preview", {"filter": PRO})
    # THEN the size counts only this account's matches, with a sample of 10 ids and emails
    assert r.status_code == 200, r.body
    data = r.json["data"]
    assert (data["size"], data["scanned"], data["truncated"]) == (12, 36, False)
    assert len(data["sample"]) == 10
    pro_emails = {f"p{i}@acme.example" for i in range(0, 36, 3)}
    assert {m["email"] for m in data["sample"]} <= pro_emails
    for m in data["sample"]:
        assert deps.profiles.get(tenant.account_id, m["id"]).identifiers["email"] == [m["email"]]
    # AND the profiles were read with Queries, never a Scan
    assert "Query" in ops and "Scan" not in ops


def test_a_repeated_size_is_read_from_the_cache(api, deps, tenant, still):
    # GIVEN 30 profiles (10 on pro) and a saved audience "plan is pro"
    add_profiles(deps, tenant.account_id, 30)
    made = create_audience(api)
    api.get("/me")  # the caller's token is in the authorizer's cache from here on
    # WHEN its size is asked for the first time
    with dynamodb_operations() as first:
        fresh = api.get(f"/audiences/{made['id']}/size").json["data"]
    # THEN the profiles are read (a Query per shard) and the answer is kept
    assert (fresh["size"], fresh["cached"]) == (10, False)
    assert first.count("Query") >= 16 and "BatchWriteItem" in first and "Scan" not in first
    # WHEN it is asked again, and the same filter is previewed, by anyone of the account
    with dynamodb_operations() as again:
        kept = api.get(f"/audiences/{made['id']}/size").json["data"]
    with dynamodb_operations() as preview_ops:
        preview = api.post("/audiences/preview", {"filter": PRO}).json["data"]
    # THEN each costs a constant number of requests: no profile is read again
    assert again == ["GetItem", "BatchGetItem"]
    assert preview_ops == ["BatchGetItem"]
    assert kept == {**fresh, "cached": True} and preview == kept


def test_kept_sizes_expire_and_are_per_account(api, deps, tenant, new_tenant, api_for, still):
    from chalicelib.services.audiences import SIZE_TTL_SECONDS

    # GIVEN a size kept for "plan is pro" in account A (2 of 6 profiles)
    add_profiles(deps, tenant.account_id, 6)
    first = api.post("/audiences/preview", {"filter": PRO}).json["data"]
    # AND three more pro profiles written since
    add_profiles(deps, tenant.account_id, 9, start=6)
    # THEN until the TTL the kept answer is given; it says it is a kept one and when it was counted
    still[0] += SIZE_TTL_SECONDS - 1
    kept = api.post("/audiences/preview", {"filter": PRO}).json["data"]
    assert kept == {**first, "cached": True} and first["size"] == 2
    # AND past the TTL the profiles are counted again (DynamoDB's TTL deletes late: the read checks)
    still[0] += 2
    with dynamodb_operations() as ops:
        recount = api.post("/audiences/preview", {"filter": PRO}).json["data"]
    assert (recount["size"], recount["scanned"], recount["cached"]) == (5, 15, False) and "Query" in ops
    # AND account B's preview of the same filter counts B's own profiles, never A's kept answer
    other = new_tenant("Globex")
    add_profiles(deps, other.account_id, 9)
    theirs = api_for(other.admin_token).post("/audiences/preview", {"filter": PRO}).json["data"]
    assert (theirs["size"], theirs["cached"]) == (3, False)


def test_sizes_of_a_list_take_one_call_and_one_read(api, deps, tenant, new_tenant, api_for, still):
    # GIVEN 40 profiles and five audiences (two with the same filter), and another account's
    add_profiles(deps, tenant.account_id, 40)
    filters = [PRO, {"all": []}, {"all": [{"field": "age", "op": "lt", "value": 30}]},
               {"all": [{"field": "plan", "op": "equals", "value": "free"}]}, PRO]
    mine = [create_audience(api, f"a{i}", f)["id"] for i, f in enumerate(filters)]
    theirs = create_audience(api_for(new_tenant("Globex").admin_token), "theirs")["id"]
    api.get("/me")
    # WHEN the list asks for all their sizes at once
    with dynamodb_operations() as ops:
        r = api.post("/audiences/sizes", {"ids": [*mine, theirs, "aud_missing"]})
    # THEN one answer holds each of this account's audiences, with the sizes one by one would give
    assert r.status_code == 200, r.body
    got = {row.pop("id"): row for row in r.json["data"]}
    assert list(got) == mine
    assert [got[i]["size"] for i in mine] == [14, 40, 10, 26, 14]
    assert counted(got[mine[2]]) == counted(api.get(f"/audiences/{mine[2]}/size").json["data"])
    # AND the profiles were read once for all of them: a Query per shard, not one per audience
    assert ops.count("Query") == 16, ops
    assert ops.count("BatchGetItem") == 2 and ops.count("BatchWriteItem") == 1 and "Scan" not in ops
    # WHEN asked again THEN two BatchGetItems answer it (the audiences, the kept sizes)
    with dynamodb_operations() as again:
        assert [row["cached"] for row in api.post("/audiences/sizes", {"ids": mine}).json["data"]] == [True] * 5
    assert again == ["BatchGetItem", "BatchGetItem"]


def test_many_filters_in_one_sizes_call_are_each_counted_among_fewer_profiles(api, deps, tenant, monkeypatch, still):
    from chalicelib.domain.access import Principal, Role
    from chalicelib.domain.audiences import parse_filter
    from chalicelib.services import audiences as svc

    # GIVEN 30 profiles, three audiences with distinct filters, and work for 60 profile tests a call
    add_profiles(deps, tenant.account_id, 30)
    ids = [create_audience(api, f"w{i}", f)["id"] for i, f in enumerate(
        [{"all": []}, PRO, {"all": [{"field": "age", "op": "lt", "value": 30}]}])]
    monkeypatch.setattr(svc, "SIZES_WORK", 60)
    me = Principal(tenant.account_id, tenant.admin_user_id, Role.OBSERVER, "tok_test")
    # WHEN the three are sized together THEN each is counted among 20 profiles and says so
    together = svc.sizes(deps, me, ids)
    first = list(itertools.islice(deps.profiles.iterate(tenant.account_id), 20))  # the store's order
    pro, young = (sum(f(p) for p in first) for f in (parse_filter(PRO), parse_filter({"all": [
        {"field": "age", "op": "lt", "value": 30}]})))
    assert [(e.size, e.scanned, e.truncated) for e in together.values()] == [(20, 20, True), (pro, 20, True), (young, 20, True)]
    # AND asking again is answered from what was kept, with no profile read
    with dynamodb_operations() as ops:
        assert svc.sizes(deps, me, ids) == {i: replace(e, cached=True) for i, e in together.items()}
    assert ops == ["BatchGetItem", "BatchGetItem"]
    # WHEN one of them is sized alone THEN the kept lower bound does not answer: it is counted in full
    with dynamodb_operations() as ops:
        alone = svc.size(deps, me, ids[0])
    assert (alone.size, alone.truncated, alone.cached) == (30, False, False) and "Query" in ops
    # AND two distinct filters fit the work in full (30 profiles each): exact sizes
    assert [(e.size, e.truncated) for e in svc.sizes(deps, me, ids[:2]).values()] == [(30, False), (10, False)]


@pytest.mark.parametrize("body", [{}, {"ids": []}, {"ids": [f"aud_{i}" for i in range(201)]}, {"ids": "aud_1"}])
def test_sizes_refuses_bad_id_lists_naming_the_field(api, body):
    r = api.post("/audiences/sizes", body)
    assert r.status_code == 422, r.body
    assert "ids" in r.json["error"]["fields"]


def test_a_preview_reads_at_most_the_cap_and_says_so(deps, tenant, api):
    from chalicelib.domain.access import Principal, Role
    from chalicelib.services import audiences as svc

    # GIVEN 25 profiles and a cap of 20 profiles read
    add_profiles(deps, tenant.account_id, 25)
    me = Principal(tenant.account_id, tenant.admin_user_id, Role.OBSERVER, "tok_test")
    # WHEN previewing every profile THEN 20 are read and the answer says it is capped
    with dynamodb_operations() as ops:
        e = svc.preview(deps, me, {"all": []}, max_scan=20)
    assert (e.size, e.scanned, e.truncated) == (20, 20, True)
    assert "Scan" not in ops
    # AND under a cap above the count the same filter is exact
    assert (svc.preview(deps, me, {"all": []}, max_scan=25).truncated, svc.preview(deps, me, {"all": []}).size) == (False, 25)


# -- tenancy and roles --------------------------------------------------------------------------


def test_another_accounts_audience_is_404_everywhere(api, new_tenant, api_for):
    # GIVEN an audience of account A and a caller from account B
    made = create_audience(api)
    other = api_for(new_tenant("Globex").admin_token)
    path = f"/audiences/{made['id']}"
    # WHEN B reads, edits, sizes or deletes it THEN each answer is 404, as for a missing id
    for r in (other.get(path), other.patch(path, {"name": "mine", "version": 1}),
              other.get(f"{path}/size"), other.delete(path)):
        assert r.status_code == 404, r.body
        assert r.json["error"]["code"] == "audience.not_found"
    # AND B's list is empty while A's audience is untouched
    assert other.get("/audiences").json["data"] == []
    assert api.get(path).json["data"] == made
    # AND A's cursor does not page through B's audiences
    create_audience(api, "second")
    cursor = api.get("/audiences?limit=1").json["next_cursor"]
    r = other.get(f"/audiences?limit=1&cursor={cursor}")
    assert r.status_code == 400 and r.json["error"]["code"] == "request.invalid_cursor"


def test_observers_read_and_preview_but_never_write(api, api_for, deps, tenant):
    # GIVEN an audience and an observer of the same account
    add_profiles(deps, tenant.account_id, 3)
    made = create_audience(api)
    observer = api_for(token_for(api, "observer"))
    path = f"/audiences/{made['id']}"
    # WHEN the observer reads, previews and sizes THEN it may
    assert observer.get("/audiences").status_code == 200
    assert observer.get(path).json["data"] == made
    assert observer.get(f"{path}/size").json["data"]["size"] == 1
    assert observer.post("/audiences/preview", {"filter": PRO}).json["data"]["size"] == 1
    # WHEN it creates, edits or deletes THEN 403, whatever it sends
    for r in (observer.post("/audiences", {"name": "x", "filter": PRO}),
              observer.post("/audiences", {"garbage": True}),
              observer.patch(path, {"name": "x", "version": 1}),
              observer.delete(path)):
        assert r.status_code == 403, r.body
        assert r.json["error"]["code"] == "auth.forbidden"
    # AND nothing changed
    assert api.get(path).json["data"] == made
    assert len(api.get("/audiences").json["data"]) == 1


def test_data_managers_write_audiences(api, api_for):
    # GIVEN a data manager
    dm = api_for(token_for(api, "data_manager"))
    # WHEN it creates, edits and deletes an audience THEN each succeeds
    made = create_audience(dm, "dm's")
    r = dm.patch(f"/audiences/{made['id']}", {"description": "mine", "version": 1})
    assert r.status_code == 200 and r.json["data"]["version"] == 2
    assert made["owner"] == dm.get("/me").json["data"]["user"]["id"]
    assert dm.delete(f"/audiences/{made['id']}").status_code == 204
