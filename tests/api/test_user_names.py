"""GET /users/names: every role sees the names of its own account's users (owners and audit
entries are shown by name), never their e-mails or roles, never another account's users."""

from __future__ import annotations

from tests.api.test_tenancy_and_roles import _token_for, two_accounts

__all__ = ["two_accounts"]


def test_every_role_reads_its_accounts_user_names_only(two_accounts, api_for):
    a, b, api_a, api_b, _ids = two_accounts
    observer = api_for(_token_for(api_a, "observer"))
    manager = api_for(_token_for(api_a, "data_manager"))
    users_a = {u["id"]: u for u in api_a.get("/users").json["data"]}
    assert len(users_a) == 3
    for caller in (observer, manager, api_a):
        r = caller.get("/users/names")
        assert r.status_code == 200, r.body
        rows = r.json["data"]
        # THEN id and name of each user of the account, nothing more
        assert {u["id"]: u["name"] for u in rows} == {i: u["name"] for i, u in users_a.items()}
        assert all(set(u) == {"id", "name"} for u in rows)
        assert "@acme.example" not in r.body.decode() and '"role"' not in r.body.decode()
    # AND the full user list (e-mails, roles) stays with admins
    assert observer.get("/users").status_code == 403
    # AND another account sees its own users only
    rows_b = api_b.get("/users/names").json["data"]
    assert [u["id"] for u in rows_b] == [b.admin_user_id] and not set(users_a) & {u["id"] for u in rows_b}
    assert a.admin_user_id not in api_b.get("/users/names").body.decode()


def test_user_names_page_and_are_documented(two_accounts, api_for):
    _a, _b, api_a, _api_b, _ids = two_accounts
    observer = api_for(_token_for(api_a, "observer"))
    first = observer.get("/users/names?limit=1").json
    assert len(first["data"]) == 1 and first["next_cursor"]
    second = observer.get(f"/users/names?limit=1&cursor={first['next_cursor']}").json
    assert second["data"] and second["data"][0]["id"] != first["data"][0]["id"]
    doc = api_a.get("/openapi.json").json
    op = doc["paths"]["/api/v1/users/names"]["get"]
    assert op["security"] == [{"bearer": []}]
    schema = doc["components"]["schemas"]["UserNameOut"]
    assert set(schema["properties"]) == {"id", "name"}
