"""A fake Mailchimp (Marketing API 3.0 and OAuth 2) for tests: a real HTTP server on
127.0.0.1 (stdlib ThreadingHTTPServer in a thread), in-memory state per server,
deterministic.

It implements the documented requests and answers Switchyard uses, with the documented
error body (`type`, `title`, `status`, `detail`, `instance`, JSON problem document):

* auth: HTTP Basic with any user name and an API key `<key>-<dc>`, or `Bearer <token>` /
  `OAuth <token>` for OAuth tokens; a key of another data center is refused (401) like the
  real one ("you've attempted to access the wrong datacenter");
* `GET /ping`, `GET /`, `GET /lists`, `GET /lists/{id}`, `GET /lists/{id}/merge-fields`,
  `GET /lists/{id}/tag-search`, `GET /lists/{id}/members` (count <= 1000 / offset,
  `since_last_changed` / `before_last_changed`, `sort_field=last_changed`, `sort_dir`),
  `GET|PUT /lists/{id}/members/{hash}`, `POST /lists/{id}/members/{hash}/tags`,
  batch subscribe `POST /lists/{id}` (<= 500 members, `update_existing`),
  `POST /batches` + `GET /batches/{id}` (accepted, then finished after `batch_polls`
  polls, with operation counts); each operation runs as the request it describes, and a
  finished batch's `response_body_url` serves its results as Mailchimp does: a gzipped tar
  of JSON files, each an array of `{status_code, operation_id, response}` (the response
  body as a JSON string), fetched without the API's credentials (a presigned storage URL:
  an Authorization header is refused, an expired URL answers 403);
* every API request (batch operations too) is checked against what the official client
  can send (tests/fakes/mailchimp_client.py): an unknown path 404, another method 405, a
  query parameter or body key the client does not have 400;
* `fields` / `exclude_fields` (dot paths into objects and the items of arrays) trim every
  answer to what was asked, so a reader that uses a field it did not ask for sees it missing;
* OAuth under `/login`: `/oauth2/authorize` (issues a code at once: redirect back),
  `/oauth2/token`, `/oauth2/metadata`;
* failures injected per test: `fail(status, times, retry_after=, path=)` answers the next
  matching requests with that status (429 with Retry-After, 5xx...);
  `fail_operations(status, times, path=)` does the same to operations inside a batch.

Base URL for the provider: `fake.base_url` (a template with `{dc}`, like the setting
SWITCHYARD_MAILCHIMP_BASE_URL) and `fake.oauth_url` (SWITCHYARD_MAILCHIMP_OAUTH_URL).
Nothing in it knows about Switchyard.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import secrets
import tarfile
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes import mailchimp_client
from tests.fakes.pkce import pkce_ok

ERROR_TYPE = "https://mailchimp.com/developer/marketing/docs/errors/"
RESULTS_PATH = "/batch-results/"  # where the fake's storage serves batch results


def subscriber_hash(email: str) -> str:
    return hashlib.md5(email.strip().lower().encode()).hexdigest()


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str, headers: dict[str, str] | None = None,
                 errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.headers = headers or {}
        self.errors = errors


@dataclass
class Member:
    email_address: str
    status: str
    merge_fields: dict[str, Any]
    tags: list[str]
    last_changed: str

    @property
    def id(self) -> str:
        return subscriber_hash(self.email_address)

    def to_json(self, tag_ids: dict[str, int]) -> dict[str, Any]:
        return {"id": self.id, "email_address": self.email_address, "unique_email_id": self.id[:10],
                "status": self.status, "merge_fields": dict(self.merge_fields),
                "tags_count": len(self.tags),
                "tags": [{"id": tag_ids[t], "name": t} for t in self.tags],
                "last_changed": self.last_changed, "list_id": ""}


@dataclass
class MList:
    id: str
    name: str
    merge_fields: list[dict[str, Any]]
    members: dict[str, Member] = field(default_factory=dict)
    tag_ids: dict[str, int] = field(default_factory=dict)

    def tag_id(self, name: str) -> int:
        return self.tag_ids.setdefault(name, 1000 + len(self.tag_ids))


@dataclass
class Failure:
    status: int
    times: int
    retry_after: str | None
    path: str | None
    method: str | None
    delay: float = 0.0  # with status 0: answer normally, this many seconds late (timeouts)


@dataclass
class Seen:
    method: str
    path: str  # without the query string
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


class FakeMailchimp:
    def __init__(self, *, dc: str = "us21", account_id: str = "8d3a3db4d97663a9074efcc16",
                 account_name: str = "Acme Fake Co") -> None:
        self.dc = dc
        self.account_id = account_id
        self.account_name = account_name
        self.api_keys: set[str] = set()
        self.key_lists: dict[str, set[str]] = {}  # key -> the only lists it may see (a scoped key)
        self._caller = ""  # the API key of the request being served (under the lock)
        self.tokens: set[str] = set()
        self.lists: dict[str, MList] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.batch_polls = 1  # GETs of a batch before it reports "finished"
        self.results_per_file = 500  # operation results per JSON file of a batch's archive
        self.results_expired = False  # batch results URLs answer 403, as once expired
        self.failures: list[Failure] = []
        self.op_failures: list[Failure] = []  # for operations inside a batch
        self.calls: list[str] = []  # client method ids of the API requests that passed the checks
        self.requests: list[Seen] = []
        self.now: Any = lambda: datetime.now(UTC)
        # OAuth
        self.client_id = "fake-client-id"
        self.client_secret = "fake-client-secret"
        self.codes: dict[str, str] = {}  # code -> redirect_uri
        # code -> (code_challenge, method): an exchange must prove S256 (RFC 7636)
        self.challenges: dict[str, tuple[str, str]] = {}
        self.oauth_token = "fake-oauth-token-" + secrets.token_hex(8)
        self._lock = threading.RLock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # one request, one wait-free answer (tests/http_receiver.py)

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urllib.parse.urlsplit(self.path)
                seen = Seen(self.command, parts.path, dict(urllib.parse.parse_qsl(parts.query)),
                            {k.lower(): v for k, v in self.headers.items()}, body)
                status, payload, headers = fake.handle(seen)
                if isinstance(payload, bytes):
                    data = payload
                else:
                    data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if payload is not None and "Content-Type" not in headers:
                    ctype = "application/problem+json" if status >= 400 else "application/json"
                    self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    # -- set-up helpers -------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{{dc}}/3.0"

    @property
    def oauth_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/login"

    def new_api_key(self) -> str:
        key = f"{secrets.token_hex(16)}-{self.dc}"
        self.api_keys.add(key)
        return key

    def revoke(self, key: str) -> None:
        self.api_keys.discard(key)

    def scope(self, key: str, list_ids: set[str]) -> None:
        """Let `key` see only these lists (others answer 404, as to a stranger)."""
        self.key_lists[key] = set(list_ids)

    def add_list(self, list_id: str, name: str, merge_fields: list[tuple[str, str, str]] | None = None) -> MList:
        fields = merge_fields or [("FNAME", "First Name", "text"), ("LNAME", "Last Name", "text")]
        mlist = MList(list_id, name, [{"merge_id": i + 1, "tag": t, "name": n, "type": ty}
                                      for i, (t, n, ty) in enumerate(fields)])
        self.lists[list_id] = mlist
        return mlist

    def add_member(self, list_id: str, email: str, *, status: str = "subscribed",
                   merge_fields: dict[str, Any] | None = None, tags: list[str] | None = None,
                   last_changed: str | None = None) -> Member:
        mlist = self.lists[list_id]
        m = Member(email, status, dict(merge_fields or {}), list(tags or []),
                   last_changed or iso(self.now()))
        for t in m.tags:
            mlist.tag_id(t)
        mlist.members[m.id] = m
        return m

    def tag(self, list_id: str, email: str, name: str) -> None:
        """Tag a member as a Mailchimp user would (its last_changed moves)."""
        mlist = self.lists[list_id]
        self._tags(mlist, mlist.members[subscriber_hash(email)], [{"name": name, "status": "active"}])

    def member(self, list_id: str, email: str) -> Member | None:
        return self.lists[list_id].members.get(subscriber_hash(email))

    def fail(self, status: int, times: int = 1, *, retry_after: str | None = None, path: str | None = None,
             method: str | None = None) -> None:
        """Answer the next `times` requests whose path contains `path` with `status`."""
        with self._lock:
            self.failures.append(Failure(status, times, retry_after, path, method))

    def stall(self, seconds: float, times: int = 1, *, path: str | None = None, method: str | None = None) -> None:
        """Answer the next `times` matching requests normally, `seconds` late (a timeout)."""
        with self._lock:
            self.failures.append(Failure(0, times, None, path, method, delay=seconds))

    def fail_operations(self, status: int, times: int = 1, *, path: str | None = None) -> None:
        """Make the next `times` batch operations whose path contains `path` end with `status`."""
        with self._lock:
            self.op_failures.append(Failure(status, times, None, path, None))

    def count(self) -> Counter[str]:
        """Requests by 'METHOD /path-shape' (ids replaced by {id})."""
        out: Counter[str] = Counter()
        for r in self.requests:
            segs = r.path.split("/")
            shape = "/".join("{id}" if i >= 5 and i % 2 == 0 else s for i, s in enumerate(segs))
            out[f"{r.method} {shape}"] += 1
        return out

    def start(self) -> FakeMailchimp:
        # Read the client's description before serving: the first request must not wait for
        # it (a test with a short read timeout would see a timeout the real API never gives).
        mailchimp_client.methods()
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeMailchimp:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- dispatch -------------------------------------------------------------------------

    def handle(self, r: Seen) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            late = self._stalled(r)
            answer = self._handle(r)
        if late:
            time.sleep(late)  # processed, answered late: outside the lock, other requests go on
        return answer

    def _handle(self, r: Seen) -> tuple[int, Any, dict[str, str]]:
        self.requests.append(r)
        try:
            self._injected(r)
            if r.path.startswith("/login/"):
                return self._oauth(r)
            if r.path.startswith(RESULTS_PATH):
                return self._results(r)
            return self._api(r)
        except Problem as p:
            doc: dict[str, Any] = {"type": ERROR_TYPE, "title": p.title, "status": p.status,
                                   "detail": p.detail, "instance": secrets.token_hex(8)}
            if p.errors:
                doc["errors"] = p.errors
            return p.status, doc, p.headers

    def _matching(self, r: Seen, stalls: bool) -> Failure | None:
        for f in self.failures:
            if (f.times > 0 and (f.status == 0) == stalls and (f.path is None or f.path in r.path)
                    and f.method in (None, r.method)):
                f.times -= 1
                return f
        return None

    def _stalled(self, r: Seen) -> float:
        f = self._matching(r, stalls=True)
        return f.delay if f is not None else 0.0

    def _injected(self, r: Seen) -> None:
        f = self._matching(r, stalls=False)
        if f is not None:
            headers = {"Retry-After": f.retry_after} if f.retry_after else {}
            titles = {429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}
            detail = ("You have exceeded the limit of 10 simultaneous connections."
                      if f.status == 429 else "An unexpected internal error has occurred.")
            raise Problem(f.status, titles.get(f.status, "Error"), detail, headers)

    def _authenticate(self, r: Seen, dc: str) -> None:
        value = r.headers.get("authorization", "")
        scheme, _, cred = value.partition(" ")
        ok = False
        self._caller = ""
        if scheme.lower() == "basic":
            try:
                _, _, key = base64.b64decode(cred).decode().partition(":")
            except ValueError:
                key = ""
            ok = key in self.api_keys and key.rsplit("-", 1)[-1] == dc
            self._caller = key
        elif scheme.lower() in ("bearer", "oauth"):
            ok = cred in self.tokens and dc == self.dc
        if not ok:
            raise Problem(401, "API Key Invalid",
                          "Your API key may be invalid, or you've attempted to access the wrong datacenter.")

    def _list(self, list_id: str) -> MList:
        mlist = self.lists.get(list_id)
        scoped = self.key_lists.get(self._caller)
        if mlist is None or (scoped is not None and list_id not in scoped):
            raise Problem(404, "Resource Not Found", "The requested resource could not be found.")
        return mlist

    def _api(self, r: Seen) -> tuple[int, Any, dict[str, str]]:
        segs = [s for s in r.path.split("/") if s]
        if len(segs) < 2 or segs[1] != "3.0":
            raise Problem(404, "Resource Not Found", "The requested resource could not be found.")
        dc, rest = segs[0], segs[2:]
        self._authenticate(r, dc)
        return self._call(r, rest)

    def _call(self, r: Seen, rest: list[str]) -> tuple[int, Any, dict[str, str]]:
        """An authenticated API request (or batch operation): checked against the client,
        served, then trimmed to its `fields` / `exclude_fields`."""
        try:
            body = json.loads(r.body) if r.body.strip() else None
        except ValueError:
            raise Problem(400, "JSON Parse Exception", "We encountered an unspecified JSON parsing error.") from None
        try:
            called = mailchimp_client.check(r.method, "/" + "/".join(rest), r.query, body)
        except mailchimp_client.Refused as exc:
            raise Problem(exc.status, exc.title, exc.detail) from None
        self.calls.append(called.id)
        status, payload, headers = self._route(r, rest)
        if isinstance(payload, dict) and status < 300:
            payload = trimmed(payload, r.query.get("fields"), r.query.get("exclude_fields"))
        return status, payload, headers

    def _route(self, r: Seen, rest: list[str]) -> tuple[int, Any, dict[str, str]]:
        m, q = r.method, r.query
        if m == "GET" and rest == ["ping"]:
            return 200, {"health_status": "Everything's Chimpy!"}, {}
        if m == "GET" and rest == []:
            return 200, {"account_id": self.account_id, "login_id": "1234", "account_name": self.account_name,
                         "email": "owner@acme.example", "role": "owner"}, {}
        if rest[:1] == ["lists"]:
            return self._lists(r, m, q, rest[1:])
        if rest[:1] == ["batches"]:
            return self._batches(r, m, rest[1:])
        raise self._unserved(r)

    @staticmethod
    def _unserved(r: Seen) -> Problem:
        # A request the client can send (it passed the check) but this fake does not serve:
        # say so, rather than answer as Mailchimp would not.
        return Problem(501, "Not Implemented", f"the fake Mailchimp does not serve {r.method} {r.path}")

    @staticmethod
    def _page(q: dict[str, str], default: int = 10) -> tuple[int, int]:
        try:
            count, offset = int(q.get("count", default)), int(q.get("offset", 0))
        except ValueError:
            raise Problem(400, "Invalid Resource", "count and offset must be integers") from None
        if count > 1000 or count < 0 or offset < 0:
            raise Problem(400, "Invalid Resource", "The count parameter may not exceed 1000.")
        return count, offset

    def _lists(self, r: Seen, m: str, q: dict[str, str], rest: list[str]) -> tuple[int, Any, dict[str, str]]:
        if not rest and m == "GET":
            count, offset = self._page(q)
            all_ = sorted(self.lists.values(), key=lambda x: x.id)
            page = [{"id": x.id, "name": x.name, "stats": {"member_count": len(x.members)}}
                    for x in all_[offset:offset + count]]
            return 200, {"lists": page, "total_items": len(all_)}, {}
        mlist = self._list(rest[0])
        sub = rest[1:]
        if not sub and m == "GET":
            return 200, {"id": mlist.id, "name": mlist.name, "stats": {"member_count": len(mlist.members)}}, {}
        if not sub and m == "POST":
            return 200, self._batch_subscribe(mlist, _json(r.body)), {}
        if sub == ["merge-fields"] and m == "GET":
            count, offset = self._page(q)
            return 200, {"merge_fields": mlist.merge_fields[offset:offset + count], "list_id": mlist.id,
                         "total_items": len(mlist.merge_fields)}, {}
        if sub == ["tag-search"] and m == "GET":
            name = q.get("name", "").lower()
            tags = [{"id": i, "name": n} for n, i in sorted(mlist.tag_ids.items()) if name in n.lower()]
            return 200, {"tags": tags, "total_items": len(tags)}, {}
        if sub == ["members"] and m == "GET":
            return 200, self._members(mlist, q), {}
        if len(sub) == 2 and sub[0] == "members":
            return self._member(mlist, m, sub[1], _json(r.body) if r.body else {})
        if len(sub) == 3 and sub[0] == "members" and sub[2] == "tags" and m == "POST":
            member = mlist.members.get(sub[1])
            if member is None:
                raise Problem(404, "Resource Not Found", "The requested resource could not be found.")
            self._tags(mlist, member, _json(r.body).get("tags") or [])
            return 204, None, {}
        raise self._unserved(r)

    def _members(self, mlist: MList, q: dict[str, str]) -> dict[str, Any]:
        count, offset = self._page(q)
        rows = list(mlist.members.values())
        if q.get("since_last_changed"):
            since = parse_time(q["since_last_changed"])
            rows = [x for x in rows if parse_time(x.last_changed) > since]
        if q.get("before_last_changed"):
            before = parse_time(q["before_last_changed"])
            rows = [x for x in rows if parse_time(x.last_changed) < before]
        if q.get("sort_field") == "last_changed":
            rows.sort(key=lambda x: (x.last_changed, x.id), reverse=q.get("sort_dir") == "DESC")
        else:
            rows.sort(key=lambda x: x.id)
        page = [x.to_json(mlist.tag_ids) | {"list_id": mlist.id} for x in rows[offset:offset + count]]
        return {"members": page, "list_id": mlist.id, "total_items": len(rows)}

    def _check_email(self, email: Any) -> str:
        if not isinstance(email, str) or "@" not in email or email.strip().lower().endswith(".invalid"):
            raise Problem(400, "Invalid Resource",
                          f"{email} looks fake or invalid, please enter a real email address.")
        return email.strip()

    def _upsert(self, mlist: MList, body: dict[str, Any], *, status_new: str | None,
                status_existing: str | None) -> tuple[Member, bool]:
        email = self._check_email(body.get("email_address"))
        h = subscriber_hash(email)
        member = mlist.members.get(h)
        merge = body.get("merge_fields") or {}
        unknown = [k for k in merge if k not in {f["tag"] for f in mlist.merge_fields}]
        if unknown:
            raise Problem(400, "Invalid Resource", "Your merge fields were invalid.",
                          errors=[{"field": f"merge_fields.{k}", "message": "unknown merge field"} for k in unknown])
        now = iso(self.now())
        if member is None:
            if status_new not in ("subscribed", "unsubscribed", "pending", "cleaned", "transactional"):
                raise Problem(400, "Invalid Resource", "The resource submitted could not be validated.",
                              errors=[{"field": "status", "message": "required for new members"}])
            member = Member(email, status_new, dict(merge), [], now)
            mlist.members[h] = member
            return member, True
        if status_existing and status_existing != member.status:
            if status_existing in ("subscribed", "pending") and member.status in ("unsubscribed", "cleaned"):
                raise Problem(400, "Member In Compliance State",
                              f"{email} is already a list member in compliance state due to unsubscribe, "
                              "bounce, or compliance review.")
            member.status = status_existing
            member.last_changed = now
        if merge and any(member.merge_fields.get(k) != v for k, v in merge.items()):
            member.merge_fields.update(merge)
            member.last_changed = now
        return member, False

    def _member(self, mlist: MList, m: str, h: str, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        if m == "GET":
            member = mlist.members.get(h)
            if member is None:
                raise Problem(404, "Resource Not Found", "The requested resource could not be found.")
            return 200, member.to_json(mlist.tag_ids) | {"list_id": mlist.id}, {}
        if m == "PUT":
            email = self._check_email(body.get("email_address"))
            if subscriber_hash(email) != h:
                raise Problem(400, "Invalid Resource",
                              "The resource submitted could not be validated: the subscriber hash does not "
                              "match the email address.")
            member, _ = self._upsert(mlist, body, status_new=body.get("status_if_new") or body.get("status"),
                                     status_existing=body.get("status"))
            return 200, member.to_json(mlist.tag_ids) | {"list_id": mlist.id}, {}
        raise Problem(501, "Not Implemented", f"the fake Mailchimp does not serve {m} on a member")

    def _tags(self, mlist: MList, member: Member, tags: list[dict[str, Any]]) -> None:
        changed = False
        for t in tags:
            name, status = str(t.get("name") or ""), t.get("status")
            if status == "active" and name not in member.tags:
                member.tags.append(name)
                mlist.tag_id(name)
                changed = True
            elif status == "inactive" and name in member.tags:
                member.tags.remove(name)
                changed = True
        if changed:
            member.last_changed = iso(self.now())

    def _batch_subscribe(self, mlist: MList, body: dict[str, Any]) -> dict[str, Any]:
        members = body.get("members") or []
        if len(members) > 500:
            raise Problem(400, "Invalid Resource", "You may only send up to 500 members in one batch.")
        update = bool(body.get("update_existing"))
        new, updated, errors = [], [], []
        for item in members:
            email = item.get("email_address")
            existing = isinstance(email, str) and mlist.members.get(subscriber_hash(email))
            if existing and not update:
                errors.append({"email_address": email, "error": f"{email} is already a list member",
                               "error_code": "ERROR_CONTACT_EXISTS"})
                continue
            try:
                member, created = self._upsert(mlist, item, status_new=item.get("status"),
                                               status_existing=item.get("status") if update else None)
            except Problem as p:
                errors.append({"email_address": str(email), "error": p.detail, "error_code": "ERROR_GENERIC"})
                continue
            (new if created else updated).append({"id": member.id, "email_address": member.email_address,
                                                  "status": member.status})
        return {"new_members": new, "updated_members": updated, "errors": errors,
                "total_created": len(new), "total_updated": len(updated), "error_count": len(errors)}

    def _batches(self, r: Seen, m: str, rest: list[str]) -> tuple[int, Any, dict[str, str]]:
        if not rest and m == "POST":
            ops = _json(r.body).get("operations") or []
            batch_id = secrets.token_hex(5)
            results = [self._operation(r, op) for op in ops]
            batch = {"id": batch_id, "status": "pending", "total_operations": len(ops),
                     "finished_operations": 0, "errored_operations": 0, "_results": results, "_polls": 0,
                     "submitted_at": iso(self.now()), "completed_at": "", "response_body_url": ""}
            self.batches[batch_id] = batch
            return 200, _public(batch), {}
        if len(rest) == 1 and m == "GET":
            batch = self.batches.get(rest[0])
            if batch is None:
                raise Problem(404, "Resource Not Found", "The requested resource could not be found.")
            batch["_polls"] += 1
            if batch["_polls"] >= self.batch_polls:
                results = batch["_results"]
                # Like a presigned storage URL: its own credential in the query, fresh at each read.
                signature = secrets.token_hex(16)
                batch["_signature"] = signature
                batch.update(status="finished", finished_operations=len(results),
                             errored_operations=sum(1 for x in results if x["status_code"] >= 400),
                             completed_at=iso(self.now()),
                             response_body_url=f"http://127.0.0.1:{self.port}{RESULTS_PATH}{batch['id']}.tar.gz"
                                               f"?X-Amz-Expires=600&X-Amz-Signature={signature}")
            else:
                batch["status"] = "started"
            return 200, _public(batch), {}
        raise self._unserved(r)

    def _operation(self, r: Seen, op: dict[str, Any]) -> dict[str, Any]:
        """Run one batch operation as the request it describes; its result as the archive has it."""
        params = op.get("params") or {}
        seen = Seen(str(op.get("method", "GET")).upper(), str(op.get("path", "")),
                    {str(k): str(v) for k, v in params.items()}, r.headers, str(op.get("body") or "").encode())
        try:
            f = next((x for x in self.op_failures if x.times > 0 and (x.path is None or x.path in seen.path)), None)
            if f is not None:
                f.times -= 1
                raise Problem(f.status, "Error", "An unexpected internal error has occurred."
                              if f.status >= 500 else "The resource submitted could not be validated.")
            status, payload, _ = self._call(seen, [s for s in seen.path.split("/") if s])
        except Problem as p:
            status, payload = p.status, {"type": ERROR_TYPE, "title": p.title, "status": p.status,
                                         "detail": p.detail, "instance": secrets.token_hex(8)}
            if p.errors:
                payload["errors"] = p.errors
        return {"status_code": status, "operation_id": op.get("operation_id"),
                "response": json.dumps(payload) if payload is not None else ""}

    def _results(self, r: Seen) -> tuple[int, Any, dict[str, str]]:
        """The storage that serves a batch's results (no Mailchimp credentials: the URL is one)."""
        xml = {"Content-Type": "application/xml"}
        if r.headers.get("authorization"):
            return 400, (b"<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed"
                         b"</Message></Error>"), xml
        batch_id = r.path[len(RESULTS_PATH):].removesuffix(".tar.gz")
        batch = self.batches.get(batch_id)
        if batch is None or r.method != "GET" or not batch.get("_signature") \
                or r.query.get("X-Amz-Signature") != batch["_signature"]:
            return 403, b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>", xml
        if self.results_expired:
            return 403, b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>", xml
        return 200, results_archive(batch_id, batch["_results"], self.results_per_file), \
            {"Content-Type": "application/x-gzip"}

    # -- OAuth ----------------------------------------------------------------------------

    def _oauth(self, r: Seen) -> tuple[int, Any, dict[str, str]]:
        path = r.path[len("/login"):]
        if path == "/oauth2/authorize" and r.method == "GET":
            q = r.query
            if q.get("client_id") != self.client_id or q.get("response_type") != "code":
                return 400, {"error": "invalid_request"}, {}
            code = secrets.token_hex(12)
            self.codes[code] = q.get("redirect_uri", "")
            self.challenges[code] = (q.get("code_challenge", ""), q.get("code_challenge_method", ""))
            sep = "&" if "?" in q.get("redirect_uri", "") else "?"
            location = q.get("redirect_uri", "") + sep + urllib.parse.urlencode(
                {"code": code, "state": q.get("state", "")})
            return 302, None, {"Location": location}
        if path == "/oauth2/token" and r.method == "POST":
            form = dict(urllib.parse.parse_qsl(r.body.decode()))
            auth = r.headers.get("authorization", "")
            if auth.lower().startswith("basic "):
                cid, _, csec = base64.b64decode(auth[6:]).decode().partition(":")
                form.setdefault("client_id", urllib.parse.unquote_plus(cid))
                form.setdefault("client_secret", urllib.parse.unquote_plus(csec))
            if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
                return 401, {"error": "invalid_client", "error_description": "client authentication failed"}, {}
            code = form.get("code", "")
            if form.get("grant_type") != "authorization_code" or code not in self.codes \
                    or self.codes[code] != form.get("redirect_uri"):
                return 400, {"error": "invalid_grant", "error_description": "Invalid authorization code"}, {}
            if not pkce_ok(*self.challenges.get(code, ("", "")), form.get("code_verifier", "")):
                return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}, {}
            del self.codes[code]  # single use
            self.tokens.add(self.oauth_token)
            return 200, {"access_token": self.oauth_token, "expires_in": 0, "scope": None}, {}
        if path == "/oauth2/metadata" and r.method == "GET":
            scheme, _, token = r.headers.get("authorization", "").partition(" ")
            if scheme.lower() not in ("oauth", "bearer") or token not in self.tokens:
                return 401, {"error": "invalid_token", "error_description": "Invalid token"}, {}
            return 200, {"dc": self.dc, "role": "owner", "accountname": self.account_name, "user_id": 1234,
                         "login": {"email": "owner@acme.example", "login_id": 1234, "login_name": "owner"},
                         "login_url": "https://login.mailchimp.com",
                         "api_endpoint": f"https://{self.dc}.api.mailchimp.com"}, {}
        return 404, {"error": "not_found"}, {}


