"""A fake FullContact Person Enrich API: a real local HTTP server (tests/http_receiver.py)
answering the documented shapes.

`POST /v3/person.enrich` with `Authorization: Bearer <key>` and `{"email": ...}` or
`{"emails": [...]}`:

* 200 with the person's JSON (`fullName`, `ageRange`, `location`, `title`,
  `organization`, `linkedin`, `twitter`, `details`, ...) when one of the emails is known;
* 404 `{"status": 404, "message": ...}` when none is;
* 401 for a key it does not know, 403 for a key it was told is over its quota;
* 400 for a body without an email;
* 202 `{"status": 202, "message": ...}` for a person `queue()`d: FullContact has not seen
  the query before and is searching; the same query later answers 200 (or 404);
* 429 with `Retry-After` and the legacy `X-Rate-Limit-*` headers for the next requests
  `throttle()` asked for; `throttle(retry_after=None)` answers 429 with neither (FullContact
  documents the 429 without promising a Retry-After).

It records every request (`requests`), so tests count calls and check headers and bodies.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from tests.http_receiver import Answer, Received, Receiver

PATH = "/v3/person.enrich"


def person(email: str, **extra: Any) -> dict[str, Any]:
    """A person as FullContact describes one (a subset of its fields)."""
    name = email.split("@")[0].replace(".", " ").title()
    doc = {
        "fullName": name,
        "ageRange": "30-39",
        "gender": "Female",
        "location": "Denver, Colorado, United States",
        "title": "Engineer",
        "organization": "Acme",
        "twitter": f"https://twitter.com/{email.split('@')[0]}",
        "linkedin": f"https://www.linkedin.com/in/{email.split('@')[0]}",
        "bio": None,
        "avatar": None,
        "details": {"name": {"given": name.split(" ")[0], "family": "Doe"},
                    "employment": [{"name": "Acme", "title": "Engineer", "current": True}]},
        "updated": "2026-01-01",
    }
    doc.update(extra)
    return doc


class FakeFullContact:
    def __init__(self, keys: set[str]) -> None:
        self.keys = set(keys)
        self.over_quota: set[str] = set()
        self.people: dict[str, dict[str, Any]] = {}
        self._throttle: list[int | None] = []  # Retry-After seconds of the next 429 answers
        self.searching: set[str] = set()  # emails whose next lookup answers 202
        self._lock = threading.Lock()
        self.receiver = Receiver(handler=self._handle)

    # -- scripting -------------------------------------------------------------------------

    def know(self, email: str, **extra: Any) -> dict[str, Any]:
        self.people[email.lower()] = person(email, **extra)
        return self.people[email.lower()]

    def queue(self, email: str) -> None:
        """The next lookup of `email` answers 202 (searching); later ones find the person."""
        self.searching.add(email.lower())

    def throttle(self, times: int = 1, retry_after: int | None = 1) -> None:
        with self._lock:
            self._throttle += [retry_after] * times

    @property
    def base_url(self) -> str:
        return self.receiver.url("").rstrip("/")

    @property
    def requests(self) -> list[Received]:
        return self.receiver.requests

    def lookups(self) -> list[Received]:
        return [r for r in self.requests if r.path == PATH]

    # -- the API ---------------------------------------------------------------------------

    def _handle(self, req: Received) -> Answer:
        if req.method != "POST" or req.path != PATH:
            return Answer(404, {"status": 404, "message": "Not found"})
        auth = req.headers.get("authorization", "")
        key = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
        if key not in self.keys:
            return Answer(401, {"status": 401, "message": "Invalid access token"})
        if key in self.over_quota:
            return Answer(403, {"status": 403, "message": "Usage limit exceeded for this API key"})
        with self._lock:
            throttled, wait = (True, self._throttle.pop(0)) if self._throttle else (False, None)
        if throttled and wait is None:
            return Answer(429, {"status": 429, "message": "Too many requests"})
        if wait is not None:
            return Answer(429, {"status": 429, "message": "Too many requests"},
                          headers={"Retry-After": str(wait), "X-Rate-Limit": "600",
                                   "X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": str(wait)})
        try:
            body = json.loads(req.body or b"{}")
        except ValueError:
            return Answer(400, {"status": 400, "message": "Request body is not valid JSON"})
        emails = body.get("emails") or ([body["email"]] if body.get("email") else [])
        if not emails or not all(isinstance(e, str) and "@" in e for e in emails):
            return Answer(422, {"status": 422, "message": "Invalid email address"})
        with self._lock:
            queued = [e for e in emails if e.lower() in self.searching]
            self.searching -= {e.lower() for e in queued}
        if queued:
            return Answer(202, {"status": 202, "message": "Queued for search. Please retry your query later."})
        for email in emails:
            found = self.people.get(email.lower())
            if found is not None:
                return Answer(200, found, headers={"X-FullContact-RateDelay": "0"})
        return Answer(404, {"status": 404, "message": "Profile not found"})

    def __enter__(self) -> FakeFullContact:
        self.receiver.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.receiver.stop()
