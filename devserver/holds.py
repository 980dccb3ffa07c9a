"""Holds: a test-only brake on the local event loop's SQS deliveries.

A test that must see a state "while a run runs" (a progress bar, a badge) cannot wait for it
on a fast machine: the run may be over before anyone looks. A hold parks the messages of one
queue whose JSON body matches given fields (one job's run steps: `{"job_id": ...}`) until the
holder lets them go, one at a time or all at once. The app is unchanged: it only sees its
next step delivered later, as a slow SQS poll would.

Enabled only when `SWITCHYARD_DEV_CONTROL=1` (the browser tests set it). The devserver then
answers, on its own origin under `/__devserver/` (the Chalice app only serves `/api`):

* `POST /__devserver/holds` `{"queue": "switchyard-runs", "match": {"job_id": "..."}}` → 201, the hold
* `GET /__devserver/holds` → every hold; `GET /__devserver/holds/<id>` → one
* `GET /__devserver/holds/<id>?until=parked&timeout=<s>` → waits until a message is parked
  and nothing released is still in flight (the run committed its step and the next one waits)
* `GET /__devserver/holds/<id>?until=delivered&count=<n>&timeout=<s>` → waits until n
  released messages were handled and none is in flight
* `POST /__devserver/holds/<id>/release` `{"count": n}` (the next n messages) or `{"all": true}`
* `DELETE /__devserver/holds/<id>` → lets everything go and forgets the hold

A wait that is not met answers 504 with the hold's state, so a test fails with what it saw.
Parked messages stay invisible on the queue (a long visibility timeout, renewed if SQS hands
one out again), so the app's queue behaves as in AWS meanwhile.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

ENV_FLAG = "SWITCHYARD_DEV_CONTROL"
PREFIX = "/__devserver"
PARK_SECONDS = 43_200  # SQS's longest visibility timeout: a parked message stays parked
MAX_WAIT_SECONDS = 600.0
Message = dict[str, Any]


def enabled(environ: dict[str, str]) -> bool:
    return environ.get(ENV_FLAG, "").strip().lower() in ("1", "true", "yes")


class ControlError(Exception):
    def __init__(self, status: int, code: str, message: str, field_name: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.field = status, code, field_name

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": str(self),
                          "fields": {self.field: str(self)} if self.field else {}, "details": {}}}


@dataclass
class Hold:
    id: str
    queue: str | None
    match: dict[str, str]
    allowance: int = 0  # messages still allowed through by releases
    open: bool = False  # released for good
    removed: bool = False  # forgotten once nothing it let go is in flight
    # (queue, message) by MessageId, in arrival order; then released, not yet taken by the poller
    parked: dict[str, tuple[str, Message]] = field(default_factory=dict)
    ready: list[tuple[str, Message]] = field(default_factory=list)
    in_flight: int = 0  # passed (ready included) and not yet handled
    delivered: int = 0  # passed and handled (whatever the handler answered)

    def matches(self, queue: str, body: Any) -> bool:
        if self.removed or (self.queue is not None and self.queue != queue):
            return False
        return isinstance(body, dict) and all(str(body.get(k)) == v for k, v in self.match.items())

    def is_parked(self) -> bool:
        return bool(self.parked) and not self.in_flight and not self.allowance and not self.open

    def state(self) -> dict[str, Any]:
        return {"id": self.id, "queue": self.queue, "match": self.match, "parked": len(self.parked),
                "in_flight": self.in_flight, "delivered": self.delivered, "allowance": self.allowance,
                "open": self.open, "is_parked": self.is_parked()}


def _body(message: Message) -> Any:
    try:
        return json.loads(message.get("Body") or "")
    except ValueError:
        return None


class Holds:
    """The holds of one devserver; the event loop screens each received batch through it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._holds: dict[str, Hold] = {}
        self._tracked: Counter[tuple[str, str]] = Counter()  # (hold id, MessageId) passed, in flight

    # -- the event loop's side -------------------------------------------------------------

    def screen(self, queue: str, messages: list[Message]) -> tuple[list[Message], list[Message]]:
        """(deliver now, parked): the parked ones the loop makes invisible for PARK_SECONDS."""
        deliver, parked = [], []
        with self._cond:
            for m in messages:
                hold = self._hold_for(queue, m)
                if hold is None:
                    deliver.append(m)
                elif hold.open or hold.allowance > 0:
                    if not hold.open:
                        hold.allowance -= 1
                    self._pass(hold, m)
                    deliver.append(m)
                else:
                    # A message SQS handed out again replaces its older receipt.
                    hold.parked[m["MessageId"]] = (queue, m)
                    parked.append(m)
            self._cond.notify_all()
        return deliver, parked

    def take_ready(self, queue: str, limit: int) -> list[Message]:
        """Released messages of this queue, for the poller to deliver (already in flight)."""
        taken: list[Message] = []
        with self._cond:
            for hold in self._holds.values():
                mine = [entry for entry in hold.ready if entry[0] == queue][: limit - len(taken)]
                hold.ready = [entry for entry in hold.ready if entry not in mine]
                taken += [m for _, m in mine]
        return taken

    def finished(self, messages: list[Message]) -> None:
        """The handler is done with these (delivered ones and failed ones alike)."""
        with self._cond:
            for m in messages:
                for hold in self._holds.values():
                    key = (hold.id, m["MessageId"])
                    if self._tracked[key] > 0:
                        self._tracked[key] -= 1
                        hold.in_flight -= 1
                        hold.delivered += 1
                        break
            self._forget_removed()
            self._cond.notify_all()

    def _hold_for(self, queue: str, message: Message) -> Hold | None:
        body = _body(message)
        return next((h for h in self._holds.values() if h.matches(queue, body)), None)

    def _forget_removed(self) -> None:
        for hold in [h for h in self._holds.values() if h.removed and not h.in_flight]:
            del self._holds[hold.id]

    def _pass(self, hold: Hold, message: Message) -> None:
        self._tracked[(hold.id, message["MessageId"])] += 1
        hold.in_flight += 1

    def _let_go(self, hold: Hold, count: int | None) -> None:
        ids = list(hold.parked)[:count] if count is not None else list(hold.parked)
        for mid in ids:
            queue, m = hold.parked.pop(mid)
            self._pass(hold, m)
            hold.ready.append((queue, m))
        if count is not None:
            hold.allowance += count - len(ids)

    # -- the holder's side -----------------------------------------------------------------

    def add(self, queue: str | None, match: dict[str, str]) -> Hold:
        hold = Hold(f"hold-{uuid.uuid4().hex[:12]}", queue, match)
        with self._cond:
            self._holds[hold.id] = hold
        return hold

    def release(self, hold_id: str, count: int | None) -> dict[str, Any]:
        """Let the next `count` messages through, or every one (`None`) from now on."""
        with self._cond:
            hold = self._get(hold_id)
            self._let_go(hold, count)
            if count is None:
                hold.open, hold.allowance = True, 0
            self._cond.notify_all()
            return hold.state()

    def remove(self, hold_id: str) -> None:
        """Let everything go; the hold is forgotten once what it let go was handled."""
        with self._cond:
            hold = self._get(hold_id)
            self._let_go(hold, None)
            hold.open = hold.removed = True
            self._forget_removed()
            self._cond.notify_all()

    def state(self, hold_id: str) -> dict[str, Any]:
        with self._cond:
            return self._get(hold_id).state()

    def wait(self, hold_id: str, until: Callable[[Hold], bool], timeout: float) -> tuple[bool, dict[str, Any]]:
        with self._cond:
            hold = self._get(hold_id)
            met = self._cond.wait_for(lambda: until(hold), timeout=timeout)
            return met, hold.state()

    def _get(self, hold_id: str) -> Hold:
        hold = self._holds.get(hold_id)
        if hold is None or hold.removed:
            raise ControlError(404, "hold.not_found", f"no hold {hold_id!r}")
        return hold

    # -- HTTP ------------------------------------------------------------------------------

    def control(self, method: str, path: str, query: str, raw: bytes) -> tuple[int, dict[str, Any] | None]:
        """Answer one request under PREFIX: (status, JSON body or None)."""
        try:
            return self._control(method, path[len(PREFIX):].rstrip("/"), parse_qs(query), raw)
        except ControlError as exc:
            return exc.status, exc.body()

    def _control(self, method: str, path: str, query: dict[str, list[str]],
                 raw: bytes) -> tuple[int, dict[str, Any] | None]:
        parts = path.strip("/").split("/")
        if parts[0] != "holds" or len(parts) > 3 or (len(parts) == 3 and parts[2] != "release"):
            raise ControlError(404, "route.not_found", f"no such route: {method} {PREFIX}{path}")
        if len(parts) == 1:
            if method == "GET":
                with self._cond:
                    return 200, {"data": [h.state() for h in self._holds.values() if not h.removed]}
            if method == "POST":
                queue, match = _parse_new(_json(raw))
                return 201, {"data": self.add(queue, match).state()}
        elif len(parts) == 2:
            if method == "GET":
                return self._get_or_wait(parts[1], query)
            if method == "DELETE":
                self.remove(parts[1])
                return 204, None
        elif method == "POST":
            return 200, {"data": self.release(parts[1], _parse_release(_json(raw)))}
        raise ControlError(405, "method.not_allowed", f"{method} is not allowed on {PREFIX}{path}")

    def _get_or_wait(self, hold_id: str, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        until = _one(query, "until")
        if until is None:
            return 200, {"data": self.state(hold_id)}
        timeout = _number(_one(query, "timeout") or "30", "timeout", MAX_WAIT_SECONDS)
        if until == "parked":
            met, state = self.wait(hold_id, Hold.is_parked, timeout)
        elif until == "delivered":
            count = int(_number(_one(query, "count") or "", "count", 1e9))
            met, state = self.wait(hold_id, lambda h: h.delivered >= count and not h.in_flight, timeout)
        else:
            raise ControlError(400, "request.invalid", "until must be 'parked' or 'delivered'", "until")
        if not met:
            return 504, {"error": {"code": "hold.wait_timeout", "message": f"not {until} within {timeout:g} s",
                                   "fields": {}, "details": state}}
        return 200, {"data": state}


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"{}")
    except ValueError:
        raise ControlError(400, "request.invalid_json", "the body is not JSON") from None


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _number(text: str, name: str, most: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ControlError(400, "request.invalid", f"{name} must be a number", name) from None
    if not 0 <= value <= most:
        raise ControlError(400, "request.invalid", f"{name} must be between 0 and {most:g}", name)
    return value


def _parse_new(body: Any) -> tuple[str | None, dict[str, str]]:
    if not isinstance(body, dict):
        raise ControlError(400, "request.invalid", "the body must be a JSON object")
    queue = body.get("queue")
    if queue is not None and (not isinstance(queue, str) or not queue):
        raise ControlError(400, "request.invalid", "queue must be a queue name", "queue")
    match = body.get("match")
    if not isinstance(match, dict) or not match or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in match.items()):
        raise ControlError(400, "request.invalid",
                           "match must be an object of body fields and their text values, e.g. {\"job_id\": \"...\"}",
                           "match")
    return queue, match


def _parse_release(body: Any) -> int | None:
    if not isinstance(body, dict):
        raise ControlError(400, "request.invalid", "the body must be a JSON object")
    if body.get("all") is True and "count" not in body:
        return None
    count = body.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ControlError(400, "request.invalid", "send {\"count\": n} (n ≥ 1) or {\"all\": true}", "count")
    return count
