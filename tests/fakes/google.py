"""A fake Google for tests: the OAuth 2.0 web-server flow and the Tag Manager API v2
endpoints Switchyard uses, served over real HTTP on 127.0.0.1 (stdlib ThreadingHTTPServer
in a thread), in-memory state, deterministic.

* OAuth: `GET /o/oauth2/v2/auth` (consent granted at once: 302 back to the redirect URI
  with `code` and `state`), `POST /token` with `grant_type=authorization_code` (a code is
  single use, bound to its client and redirect URI) or `refresh_token`. Answers as Google
  documents them: `{"access_token", "expires_in", "refresh_token"?, "scope", "token_type":
  "Bearer"}`; errors `{"error": "invalid_grant" | "invalid_client" | ..., "error_description"}`
  (400, 401 for a bad client). `revoke()` makes every refresh token `invalid_grant` ("Token
  has been expired or revoked.") and every access token 401.
* Tag Manager under `/tagmanager/v2` with `Authorization: Bearer <token>`: accounts.list,
  containers.list/get, workspaces.list/get, version_headers.list, tags.list/create/update (`fingerprint` checked
  when given: 409 on a mismatch), workspaces.create_version (which, as documented, deletes
  the workspace and creates a new one: `newWorkspacePath`), versions.publish. Lists page
  with `pageToken`/`nextPageToken` (`page_size` items a page).
* Every Tag Manager request is checked against Google's discovery document of the API
  (tests/fakes/google_discovery.py): method and path, query parameters, body fields and
  their types, and the scopes the method lists (versions.publish takes tagmanager.publish
  only). `calls` has the method id of every request that passed.
* Errors in Google's JSON error shape `{"error": {"code", "message", "errors": [{"message",
  "domain", "reason"}], "status"}}`: 400 INVALID_ARGUMENT (not what the API takes), 401
  UNAUTHENTICATED (bad or expired token), 403 PERMISSION_DENIED (missing scope), 404
  NOT_FOUND, and the quota answer, 403 with reason `rateLimitExceeded` (no Retry-After):
  injected by `quota()`, or earned by going over `limit_project()` (requests per sliding
  window for the whole fake, on a clock the test gives).

URLs for the settings: `fake.oauth_url` (SWITCHYARD_GOOGLE_OAUTH_URL), `fake.authorize_url`
(SWITCHYARD_GOOGLE_AUTHORIZE_URL), `fake.gtm_url` (SWITCHYARD_GTM_BASE_URL). Nothing in it
knows about Switchyard.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes import google_discovery
from tests.fakes.pkce import pkce_ok

EDIT = "https://www.googleapis.com/auth/tagmanager.edit.containers"
VERSIONS = "https://www.googleapis.com/auth/tagmanager.edit.containerversions"
PUBLISH = "https://www.googleapis.com/auth/tagmanager.publish"
STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}

# What Google says with each status (its error documentation's usual messages).
FAILURE_WORDS = {
    401: "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
         "other valid authentication credential.",
    403: "The caller does not have permission",
    404: "Not found or permission denied.",
    429: "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user'.",
    503: "The service is currently unavailable.",
}


QUOTA_WORDS = ("Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' of service "
               "'tagmanager.googleapis.com'.")


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None, *,
                 reason: str = "", domain: str = "global") -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}
        self.reason, self.domain = reason, domain

    def doc(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.status, "message": self.message,
                                 "status": STATUS_NAMES.get(self.status, "UNKNOWN")}
        if self.reason:
            error["errors"] = [{"message": self.message, "domain": self.domain, "reason": self.reason}]
        return {"error": error}


class OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


@dataclass
class Workspace:
    id: str
    name: str
    tags: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Container:
    id: str
    name: str
    public_id: str
    workspaces: dict[str, Workspace] = field(default_factory=dict)
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)
    live: str | None = None


@dataclass
class Failure:
    status: int
    times: int
    retry_after: int | None
    path: str
    delay: float = 0.0  # with status 0: answer normally, this many seconds late (timeouts)
    reason: str = ""  # Google's error reason (rateLimitExceeded for the quota 403)


class FakeGoogle:
    def __init__(self, page_size: int = 50) -> None:
        self.client_id = "1234567890-fake.apps.googleusercontent.com"
        self.client_secret = "GOCSPX-fake-client-secret-0c1d"
        self.page_size = page_size
        self.token_lifetime = 3599
        self.accounts: dict[str, dict[str, Any]] = {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.access: dict[str, dict[str, Any]] = {}  # token -> {"expires_at", "scope"}
        self.refresh: dict[str, str] = {}  # refresh token -> scope
        self.revoked = False
        self.failures: list[Failure] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) in order
        self.calls: list[str] = []  # discovery method ids of the requests that passed its checks
        self.refused: list[tuple[int, str]] = []  # (status, message) of requests the API refused
        self.quota_refused = 0  # requests over limit_project()
        self._window: deque[float] | None = None
        self._window_limit = (0, 0.0)
        self._quota_clock: Callable[[], float] = time.monotonic
        self.issued: list[dict[str, Any]] = []  # every token answer, for assertions
        self._ids = itertools.count(10)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- set-up ----------------------------------------------------------------------------------

    def add_account(self, account_id: str, name: str) -> None:
        self.accounts[account_id] = {"name": name, "containers": {}}

    def add_container(self, account_id: str, container_id: str, name: str, workspace_id: str = "1") -> Container:
        c = Container(container_id, name, f"GTM-{container_id[:6].upper()}X")
        c.workspaces[workspace_id] = Workspace(workspace_id, "Default Workspace")
        self.accounts[account_id]["containers"][container_id] = c
        return c

    def container(self, account_id: str, container_id: str) -> Container:
        c: Container = self.accounts[account_id]["containers"][container_id]
        return c

    def fail(self, status: int, times: int = 1, *, retry_after: int | None = None, path: str = "") -> None:
        self.failures.append(Failure(status, times, retry_after, path))

    def quota(self, times: int = 1, *, path: str = "", reason: str = "rateLimitExceeded") -> None:
        """The next `times` requests whose path contains `path` get Google's quota answer:
        403, reason `rateLimitExceeded` (or `userRateLimitExceeded`), no Retry-After."""
        self.failures.append(Failure(403, times, None, path, reason=reason))

    def limit_project(self, requests: int = 25, window: float = 100.0,
                      clock: Callable[[], float] = time.monotonic) -> None:
        """Tag Manager's per-project quota: at most `requests` accepted in any `window`
        seconds of `clock` (Google: 0.25/s on a 100 s sliding window), for every token."""
        self._window, self._window_limit, self._quota_clock = deque(), (requests, window), clock

    def _over_quota(self) -> bool:
        if self._window is None:
            return False
        now = self._quota_clock()
        limit, window = self._window_limit
        while self._window and self._window[0] <= now - window:
            self._window.popleft()
        if len(self._window) >= limit:
            self.quota_refused += 1
            return True
        self._window.append(now)
        return False

    def stall(self, seconds: float, times: int = 1, *, path: str = "") -> None:
        """Answer the next `times` requests whose path contains `path` normally, `seconds`
        late (a timeout)."""
        self.failures.append(Failure(0, times, None, path, delay=seconds))

    def _stalled(self, path: str) -> float:
        for f in self.failures:
            if f.status == 0 and f.times > 0 and f.path in path:
                f.times -= 1
                return f.delay
        return 0.0

    def grant(self, scopes: tuple[str, ...] = (EDIT, VERSIONS, PUBLISH)) -> dict[str, Any]:
        """Tokens as if a user had consented (for tests that skip the browser): the token
        answer with `refresh_token` and `expires_at`."""
        with self._lock:
            answer = self._access(" ".join(scopes))
            rt = "1//0fake-refresh-" + secrets.token_urlsafe(32)
            self.refresh[rt] = answer["scope"]
        return {"access_token": answer["access_token"], "refresh_token": rt, "scope": answer["scope"],
                "expires_at": int(time.time()) + self.token_lifetime}

    def revoke(self) -> None:
        """The user removed the app's access in their Google account."""
        self.revoked = True

    def expire_access_tokens(self) -> None:
        for t in self.access.values():
            t["expires_at"] = 0

    # -- server ----------------------------------------------------------------------------------

    def __enter__(self) -> FakeGoogle:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, doc: Any, headers: dict[str, str] | None = None) -> None:
                raw = b"" if doc is None else json.dumps(doc).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                if raw:
                    self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                with fake._lock:
                    late = fake._stalled(url.path)
                    fake.requests.append((method, url.path))
                    try:
                        status, doc, headers = fake.route(method, url.path, query, body,
                                                          self.headers.get("Authorization") or "")
                    except ApiError as exc:
                        status, headers, doc = exc.status, exc.headers, exc.doc()
                    except OAuthError as exc:
                        status, headers = exc.status, {}
                        doc = {"error": exc.error, "error_description": exc.description}
                if late:
                    time.sleep(late)  # processed, answered late; outside the lock
                self._answer(status, doc, headers)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PUT(self) -> None:
                self._handle("PUT")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # shutdown() waits for the serving loop to look again: at the default 0.5 s that was
        # most of a short test's time.
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def origin(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def oauth_url(self) -> str:
        return self.origin

    @property
    def authorize_url(self) -> str:
        return self.origin + "/o/oauth2/v2/auth"

    @property
    def gtm_url(self) -> str:
        return self.origin + "/tagmanager/v2"

    # -- routing ---------------------------------------------------------------------------------

    def route(self, method: str, path: str, query: dict[str, str], body: bytes,
              authorization: str) -> tuple[int, Any, dict[str, str]]:
        for f in self.failures:
            if f.status and f.times > 0 and f.path in path:
                f.times -= 1
                headers = {"Retry-After": str(f.retry_after)} if f.retry_after is not None else {}
                if f.reason:
                    raise ApiError(f.status, QUOTA_WORDS, headers, reason=f.reason, domain="usageLimits")
                raise ApiError(f.status, FAILURE_WORDS.get(f.status, "Internal error encountered."), headers)
        if path == "/o/oauth2/v2/auth" and method == "GET":
            return self._authorize(query)
        if path == "/token" and method == "POST":
            form = dict(urllib.parse.parse_qsl(body.decode()))
            return 200, self._token(form), {"Cache-Control": "no-store"}
        if path.startswith("/tagmanager/v2/"):
            scope = self._bearer(authorization)
            if self._over_quota():
                raise ApiError(403, QUOTA_WORDS, reason="rateLimitExceeded", domain="usageLimits")
            doc = self._gtm(method, path.removeprefix("/tagmanager/v2/"), query,
                            json.loads(body) if body else None, scope)
            return 200, doc, {}
        raise ApiError(404, "Not found")

    def _authorize(self, q: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        if q.get("client_id") != self.client_id:
            raise OAuthError(401, "invalid_client", "The OAuth client was not found.")
        if q.get("response_type") != "code" or not q.get("redirect_uri"):
            raise OAuthError(400, "invalid_request", "Required parameter is missing: response_type")
        code = "4/0Afake" + secrets.token_urlsafe(24)
        self.codes[code] = {"redirect_uri": q["redirect_uri"], "scope": q.get("scope", ""),
                            "offline": q.get("access_type") == "offline",
                            "challenge": (q.get("code_challenge", ""), q.get("code_challenge_method", ""))}
        back = q["redirect_uri"] + "?" + urllib.parse.urlencode({"state": q.get("state", ""), "code": code,
                                                                  "scope": q.get("scope", "")})
        return 302, None, {"Location": back}

    def _token(self, form: dict[str, str]) -> dict[str, Any]:
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            raise OAuthError(401, "invalid_client", "Unauthorized")
        grant = form.get("grant_type")
        if grant == "authorization_code":
            issued = self.codes.pop(form.get("code", ""), None)
            if issued is None or issued["redirect_uri"] != form.get("redirect_uri"):
                raise OAuthError(400, "invalid_grant", "Bad Request")
            if not pkce_ok(*issued["challenge"], form.get("code_verifier", "")):
                raise OAuthError(400, "invalid_grant", "Missing code verifier.")
            answer = self._access(issued["scope"])
            if issued["offline"]:
                rt = "1//0fake-refresh-" + secrets.token_urlsafe(32)
                self.refresh[rt] = issued["scope"]
                answer["refresh_token"] = rt
        elif grant == "refresh_token":
            scope = self.refresh.get(form.get("refresh_token", ""))
            if scope is None or self.revoked:
                raise OAuthError(400, "invalid_grant", "Token has been expired or revoked.")
            answer = self._access(scope)
        else:
            raise OAuthError(400, "unsupported_grant_type", f"Invalid grant_type: {grant}")
        self.issued.append(dict(answer, grant=grant))
        return answer

    def _access(self, scope: str) -> dict[str, Any]:
        token = "ya29.fake-" + secrets.token_urlsafe(40)
        self.access[token] = {"expires_at": time.time() + self.token_lifetime, "scope": scope}
        return {"access_token": token, "expires_in": self.token_lifetime, "scope": scope, "token_type": "Bearer"}

    def _bearer(self, authorization: str) -> set[str]:
        token = authorization.removeprefix("Bearer ").strip() if authorization.startswith("Bearer ") else ""
        found = self.access.get(token)
        if found is None or self.revoked or found["expires_at"] < time.time():
            raise ApiError(401, "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                                "login cookie or other valid authentication credential.")
        return set(str(found["scope"]).split())

    # -- Tag Manager -----------------------------------------------------------------------------

    def _page(self, items: list[dict[str, Any]], key: str, q: dict[str, str]) -> dict[str, Any]:
        start = int(q.get("pageToken") or 0)
        doc: dict[str, Any] = {key: items[start:start + self.page_size]}
        if start + self.page_size < len(items):
            doc["nextPageToken"] = str(start + self.page_size)
        return doc

    def _gtm(self, method: str, path: str, q: dict[str, str], body: Any, scope: set[str]) -> Any:
        try:
            called = google_discovery.check(method, path, q, body, scope)
        except google_discovery.Refused as exc:
            self.refused.append((exc.status, exc.message))
            raise ApiError(exc.status, exc.message, reason=exc.reason) from None
        self.calls.append(called.id)
        if path == "accounts" and method == "GET":
            return self._page([{"path": f"accounts/{a}", "accountId": a, "name": v["name"]}
                               for a, v in self.accounts.items()], "account", q)
        m = re.fullmatch(r"accounts/(\d+)/containers(?:/(\d+))?(.*)", path)
        if not m or m.group(1) not in self.accounts:
            raise ApiError(404, "Not found or permission denied.")
        account, cid, rest = m.group(1), m.group(2), m.group(3)
        containers: dict[str, Container] = self.accounts[account]["containers"]
        if cid is None:
            return self._page([self._container_doc(account, c) for c in containers.values()], "container", q)
        c = containers.get(cid)
        if c is None:
            raise ApiError(404, "Not found or permission denied.")
        cpath = f"accounts/{account}/containers/{cid}"
        if rest == "" and method == "GET":
            return self._container_doc(account, c)
        if rest == "/workspaces" and method == "GET":
            return self._page([self._ws_doc(cpath, w) for w in c.workspaces.values()], "workspace", q)
        if rest == "/version_headers" and method == "GET":
            return self._page([{k: v[k] for k in ("path", "accountId", "containerId", "containerVersionId", "name")}
                               | {"numTags": str(len(v["tag"]))} for v in c.versions.values()],
                              "containerVersionHeader", q)
        m = re.fullmatch(r"/versions/(\d+):publish", rest)
        if m and method == "POST":
            if m.group(1) not in c.versions:
                raise ApiError(404, "Not found or permission denied.")
            c.live = m.group(1)
            return {"containerVersion": c.versions[m.group(1)], "compilerError": False}
        m = re.fullmatch(r"/workspaces/(\d+)(.*)", rest)
        if not m or m.group(1) not in c.workspaces:
            raise ApiError(404, "Not found or permission denied.")
        ws, tail = c.workspaces[m.group(1)], m.group(2)
        wpath = f"{cpath}/workspaces/{ws.id}"
        if tail == "" and method == "GET":
            return self._ws_doc(cpath, ws)
        if tail == "/tags" and method == "GET":
            return self._page(list(ws.tags.values()), "tag", q)
        if tail == "/tags" and method == "POST":
            return self._put_tag(wpath, ws, str(next(self._ids)), body)
        m = re.fullmatch(r"/tags/(\d+)", tail)
        if m and method == "PUT":
            old = ws.tags.get(m.group(1))
            if old is None:
                raise ApiError(404, "Not found or permission denied.")
            if q.get("fingerprint") and q["fingerprint"] != old["fingerprint"]:
                raise ApiError(409, "Fingerprint does not match the stored entity.")
            return self._put_tag(wpath, ws, m.group(1), body)
        if tail == ":create_version" and method == "POST":
            vid = str(len(c.versions) + 1)
            version = {"path": f"{cpath}/versions/{vid}", "accountId": account, "containerId": cid,
                       "containerVersionId": vid, "name": (body or {}).get("name", ""),
                       "description": (body or {}).get("notes", ""),
                       "tag": [dict(t) for t in ws.tags.values()], "fingerprint": str(time.time_ns())}
            c.versions[vid] = version
            # As documented: the workspace is deleted and a new one is generated from the version.
            del c.workspaces[ws.id]
            new = Workspace(str(next(self._ids)), ws.name,
                            {k: dict(v) for k, v in ws.tags.items()})
            for t in new.tags.values():
                t["path"] = f"{cpath}/workspaces/{new.id}/tags/{t['tagId']}"
                t["workspaceId"] = new.id
            c.workspaces[new.id] = new
            return {"containerVersion": version, "compilerError": False,
                    "newWorkspacePath": f"{cpath}/workspaces/{new.id}"}
        raise ApiError(404, "Not found or permission denied.")

    def _put_tag(self, wpath: str, ws: Workspace, tag_id: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not body.get("name") or not body.get("type"):
            raise ApiError(400, "Invalid tag: name and type are required.")
        parts = wpath.split("/")
        tag = dict(body, path=f"{wpath}/tags/{tag_id}", accountId=parts[1], containerId=parts[3],
                   workspaceId=ws.id, tagId=tag_id, fingerprint=str(time.time_ns()))
        ws.tags[tag_id] = tag
        return tag

    @staticmethod
    def _container_doc(account: str, c: Container) -> dict[str, Any]:
        return {"path": f"accounts/{account}/containers/{c.id}", "accountId": account, "containerId": c.id,
                "name": c.name, "publicId": c.public_id, "usageContext": ["web"]}

    @staticmethod
    def _ws_doc(cpath: str, w: Workspace) -> dict[str, Any]:
        return {"path": f"{cpath}/workspaces/{w.id}", "workspaceId": w.id, "name": w.name}

    # -- helpers for assertions ------------------------------------------------------------------

    def workspace(self, account_id: str, container_id: str) -> Workspace:
        """The container's only workspace (create_version replaces it)."""
        (ws,) = self.container(account_id, container_id).workspaces.values()
        return ws
