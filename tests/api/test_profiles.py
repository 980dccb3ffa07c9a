"""Profile routes: lookup by identifier, listing with a cursor, one profile; tenancy, roles,
bad input. Profiles are seeded through the store, as an import would write them."""

from __future__ import annotations

from typing import Any

from chalicelib.domain.profiles import Mapping, ProfileRecord, map_record

MAPPING = Mapping(identifier_fields=("email", "user_id"))


def seed(deps: Any, account_id: str, rows: list[dict[str, Any]], step: str = "seed#0") -> list[str]:
    records = []
    for i, row in enumerate(rows):
        r = map_record(row, MAPPING, f"seed#{i}")
        assert isinstance(r, ProfileRecord)
        records.append(r)
    return deps.profiles.upsert_batch(account_id, records, step_tag=step)


def test_lookup_by_identifier_returns_a_list_of_zero_or_one(api, deps, tenant):
    # GIVEN a profile known by email and user_id
    seed(deps, tenant.account_id, [{"email": "ada@example.com", "user_id": "u-1", "name": "Ada", "ltv": 12.5}])

    # WHEN it is looked up by either identifier (any case for emails), and by an unknown one
    by_email = api.get("/profiles?identifier=email:ADA@Example.com")
    by_user = api.get("/profiles?identifier=user_id:u-1")
    unknown = api.get("/profiles?identifier=email:nobody@example.com")

    # THEN both find the same profile in the list envelope; the unknown one finds nothing
    assert by_email.status_code == 200 and by_user.status_code == 200
    assert by_email.json["next_cursor"] is None
    [profile] = by_email.json["data"]
    assert by_user.json["data"] == [profile]
    assert profile["identifiers"] == {"email": ["ada@example.com"], "user_id": ["u-1"]}
    assert profile["fields"] == {"name": "Ada", "ltv": 12.5}
    assert profile["id"].startswith("prof_") and profile["version"] == 1
    assert unknown.status_code == 200 and unknown.json == {"data": [], "next_cursor": None}


def test_the_response_matches_the_profile_out_model(api, deps, tenant):
    # GIVEN a profile / WHEN read through both routes
    seed(deps, tenant.account_id, [{"email": "m@example.com", "tags": "x"}])
    [listed] = api.get("/profiles").json["data"]
    one = api.get(f"/profiles/{listed['id']}").json["data"]

    # THEN both validate against ProfileOut (the model offered to the OpenAPI document)
    from chalicelib.api.profiles_schemas import ProfileOut

    assert ProfileOut.model_validate(listed).model_dump() == listed
    assert one == listed


def test_responses_conform_to_the_openapi_document(api, deps, tenant):
    # GIVEN a profile and the generated document
    from tests.api.test_openapi import _conforms, _doc

    seed(deps, tenant.account_id, [{"email": "doc@example.com", "user_id": "u-7", "score": 3}])
    doc = _doc(api)
    assert "ProfileOut" in doc["components"]["schemas"]
    pid = api.get("/profiles").json["data"][0]["id"]

    # WHEN the routes answer, found or not / THEN every answer is declared and conforms
    for path in ("/profiles", "/profiles?limit=1", "/profiles?identifier=email:doc@example.com",
                 "/profiles?identifier=email:none@example.com", "/profiles?identifier=bad",
                 f"/profiles/{pid}", "/profiles/prof_nope"):
        _conforms(doc, "GET", path, api.get(path))


def test_one_profile_by_id_and_404_for_anything_else(api, api_for, deps, new_tenant, tenant):
    # GIVEN a profile of account A, and account B
    seed(deps, tenant.account_id, [{"email": "a@example.com"}])
    pid = api.get("/profiles?identifier=email:a@example.com").json["data"][0]["id"]
    other = api_for(new_tenant("Globex").admin_token)

    # WHEN A and B read it, and A reads ids that do not exist
    mine = api.get(f"/profiles/{pid}")
    theirs = other.get(f"/profiles/{pid}")
    missing = [api.get(f"/profiles/{x}") for x in ("prof_" + "0" * 26, "nope", "x" * 300)]

    # THEN only A gets it; everything else is the same 404
    assert mine.status_code == 200 and mine.json["data"]["id"] == pid
    for r in (theirs, *missing):
        assert r.status_code == 404, r.body
        assert r.json["error"]["code"] == "profile.not_found"
    # AND B's lookups and listing show nothing of A
    assert other.get("/profiles?identifier=email:a@example.com").json["data"] == []
    assert other.get("/profiles").json == {"data": [], "next_cursor": None}


def test_listing_pages_with_a_cursor_that_stays_in_the_account(api, api_for, deps, new_tenant, tenant):
    # GIVEN five profiles in account A
    seed(deps, tenant.account_id, [{"email": f"p{i}@example.com"} for i in range(5)])

    # WHEN A lists them two at a time
    seen, cursor = [], None
    for _ in range(10):
        r = api.get("/profiles?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        assert r.status_code == 200, r.body
        assert len(r.json["data"]) <= 2
        seen += [p["identifiers"]["email"][0] for p in r.json["data"]]
        cursor = r.json["next_cursor"]
        if not cursor:
            break

    # THEN each comes once
    assert sorted(seen) == [f"p{i}@example.com" for i in range(5)]
    # AND A's cursor is refused in account B's listing
    cursor = api.get("/profiles?limit=1").json["next_cursor"]
    r = api_for(new_tenant("Globex").admin_token).get(f"/profiles?limit=1&cursor={cursor}")
    assert r.status_code == 400 and r.json["error"]["code"] == "request.invalid_cursor"


def test_malformed_identifiers_are_400_naming_identifier(api):
    # GIVEN / WHEN lookups with malformed identifiers
    for query in ("identifier=ada@example.com", "identifier=email:", "identifier=email:not-an-email",
                  "identifier=Bad%20Kind:x", "identifier=", "identifier=" + "x" * 3000):
        r = api.get(f"/profiles?{query}")
        # THEN each is a 400 whose fields name the identifier
        assert r.status_code == 400, (query, r.body)
        assert "identifier" in r.json["error"]["fields"], (query, r.json)
    # AND a cursor cannot be combined with a lookup, nor unknown parameters given
    r = api.get("/profiles?identifier=email:a@b.co&cursor=abc")
    assert r.status_code == 400 and "cursor" in r.json["error"]["fields"]
    assert api.get("/profiles?email=a@b.co").status_code == 400


def test_an_observer_may_read_profiles(api, api_for, deps, tenant):
    # GIVEN an observer of the account and one profile
    seed(deps, tenant.account_id, [{"email": "o@example.com"}])
    user = api.post("/users", {"email": "obs@acme.example", "name": "Obs", "role": "observer"}).json["data"]
    token = api.post("/tokens", {"label": "obs", "user_id": user["id"]}).json["data"]["token"]
    observer = api_for(token)

    # WHEN the observer reads / THEN it gets what an admin gets
    listed = observer.get("/profiles")
    assert listed.status_code == 200 and len(listed.json["data"]) == 1
    pid = listed.json["data"][0]["id"]
    assert observer.get(f"/profiles/{pid}").status_code == 200
    assert observer.get("/profiles?identifier=email:o@example.com").json["data"][0]["id"] == pid
    # AND without a token nothing is readable
    assert api_for(None).get("/profiles").status_code == 401
