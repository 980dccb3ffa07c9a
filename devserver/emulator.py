"""moto's AWS emulation on loopback, with the two DynamoDB guarantees moto leaves out.

moto applies a DynamoDB request in Python with no lock. A TransactWriteItems deep-copies
whole tables while another thread may be writing to them ("dictionary changed size during
iteration", a 500), and a conditional write checks and then writes with room for another
request in between. Real DynamoDB applies each request atomically, so `AtomicDynamoDB`
applies one DynamoDB request at a time; other services stay concurrent (an SQS long poll
never waits on a table).

It also keeps DynamoDB's promise for TransactWriteItems retries: a retry with the same
ClientRequestToken within 10 minutes has no further effect and answers as the first call
did. botocore sends every transaction with a token and retries it after a read timeout; in
moto the retry of a transaction that did commit fails its own version condition.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from moto.server import ThreadedMotoServer

TOKEN_TTL_SECONDS = 600  # DynamoDB's idempotency window for ClientRequestToken
_TARGET_PREFIX = "DynamoDB_20120810."


class AtomicDynamoDB:
    """WSGI middleware around moto's app: one DynamoDB request at a time, its body included;
    committed transactions remembered by ClientRequestToken."""

    # Shared by every instance: moto's backends are one per process, whichever endpoint
    # (server) a request came through.
    lock: ClassVar[threading.Lock] = threading.Lock()
    committed: ClassVar[OrderedDict[str, tuple[float, str, list[tuple[str, str]], bytes]]] = OrderedDict()

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith(_TARGET_PREFIX):
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        operation = target[len(_TARGET_PREFIX):]
        token = self._token(environ) if operation == "TransactWriteItems" else None
        with self.lock:
            if token:
                self._forget_old(time.monotonic())
                if token in self.committed:
                    _, status, headers, payload = self.committed[token]
                    start_response(status, headers)
                    return [payload]
            status, headers, payload = self.apply(environ, operation)
            if token and status.startswith("200"):
                self.committed[token] = (time.monotonic(), status, headers, payload)
        return self.answer(operation, status, headers, payload, start_response)

    def apply(self, environ: dict[str, Any], operation: str) -> tuple[str, list[tuple[str, str]], bytes]:
        seen: list[Any] = []

        def remember(status: str, headers: list[tuple[str, str]], *exc: Any) -> Callable[[bytes], None]:
            seen[:] = [status, list(headers)]

            def write(_data: bytes) -> None:  # pragma: no cover - moto's Flask app never writes
                raise NotImplementedError
            return write

        body = self.app(environ, remember)
        try:
            payload = b"".join(body)
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        return seen[0], seen[1], payload

    def answer(self, operation: str, status: str, headers: list[tuple[str, str]], payload: bytes,
               start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Where a subclass may change the answer after the request was applied."""
        start_response(status, headers)
        return [payload]

    @staticmethod
    def _token(environ: dict[str, Any]) -> str | None:
        raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(raw)  # moto reads the body again
        try:
            token = json.loads(raw or b"{}").get("ClientRequestToken")
        except (ValueError, AttributeError):
            return None  # moto answers the malformed body itself
        return token if isinstance(token, str) else None

    def _forget_old(self, now: float) -> None:
        while self.committed:
            oldest = next(iter(self.committed.values()))[0]
            if now - oldest < TOKEN_TTL_SECONDS:
                return
            self.committed.popitem(last=False)


def start(port: int, *, ip_address: str = "127.0.0.1") -> ThreadedMotoServer:
    """moto's server on loopback, its app wrapped in `AtomicDynamoDB`; `.stop()` ends it."""
    server = ThreadedMotoServer(ip_address=ip_address, port=port, verbose=False)
    server.start()
    wsgi = server._server
    assert wsgi is not None  # start() returns once the server exists
    wsgi.app = AtomicDynamoDB(wsgi.app)  # type: ignore[assignment]
    return server
