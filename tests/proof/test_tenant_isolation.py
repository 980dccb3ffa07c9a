"""Proof suite: tenant isolation and roles on every route and method of the app.

The routes come from the Chalice app's own routing table (`app.routes`), so a new route is
part of this suite the day it is added:

- a route with an object id in its path (job, authorization, audience, rule, profile,
  token) gets its case automatically: account B's admin naming account A's object → 404;
- every other route must have an explicit case below saying what B sees instead (its own
  data only, the shared catalog, a public route ...): a route without one fails the suite;
- an observer of account A gets 403 on every route that changes something (POST, PUT,
  PATCH, DELETE, unless listed as read-only with its reason) and on the few reads kept to
  admins / managers, and reads everything else.

After all requests, account A's objects are checked unchanged. The routes × outcomes table
goes to docs/proof.md. Requests go through chalice.test.Client (the app's own gateway,
authorizer included), like tests/api/test_tenancy_and_roles.py whose fixtures this reuses.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.api.helpers import s3_credentials
from tests.api.test_oauth import _callback, _consent, _start, oauth_app
from tests.api.test_tenancy_and_roles import BODIES, _fill, _token_for, two_accounts
from tests.proof.record import record

__all__ = ["oauth_app", "two_accounts"]  # fixtures used by the test below

# Path parameters that name an object of one account: their routes get the 404 case.
TENANT_IDS = {"job_id", "auth_id", "audience_id", "rule_id", "profile_id", "token_id", "user_id",
              "webhook_id"}
# Path parameters that are not account data (the shared catalog).
CATALOG_PARAMS = {"provider", "workflow", "field"}
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
# POSTs that change nothing; observers may call them.
READ_ONLY = {("POST", "/api/v1/audiences/preview"): "computes an audience's size from a filter; stores nothing",
             ("POST", "/api/v1/audiences/sizes"): "computes saved audiences' sizes; keeps them a minute, changes nothing"}
# Reads kept from observers (the route's capability is more than read).
OBSERVER_REFUSED_READS = {
    ("GET", "/api/v1/users"): "people of the account: admins only",
    ("GET", "/api/v1/tokens"): "API tokens: admins only",
    ("GET", "/api/v1/audit"): "the audit log: admins and data managers",
    ("GET", "/api/v1/oauth/{provider}/start"): "starts a connection: creating is not for observers",
    ("GET", "/api/v1/account/aws-trust"): "the trust policy to connect an AWS role: creating is not for observers",
}
# The tracking API's routes take a write key, never an API token (its key names its job).
COLLECT = {("POST", f"/api/v1/{kind}") for kind in ("batch", "identify", "track", "alias")}
PUBLIC = {("GET", "/api/v1/healthz"), ("GET", "/api/v1/openapi.json"), ("GET", "/api/v1/oauth/{provider}/callback"),
          *COLLECT}


@dataclass
class Ctx:
    api_a: Any
    api_b: Any
    anonymous: Any
    ids: dict[str, str]
    a_account: str
    b_account: str


@dataclass(frozen=True)
class Case:
    """What account B's admin sends on a route without A's ids in its path, and what must
    hold of the answer (the `check` asserts; `outcome` is the table's wording)."""
    path: str
    outcome: str
    check: Callable[[Any, Ctx], None]
    body: Any = None


def _own_external_id(resp: Any, ctx: Ctx) -> None:
    """B's trust policy names B's external id and session, never A's."""
    assert resp.status_code == 200, resp.body
    a_trust = ctx.api_a.get("/account/aws-trust").json["data"]
    assert a_trust["external_id"] not in resp.body.decode(), "account A's external id visible to account B"
    _no_a_ids(resp, ctx)


def _no_a_ids(resp: Any, ctx: Ctx) -> None:
    assert resp.status_code == 200, resp.body
    text = resp.body.decode()
    leaked = [k for k, v in ctx.ids.items() if k not in CATALOG_PARAMS and v in text]
    assert not leaked, f"account A's {leaked} visible to account B"
    assert ctx.a_account not in text


def _created_in_b(resp: Any, ctx: Ctx) -> None:
    assert resp.status_code in (200, 201, 202), resp.body
    assert ctx.a_account not in resp.body.decode()


def _names_of_b_only(resp: Any, ctx: Ctx) -> None:
    _no_a_ids(resp, ctx)
    a_users = {u["id"] for u in ctx.api_a.get("/users").json["data"]}
    rows = resp.json["data"]
    assert rows and all(set(u) == {"id", "name"} for u in rows), resp.body
    assert not a_users & {u["id"] for u in rows}, "account A's users visible to account B"


def _me_is_b(resp: Any, ctx: Ctx) -> None:
    assert resp.status_code == 200 and resp.json["data"]["account"]["id"] == ctx.b_account, resp.body


def _catalog(resp: Any, ctx: Ctx) -> None:
    assert resp.status_code == 200 and ctx.a_account not in resp.body.decode(), resp.body


def _preview_counts_b_only(resp: Any, ctx: Ctx) -> None:
    # A holds one profile with this e-mail; B holds none.
    assert resp.status_code == 200 and resp.json["data"]["size"] == 0, resp.body


def _sizes_leave_a_out(resp: Any, ctx: Ctx) -> None:
    # Asked for A's audience, B gets an empty list: as for an id that never existed.
    assert resp.status_code == 200 and resp.json["data"] == [], resp.body


def _auth_field_not_found(resp: Any, ctx: Ctx) -> None:
    assert resp.status_code == 422 and resp.json["error"]["fields"] == {"authorization_id": "not found"}, resp.body


def _options_404(resp: Any, ctx: Ctx) -> None:
    assert resp.status_code == 404 and resp.json["error"]["code"].endswith("not_found"), resp.body


def _public(resp: Any, ctx: Ctx) -> None:
    assert resp.status_code == 200, resp.body


def _state_mismatch(resp: Any, ctx: Ctx) -> None:
    assert resp.status_code == 400 and resp.json["error"]["code"] == "oauth.state_mismatch", resp.body


def _token_refused(resp: Any, ctx: Ctx) -> None:
    assert resp.status_code == 401 and resp.json["error"]["code"] == "auth.api_token_not_write_key", resp.body


PRO = {"all": [{"field": "email", "op": "equals", "value": "p@acme.example"}]}

# Routes without an object id in their path: (method, path) → what account B gets.
CASES: dict[tuple[str, str], Case] = {
    ("GET", "/api/v1/me"): Case("/me", "200: B's own account", _me_is_b),
    ("GET", "/api/v1/users"): Case("/users", "200: B's users only", _no_a_ids),
    ("GET", "/api/v1/account/aws-trust"): Case("/account/aws-trust", "200: B's own external id",
                                               _own_external_id),
    ("GET", "/api/v1/users/names"): Case("/users/names", "200: names of B's users only", _names_of_b_only),
    ("POST", "/api/v1/users"): Case("/users", "201: created in B", _created_in_b,
                                    {"email": "new@globex.example", "name": "N", "role": "observer"}),
    ("GET", "/api/v1/tokens"): Case("/tokens", "200: B's tokens only", _no_a_ids),
    ("POST", "/api/v1/tokens"): Case("/tokens", "201: created in B", _created_in_b, {"label": "b"}),
    ("GET", "/api/v1/alerts"): Case("/alerts", "200: B's settings only", _no_a_ids),
    ("PUT", "/api/v1/alerts"): Case("/alerts", "200: B's settings changed, A's not", _created_in_b,
                                    {"emails": ["ops@globex.example"], "version": 0}),
    ("POST", "/api/v1/alerts/test"): Case("/alerts/test", "202: B's channels only", _created_in_b),
    ("GET", "/api/v1/audiences"): Case("/audiences", "200: B's audiences only", _no_a_ids),
    ("POST", "/api/v1/audiences"): Case("/audiences", "201: created in B", _created_in_b,
                                        {"name": "B's", "filter": PRO}),
    ("POST", "/api/v1/audiences/preview"): Case("/audiences/preview", "200: counts B's profiles only",
                                                _preview_counts_b_only, {"filter": PRO}),
    ("POST", "/api/v1/audiences/sizes"): Case("/audiences/sizes", "200: A's audience left out",
                                              _sizes_leave_a_out, {"ids": ["{audience_id}"]}),
    ("GET", "/api/v1/audit"): Case("/audit?object_id={job_id}", "200: B's events only (none of A's job)",
                                   _no_a_ids),
    ("GET", "/api/v1/authorizations"): Case("/authorizations", "200: B's authorizations only", _no_a_ids),
    ("POST", "/api/v1/authorizations"): Case("/authorizations", "201: created in B", _created_in_b,
                                             {"provider": "amazon_s3", "method": "access_keys", "label": "B",
                                              "credentials": s3_credentials()}),
    ("GET", "/api/v1/providers"): Case("/providers", "200: the shared catalog", _catalog),
    ("GET", "/api/v1/providers/{provider}"): Case("/providers/amazon_s3", "200: the shared catalog", _catalog),
    ("GET", "/api/v1/providers/{provider}/workflows/{workflow}/options/{field}"): Case(
        "/providers/amazon_s3/workflows/s3_file_import/options/bucket?authorization_id={auth_id}",
        "404: A's authorization in the query", _options_404),
    ("GET", "/api/v1/jobs"): Case("/jobs?authorization_id={auth_id}", "200: B's jobs only", _no_a_ids),
    ("POST", "/api/v1/jobs"): Case("/jobs", "422: A's authorization_id not found", _auth_field_not_found,
                                   {"provider": "amazon_s3", "job_type": "import", "workflow": "s3_file_import",
                                    "authorization_id": "{auth_id}", "label": "x",
                                    "config": {"bucket": "whatever-bucket"}}),
    ("POST", "/api/v1/jobs/preview"): Case("/jobs/preview", "422: A's authorization_id not found",
                                           _auth_field_not_found,
                                           {"provider": "amazon_s3", "job_type": "import", "workflow": "s3_file_import",
                                            "authorization_id": "{auth_id}", "label": "x",
                                            "config": {"bucket": "whatever-bucket"}}),
    ("GET", "/api/v1/profiles"): Case("/profiles?identifier=email:p@acme.example", "200: B's profiles only",
                                      _no_a_ids),
    ("GET", "/api/v1/healthz"): Case("/healthz", "200: public, no account data", _public),
    ("GET", "/api/v1/openapi.json"): Case("/openapi.json", "200: public, no account data", _public),
    ("GET", "/api/v1/oauth/{provider}/start"): Case("/oauth/mailchimp/start", "200: B's own flow",
                                                    _created_in_b),
    ("GET", "/api/v1/oauth/{provider}/callback"): Case(
        "/oauth/mailchimp/callback", "400: A's flow brought back by B's browser", _state_mismatch),
    **{key: Case(key[1].removeprefix("/api/v1"), "401: an API token is not a write key (a key names its job)",
                 _token_refused, {"batch": [{"type": "track", "userId": "u", "event": "e"}], "userId": "u",
                                  "event": "e", "previousId": "p"}) for key in COLLECT},
}


def _routes() -> list[tuple[str, str]]:
    from app import app

    return sorted((method, path) for path, methods in app.routes.items() for method in methods)


def _subst(value: Any, ids: dict[str, str]) -> Any:
    return json.loads(_fill(json.dumps(value), ids)) if value is not None else None


def test_every_route_isolates_accounts_and_refuses_observers_changes(two_accounts, api_for, oauth_app) -> None:
    a, b, api_a, api_b, ids = two_accounts
    ctx = Ctx(api_a, api_b, api_for(None), ids, a.account_id, b.account_id)
    observer = api_for(_token_for(api_a, "observer"))
    api_a.put("/alerts", {"emails": ["ops@acme.example"], "version": 0})
    before = _snapshot(api_a, ids)
    # A's OAuth flow, its state and browser cookie; B's browser has its own cookie.
    _, _nonce_a, started_a = _start(api_a)
    back_a = _consent(started_a["authorize_url"])
    _, nonce_b, _ = _start(api_b)

    routes = _routes()
    missing, rows, failures = [], [], []
    for method, path in routes:
        params = {s[1:-1] for s in path.split("/") if s.startswith("{")}
        unknown = params - TENANT_IDS - CATALOG_PARAMS
        assert not unknown, f"{method} {path}: path parameter(s) {unknown} are neither account objects nor catalog"
        key = (method, path)
        # -- account B against A's ids ------------------------------------------------------
        try:
            if params & TENANT_IDS:
                other = "404"
                body = BODIES.get(key, {} if method in ("POST", "PUT", "PATCH") else None)
                resp = api_b.call(method, _fill(path, ids), body)
                assert resp.status_code == 404, resp.body
                assert resp.json["error"]["code"].endswith("not_found"), resp.body
            elif key in CASES:
                case = CASES[key]
                other = case.outcome
                if key == ("GET", "/api/v1/oauth/{provider}/callback"):
                    resp = _callback(ctx.anonymous, back_a, nonce_b)
                else:
                    resp = api_b.call(method, _fill(case.path, ids), _subst(case.body, ids))
                case.check(resp, ctx)
            else:
                missing.append(f"{method} {path}")
                other = "NO CASE"
        except AssertionError as exc:
            failures.append(f"{method} {path} (other account): {exc}")
            other = f"FAILED: {str(exc)[:80]}"
        # -- A's observer ---------------------------------------------------------------------
        try:
            if key in PUBLIC:
                seen = "public route (no token)"
            else:
                refused = (method in MUTATING and key not in READ_ONLY) or key in OBSERVER_REFUSED_READS
                target = _fill(CASES[key].path if key in CASES else path, ids)
                body = BODIES.get(key, {} if method in ("POST", "PUT", "PATCH") else None)
                if key in CASES and CASES[key].body is not None:
                    body = _subst(CASES[key].body, ids)
                resp = observer.call(method, target, body)
                if refused:
                    assert resp.status_code == 403, resp.body
                    assert resp.json["error"]["code"] == "auth.forbidden", resp.body
                    seen = "403"
                else:
                    assert resp.status_code == 200, resp.body
                    seen = "200 (reads)"
        except AssertionError as exc:
            failures.append(f"{method} {path} (observer): {exc}")
            seen = f"FAILED: {str(exc)[:80]}"
        rows.append((method, path, other, seen))

    assert not missing, f"routes without an isolation case (add one to CASES): {missing}"
    assert not failures, "\n".join(failures)
    # AND nothing of account A changed
    assert _snapshot(api_a, ids) == before

    table = ["| method | path | another account's admin, A's ids | A's observer |", "|---|---|---|---|"]
    table += [f"| {m} | `{p}` | {o} | {s} |" for m, p, o, s in rows]
    isolated = sum(1 for r in rows if r[2] == "404")
    refused = sum(1 for r in rows if r[3] == "403")
    record("tenant_isolation", "Tenant isolation and roles", {
        "routes (method × path, from app.routes)": len(rows),
        "routes with A's ids in the path → 404 for B": isolated,
        "other routes: B sees only its own data": len(rows) - isolated,
        "routes refused to observers (403)": refused,
        "routes observers read": sum(1 for r in rows if r[3].startswith("200")),
        "public routes": len(PUBLIC),
        "failures": len(failures),
    }, table="\n".join(table), summary=(
        "Account B's admin calls every route with account A's object ids (path, query or body); "
        "A's observer calls every route. A's objects are compared before and after."), order=20)


def _snapshot(api_a: Any, ids: dict[str, str]) -> str:
    reads = [f"/jobs/{ids['job_id']}", f"/authorizations/{ids['auth_id']}", f"/audiences/{ids['audience_id']}",
             f"/jobs/{ids['job_id']}/alert-rules", f"/profiles/{ids['profile_id']}", "/tokens", "/users",
             "/alerts", "/jobs", "/authorizations", "/audiences"]
    out = {}
    for path in reads:
        r = api_a.get(path)
        assert r.status_code == 200, (path, r.body)
        data = r.json["data"]
        # A's observer legitimately reads options through A's authorization, which moves its
        # `last_used_at` (in the summary and in the list): not a change of A's objects.
        if path == f"/authorizations/{ids['auth_id']}":
            data.pop("last_used_at", None)
        if path == "/authorizations":
            for row in data:
                row.pop("last_used_at", None)
        out[path] = data
    return json.dumps(out, sort_keys=True)