def _json(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        raise Problem(400, "JSON Parse Exception", "We encountered an unspecified JSON parsing error.") from None
    if not isinstance(doc, dict):
        raise Problem(400, "JSON Parse Exception", "The request body must be a JSON object.")
    return doc


def results_archive(batch_id: str, results: list[dict[str, Any]], per_file: int) -> bytes:
    """A gzipped tar of JSON files, each an array of operation results."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        folder = tarfile.TarInfo(batch_id)
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for n, start in enumerate(range(0, len(results), max(1, per_file))):
            data = json.dumps(results[start:start + per_file]).encode()
            info = tarfile.TarInfo(f"{batch_id}/{secrets.token_hex(8)}-{n}.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def trimmed(doc: dict[str, Any], fields: str | None, exclude: str | None) -> dict[str, Any]:
    """The answer with only `fields` (comma-separated dot paths; a path into an array applies
    to each item), then without `exclude_fields`."""
    out: Any = copy.deepcopy(doc)  # answers may share the fake's own state
    if fields:
        out = _only(doc, [f.strip().split(".") for f in fields.split(",") if f.strip()])
    for path in (exclude or "").split(","):
        if path.strip():
            _drop(out, path.strip().split("."))
    return dict(out)


def _only(value: Any, paths: list[list[str]]) -> Any:
    if isinstance(value, list):
        return [_only(v, paths) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key in dict.fromkeys(p[0] for p in paths):
        if key not in value:
            continue
        rests = [p[1:] for p in paths if p[0] == key]
        out[key] = value[key] if any(not r for r in rests) else _only(value[key], rests)
    return out


def _drop(value: Any, path: list[str]) -> None:
    if isinstance(value, list):
        for v in value:
            _drop(v, path)
    elif isinstance(value, dict) and path[0] in value:
        if len(path) == 1:
            del value[path[0]]
        else:
            _drop(value[path[0]], path[1:])


def _public(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in batch.items() if not k.startswith("_")}


__all__ = ["FakeMailchimp", "Member", "subscriber_hash"]
