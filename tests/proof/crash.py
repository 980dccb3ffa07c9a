"""A crash injector for the proof suite (tests/proof/test_crash_redelivery.py).

The runner is "killed" at the k-th outside call of one delivery: an AWS API call (botocore's
`before-call` / `after-call` events on the app's session and the providers' session) or a
provider HTTP attempt (`HttpClient._attempt`), either before the call left (it never took
effect) or after it came back (it took effect, the answer is lost), or at the very end,
after the handler returned but before SQS was told (the message comes back although its
work is done). After a kill the process is dead: every later call of that delivery raises
too (threads included), so nothing the app might catch lets it carry on.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

ACK = "sqs.DeleteMessage (ack)"


class Killed(BaseException):
    """The runner's process died here. A BaseException, like SystemExit: no `except
    Exception` in the app can swallow it."""


@dataclass
class KillPoint:
    kind: str
    call: str
    phase: str  # before | after | ack


@dataclass
class Injector:
    rng: random.Random
    points: list[KillPoint] = field(default_factory=list)
    calls_seen: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _active: bool = False
    _armed_at: int | None = None
    _phase: str = "before"
    _calls: int = 0
    _dead: bool = False
    _kind: str = ""
    _max_calls: dict[str, int] = field(default_factory=dict)
    _ack_armed: bool = False

    # -- one delivery -------------------------------------------------------------------

    @contextmanager
    def delivery(self, kind: str, kill: bool, horizon: int | None = None, *, at_ack: bool = False) -> Iterator[None]:
        """Wrap one handler invocation. With `kill`, the runner dies at slot k, drawn uniformly
        up to `horizon`, by default the most calls a delivery of this kind made so far (+ 1
        for the ack). With `at_ack` it dies at the ack, for sure: its work all done, the
        answer lost."""
        if horizon is None:
            horizon = max(self._max_calls.get(kind, 8), 4) + 1
        with self._lock:
            self._kind, self._calls, self._dead, self._active = kind, 0, False, True
            self._armed_at = self.rng.randint(1, horizon) if kill else None
            self._ack_armed = at_ack
            self._phase = self.rng.choice(("before", "after"))
        try:
            yield
        finally:
            with self._lock:
                self._active = self._ack_armed = False
                self._max_calls[kind] = max(self._max_calls.get(kind, 0), self._calls)

    def ack(self) -> None:
        """The handler returned: the Lambda runtime deletes the message now (unless the
        kill was drawn for this moment)."""
        with self._lock:
            if self._dead:
                raise Killed("already dead")
            # The ack is the slot after the delivery's last call; a draw past it finds the
            # delivery over and spares it (so every slot of a delivery is equally likely).
            if self._ack_armed or (self._armed_at is not None and self._armed_at == self._calls + 1):
                self._armed_at, self._ack_armed = None, False
                self.points.append(KillPoint(self._kind, ACK, "ack"))
                self._dead = True
                raise Killed("killed before the message was deleted")

    @property
    def dead(self) -> bool:
        return self._dead

    def hit(self, call: str, phase: str) -> None:
        with self._lock:
            if not self._active:
                return
            if self._dead:
                raise Killed("the process is gone")
            if phase == "before":
                self._calls += 1
                self.calls_seen[call] += 1
            if self._armed_at == self._calls and phase == self._phase:
                self._armed_at = None
                self._dead = True
                self.points.append(KillPoint(self._kind, call, phase))
                raise Killed(f"killed {phase} {call}")

    # -- hooks ------------------------------------------------------------------------------

    def _before_call(self, event_name: str = "", **_: Any) -> None:
        self.hit(_aws_name(event_name), "before")

    def _after_call(self, event_name: str = "", **_: Any) -> None:
        self.hit(_aws_name(event_name), "after")

    @contextmanager
    def installed(self, monkeypatch: Any) -> Iterator[Injector]:
        """Hook every AWS client the app and the providers create from now on, and every
        provider HTTP attempt; forget the hooked clients afterwards."""
        from chalicelib.providers import calls
        from chalicelib.providers import http as H
        from chalicelib.store import aws

        aws.reset()
        calls.reset()
        for session in (aws.session(), calls.shared_session()):
            session.events.register("before-call", self._before_call, unique_id="proof-crash-before")
            session.events.register("after-call", self._after_call, unique_id="proof-crash-after")
        original = H.HttpClient._attempt
        injector = self

        def attempt(client: Any, target: Any, n: int, method: str, *args: Any, **kw: Any) -> Any:
            name = f"http.{client.provider}.{method}"
            injector.hit(name, "before")
            result = original(client, target, n, method, *args, **kw)
            injector.hit(name, "after")
            return result

        monkeypatch.setattr(H.HttpClient, "_attempt", attempt)
        try:
            yield self
        finally:
            monkeypatch.setattr(H.HttpClient, "_attempt", original)
            aws.reset()
            calls.reset()


def _aws_name(event_name: str) -> str:
    # "before-call.dynamodb.TransactWriteItems" -> "dynamodb.TransactWriteItems"
    parts = event_name.split(".")
    return ".".join(parts[1:3]) if len(parts) >= 3 else event_name


@contextmanager
def killed_at_put_events(phase: str) -> Iterator[list[str]]:
    """The process (runner, checker, evaluator) dies at its first PutEvents: `before` the
    event left, or `after` EventBridge took it (the answer is lost)."""
    fired: list[str] = []

    def kill(event_name: str = "", **_: Any) -> None:
        if not fired:
            fired.append(event_name)
            raise Killed(f"killed {phase} PutEvents")

    from chalicelib.store import aws

    aws.reset()  # clients copy the session's hooks when they are made
    session = aws.session()
    session.events.register(f"{phase}-call.events.PutEvents", kill, unique_id="put-events-kill")
    try:
        yield fired
    finally:
        session.events.unregister(f"{phase}-call.events.PutEvents", unique_id="put-events-kill")
        aws.reset()


class Clock:
    """`time` for chalicelib.store.runs: the run lease compares against it. Advancing it
    stands for waiting out a lease a dead delivery left behind (SQS redelivers after its
    visibility timeout; the lease lapses meanwhile)."""

    def __init__(self) -> None:
        import time

        self._time = time
        self.offset = 0.0

    def time(self) -> float:
        return self._time.time() + self.offset

    def __getattr__(self, name: str) -> Any:
        return getattr(self._time, name)
