"""SPEC rule 11: every route is scoped to the caller's account; roles limit what callers do."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.api.http import ROUTES
from tests.api.helpers import create_auth, create_job, make_bucket, s3_credentials

BODIES: dict[tuple[str, str], Any] = {
    ("PATCH", "/api/v1/jobs/{job_id}"): {"label": "hijack", "version": 1},
    ("PATCH", "/api/v1/authorizations/{auth_id}"): {"label": "hijack"},
    ("PUT", "/api/v1/authorizations/{auth_id}/credentials"): {"credentials": s3_credentials()},
    ("PATCH", "/api/v1/audiences/{audience_id}"): {"name": "hijack", "version": 1},
    ("POST", "/api/v1/jobs/{job_id}/alert-rules"): {"metric": "added", "granularity": "hour", "max": 1},
    ("PATCH", "/api/v1/users/{user_id}"): {"role": "observer"},
}


@pytest.fixture()
def two_accounts(new_tenant, api_for, deps):
    from chalicelib.domain.profiles import ProfileRecord

    a, b = new_tenant("Acme"), new_tenant("Globex")
    api_a = api_for(a.admin_token)
    bucket = make_bucket()
    auth = create_auth(api_a)
    job = create_job(api_a, auth["id"], bucket)
    token = api_a.post("/tokens", {"label": "ci"}).json["data"]
    audience = api_a.post("/audiences", {"name": "Pro", "filter": {"all": [
        {"field": "plan", "op": "equals", "value": "pro"}]}}).json["data"]
    deps.profiles.upsert_batch(a.account_id, [ProfileRecord({"email": "p@acme.example"}, {}, "seed")],
                               step_tag="seed#0")
    profile = next(deps.profiles.iterate(a.account_id))
    rule = api_a.post(f"/jobs/{job['id']}/alert-rules", {"metric": "added", "granularity": "day", "max": 9})
    hooks = api_a.put("/alerts", {"webhooks": ["https://93.184.216.34/hook"], "version": 0})
    assert hooks.status_code == 200, hooks.body
    ids = {"webhook_id": hooks.json["data"]["webhooks"][0]["id"], "rule_id": rule.json["data"]["id"], "profile_id": profile.id, "job_id": job["id"], "auth_id": auth["id"], "token_id": token["id"], "audience_id": audience["id"], "user_id": a.admin_user_id,
           "provider": "amazon_s3", "workflow": "s3_file_import", "field": "bucket"}
    return a, b, api_a, api_for(b.admin_token), ids


def _fill(path: str, ids: dict[str, str]) -> str:
    for k, v in ids.items():
        path = path.replace("{" + k + "}", v)
    return path.removeprefix("/api/v1")


def test_another_accounts_ids_are_404_on_every_route(two_accounts):
    _a, _b, api_a, api_b, ids = two_accounts
    tenant_routes = [r for r in ROUTES if r.path_params and not r.path.startswith("/api/v1/providers")]
    assert len(tenant_routes) >= 14  # every job, authorization and token route with an id
    for r in tenant_routes:
        body = BODIES.get((r.method, r.path), {} if r.body else None)
        resp = api_b.call(r.method, _fill(r.path, ids), body)
        assert resp.status_code == 404, (r.method, r.path, resp.body)
        assert resp.json["error"]["code"].endswith("not_found"), (r.path, resp.json)
    # the options route names the authorization in its query: same answer
    resp = api_b.get(f"/providers/amazon_s3/workflows/s3_file_import/options/bucket?authorization_id={ids['auth_id']}")
    assert resp.status_code == 404
    # AND account A's objects are untouched
    job = api_a.get(f"/jobs/{ids['job_id']}").json["data"]
    assert job["label"] == "Import" and job["status"] == "sleeping" and job["version"] == 1
    assert api_a.get(f"/authorizations/{ids['auth_id']}").json["data"]["label"] == "S3 keys"
    assert ids["token_id"] in [t["id"] for t in api_a.get("/tokens").json["data"]]


def test_lists_only_show_the_callers_account(two_accounts):
    _a, _b, api_a, api_b, ids = two_accounts
    assert api_b.get("/jobs").json["data"] == []
    assert api_b.get("/authorizations").json["data"] == []
    assert api_b.get(f"/jobs?authorization_id={ids['auth_id']}").json["data"] == []
    assert ids["token_id"] not in [t["id"] for t in api_b.get("/tokens").json["data"]]
    # a cursor from account A cannot page through account B's partition
    api_a.post("/authorizations", {"provider": "amazon_s3", "method": "access_keys", "label": "2",
                                   "credentials": s3_credentials()})
    cursor = api_a.get("/authorizations?limit=1").json["next_cursor"]
    assert cursor
    r = api_b.get(f"/authorizations?limit=1&cursor={cursor}")
    assert r.status_code == 400 and r.json["error"]["code"] == "request.invalid_cursor"
    # and a job cannot be created on another account's authorization
    r = api_b.post("/jobs", {"provider": "amazon_s3", "job_type": "import", "workflow": "s3_file_import",
                             "authorization_id": ids["auth_id"], "label": "x",
                             "config": {"bucket": "whatever-bucket"}})
    assert r.status_code == 422 and r.json["error"]["fields"] == {"authorization_id": "not found"}


def _token_for(api_admin: Any, role: str) -> str:
    user = api_admin.post("/users", {"email": f"{role}@acme.example", "name": role, "role": role})
    assert user.status_code == 201, user.body
    tok = api_admin.post("/tokens", {"label": role, "user_id": user.json["data"]["id"]})
    assert tok.status_code == 201
    return tok.json["data"]["token"]


def test_observer_reads_but_never_changes(two_accounts, api_for):
    _a, _b, api_a, _api_b, ids = two_accounts
    observer = api_for(_token_for(api_a, "observer"))
    for r in ROUTES:
        if r.public:
            continue
        path = _fill(r.path, ids)
        body = BODIES.get((r.method, r.path), {} if r.body else None)
        resp = observer.call(r.method, path, body)
        if r.needs == "read":
            assert resp.status_code in (200, 422), (r.path, resp.body)  # 422: options need a query
        else:
            assert resp.status_code == 403, (r.method, r.path, resp.body)
            assert resp.json["error"]["code"] == "auth.forbidden"
    assert api_a.get(f"/jobs/{ids['job_id']}").json["data"]["version"] == 1


def test_data_manager_manages_integrations_but_not_tokens_or_users(two_accounts, api_for):
    a, _b, api_a, _api_b, ids = two_accounts
    dm = api_for(_token_for(api_a, "data_manager"))
    assert dm.post(f"/jobs/{ids['job_id']}/pause").status_code == 200
    made = create_auth(dm, label="dm's")
    assert made["owner"] != a.admin_user_id  # owner = the creating user
    for method, path, body in (("GET", "/tokens", None), ("POST", "/tokens", {"label": "x"}),
                               ("DELETE", f"/tokens/{ids['token_id']}", None), ("GET", "/users", None),
                               ("POST", "/users", {"email": "a@b.co", "name": "n", "role": "admin"})):
        r = dm.call(method, path, body)
        assert r.status_code == 403, (method, path, r.body)


def test_tokens_are_shown_once_stored_hashed_and_revocable(api, api_for, deps, tenant):
    r = api.post("/tokens", {"label": "script"})
    assert r.status_code == 201
    created = r.json["data"]
    plaintext = created["token"]
    assert plaintext.startswith(created["id"] + ".")
    listed = api.get("/tokens").json["data"]
    assert created["id"] in [t["id"] for t in listed]
    assert plaintext not in api.get("/tokens").body.decode()
    item = deps.accounts.get_token(created["id"])
    assert plaintext not in repr(item) and len(item.token_hash) == 64
    script = api_for(plaintext)
    me = script.get("/me").json["data"]
    assert me["account"]["id"] == tenant.account_id and me["role"] == "admin"
    assert api.delete(f"/tokens/{created['id']}").status_code == 204
    r = script.get("/jobs")
    assert r.status_code == 401 and r.json["error"]["code"] == "auth.invalid_token"


def test_the_token_list_shows_the_role_each_token_acts_with(api, api_for):
    # GIVEN a data manager's token, listed as data manager
    user = api.post("/users", {"email": "dee@acme.example", "name": "Dee", "role": "data_manager"}).json["data"]
    token = api.post("/tokens", {"label": "dee script", "user_id": user["id"]}).json["data"]
    def listed_role() -> str:
        return next(t["role"] for t in api.get("/tokens").json["data"] if t["id"] == token["id"])
    assert listed_role() == "data_manager"
    # WHEN Dee becomes an observer
    assert api.patch(f"/users/{user['id']}", {"role": "observer"}).status_code == 200
    # THEN the token acts as an observer, and the list says so (not the role it was issued with)
    assert api_for(token["token"]).get("/me").json["data"]["role"] == "observer"
    assert listed_role() == "observer"


def test_missing_or_bad_tokens_are_401(api_for):
    for token in ("garbage", "tok_x.short", "tok_01abc." + "a" * 40):
        r = api_for(token).get("/jobs")
        assert r.status_code == 401, token
        assert r.json["error"]["code"] == "auth.invalid_token"
    assert api_for(None).get("/jobs").status_code == 401
    assert api_for(None).get("/healthz").json == {"data": {"status": "ok"}}


def test_account_token_and_admin_are_created_together(deps, new_tenant):
    from chalicelib.domain.errors import Conflict
    from chalicelib.services.accounts import create_account

    t = new_tenant("First")
    # WHEN a second account is bootstrapped with a token id that is already taken
    try:
        create_account(deps, "Second", "admin@second.example", account_id="acct_second_fixed",
                       admin_token=t.admin_token)
        raise AssertionError("expected a conflict")
    except Conflict as exc:
        assert exc.code == "account.exists"
    # THEN nothing of the second account exists (no account left without a token)
    assert deps.accounts.get_account("acct_second_fixed") is None
    assert deps.accounts.list_users("acct_second_fixed", 50, None).items == []
    assert deps.accounts.get_token(t.admin_token.split(".")[0]).account_id == t.account_id


def test_an_operator_chosen_token_must_be_as_random_as_an_issued_one(deps, new_tenant):
    from chalicelib.domain.errors import Invalid
    from chalicelib.services.accounts import create_account, register_token, resolve_token

    t = new_tenant("Chooser")
    admin = deps.accounts.list_users(t.account_id, 50, None).items[0]
    weak = "tok_chosen.correcthorsebatterystaple2024"  # 24+ characters: accepted before
    # WHEN an operator registers or bootstraps with a weak token
    for attempt in (lambda: register_token(deps, t.account_id, admin.id, weak, "ops"),
                    lambda: create_account(deps, "Weak", "a@weak.example", account_id="acct_weak_fixed",
                                           admin_token=weak)):
        with pytest.raises(Invalid) as err:
            attempt()
        # THEN it is refused naming the field, without quoting the secret
        assert set(err.value.fields) <= {"token", "admin_token"} and err.value.fields
        assert "correcthorse" not in str(err.value) and "correcthorse" not in str(err.value.fields)
    # AND nothing was stored: the weak token resolves to nobody, the account does not exist
    assert resolve_token(deps, weak) is None
    assert deps.accounts.get_account("acct_weak_fixed") is None
    # GIVEN a positive control: a random chosen token is registered and resolves
    strong = "tok_chosen2.9Jr2w1cXzP0bLq7KfT3nVh8sYd4mGe6uAoWiRjNkCtE"
    register_token(deps, t.account_id, admin.id, strong, "ops")
    assert resolve_token(deps, strong).user_id == admin.id


def test_a_job_naming_another_accounts_authorization_never_reads_its_secret(two_accounts, deps, monkeypatch):
    a, b, api_a, api_b, ids = two_accounts
    read: list[str] = []
    original = deps.secrets.read

    def recording(name: str) -> dict[str, Any]:
        read.append(name)
        return original(name)

    monkeypatch.setattr(deps.secrets, "read", recording)
    theirs = deps.auths.get(a.account_id, ids["auth_id"])
    body = {"provider": "amazon_s3", "job_type": "import", "workflow": "s3_file_import",
            "authorization_id": ids["auth_id"], "label": "Hijack", "config": {"bucket": make_bucket()}}
    # WHEN account B names A's authorization in a new job
    resp = api_b.post("/jobs", body)
    # THEN it is not found, and the only secret read (beside the authorization) is named
    # under B's own account: A's secret is never read
    assert resp.status_code == 422 and resp.json["error"]["code"] == "authorization.not_found", resp.body
    assert read == [deps.secrets.name_for(b.account_id, ids["auth_id"])]
    assert theirs is not None and theirs.secret_name not in read
    # control: A's own create reads A's secret, once
    read.clear()
    assert api_a.post("/jobs", {**body, "label": "Mine"}).status_code == 201
    assert read == [theirs.secret_name]
