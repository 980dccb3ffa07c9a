"""moto's AWS emulation on loopback, with DynamoDB's atomicity: no more, no less.

moto applies a DynamoDB request in Python with no lock. A TransactWriteItems deep-copies
whole tables while another thread may be writing to them ("dictionary changed size during
iteration", a 500), and a conditional write checks and then writes with room for another
request in between. Real DynamoDB applies each single-item write and each transaction
atomically, so `AtomicDynamoDB` applies those (and reads) one at a time; other services stay
concurrent (an SQS long poll never waits on a table).

BatchWriteItem is not atomic in DynamoDB: each put or delete is its own write, and a Query
or BatchGetItem running meanwhile may see some of the batch and not the rest. So the
emulator validates the whole batch first (as DynamoDB rejects a bad batch before writing
anything), then applies it item by item, letting other requests in between items; each
item with the backend call moto's own BatchWriteItem makes for it, not a whole request's
dispatch per item. `AtomicDynamoDB.between_items` lets a test hold a batch there.

It also keeps DynamoDB's promise for TransactWriteItems retries: a retry with the same
ClientRequestToken within 10 minutes has no further effect and answers as the first call
did. botocore sends every transaction with a token and retries it after a read timeout; in
moto the retry of a transaction that did commit fails its own version condition.
"""

from __future__ import annotations

import io
import json
import math
import threading
import time
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from moto.server import ThreadedMotoServer

from devserver import queries, transactions

TOKEN_TTL_SECONDS = 600  # DynamoDB's idempotency window for ClientRequestToken
_TARGET_PREFIX = "DynamoDB_20120810."
MAX_BATCH_WRITE = 25  # DynamoDB's limit of put/delete requests in one BatchWriteItem


class AtomicDynamoDB:
    """WSGI middleware around moto's app: one DynamoDB request at a time, its body included,
    except BatchWriteItem, applied one item at a time; committed transactions remembered by
    ClientRequestToken."""

    # Shared by every instance: moto's backends are one per process, whichever endpoint
    # (server) a request came through.
    lock: ClassVar[threading.Lock] = threading.Lock()
    committed: ClassVar[OrderedDict[str, tuple[float, str, list[tuple[str, str]], bytes]]] = OrderedDict()
    # Called, outside the lock, after each item of a BatchWriteItem but its last, with the
    # number of items applied so far and the batch's size: a test can hold a batch half-applied.
    between_items: ClassVar[Callable[[int, int], None] | None] = None

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith(_TARGET_PREFIX):
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        operation = target[len(_TARGET_PREFIX):]
        if operation == "BatchWriteItem":
            status, headers, payload = self.batch_write(environ)
            return self.answer(operation, status, headers, payload, start_response)
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

    def batch_write(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        """Validate the batch as a whole, then apply it item by item (each a one-item
        BatchWriteItem to moto, under the lock), with the lock free between items."""
        raw = self._body(environ)
        try:
            request = json.loads(raw or b"{}")
            tables = request["RequestItems"]
            items = [(name, entry) for name, entries in tables.items() for entry in entries]
        except (ValueError, KeyError, TypeError, AttributeError):
            items = []
        if not items:  # malformed: moto answers it, atomically
            with self.lock:
                return self.apply(self._sub_request(environ, "BatchWriteItem", raw), "BatchWriteItem")
        problem = self._batch_problem(environ, items)
        if problem is not None:
            return problem
        options = {k: v for k, v in request.items() if k != "RequestItems"}
        answers: list[dict[str, Any]] = []
        for n, (name, entry) in enumerate(items, start=1):
            with self.lock:
                answer = self._write_directly(name, entry)
                if answer is None:
                    body = json.dumps(dict(options, RequestItems={name: [entry]})).encode()
                    status, headers, payload = self.apply(self._sub_request(environ, "BatchWriteItem", body),
                                                          "BatchWriteItem")
                    if not status.startswith("200"):
                        return status, headers, payload  # the items before it stay written, as in DynamoDB
                    answer = json.loads(payload or b"{}")
            answers.append(answer)
            hook = AtomicDynamoDB.between_items
            if hook is not None and n < len(items):
                hook(n, len(items))
        return self._json_answer("200 OK", self._merged(answers))

    @staticmethod
    def _write_directly(name: str, entry: dict[str, Any]) -> dict[str, Any] | None:
        """Apply one validated item of a batch with the call moto's own BatchWriteItem makes
        for it (its backend's put_item or delete_item), and answer as moto answers a one-item
        batch; None when moto's app must answer it instead.

        Through the app, each item cost a whole request's dispatch (~1.5 ms of CPU; a batch of
        25 took 46 ms against moto's 7 ms for the batch at once). The app still answers when
        the backend is not certain (the table's name in more than one account or region:
        moto's app finds the request's own from its signature), when IAM is enforced (the app
        authorizes each request), when the item holds binary values (the app's parser decodes
        them from base64 first) and when the backend refuses the item (moto's words for it).
        Called under the lock."""
        from moto import settings
        from moto.dynamodb.models import dynamodb_backends

        if not math.isinf(settings.INITIAL_NO_AUTH_ACTION_COUNT) or _holds_binary(entry):
            return None
        holders = [backend for regions in list(dynamodb_backends.values()) for backend in list(regions.values())
                   if name in backend.tables]
        if len(holders) != 1:
            return None
        kind, spec = next(iter(entry.items()))
        try:
            if kind == "PutRequest":
                holders[0].put_item(name, spec["Item"])
            else:
                holders[0].delete_item(name, spec["Key"])
        except Exception:
            return None  # refused before writing: the app answers it, in moto's words
        return {"ConsumedCapacity": [{"TableName": name, "CapacityUnits": 1.0}], "UnprocessedItems": {}}

    def _batch_problem(self, environ: dict[str, Any],
                       items: list[tuple[str, Any]]) -> tuple[str, list[tuple[str, str]], bytes] | None:
        """The ValidationException DynamoDB gives a batch before writing any of it, or None."""
        if len(items) > MAX_BATCH_WRITE:
            return self._validation("Too many items requested for the BatchWriteItem call")
        schemas: dict[str, list[str]] = {}
        seen: set[tuple[str, str]] = set()
        for name, entry in items:
            if name not in schemas:
                with self.lock:
                    status, headers, payload = self.apply(self._sub_request(
                        environ, "DescribeTable", json.dumps({"TableName": name}).encode()), "DescribeTable")
                if not status.startswith("200"):
                    return status, headers, payload  # ResourceNotFoundException, as DynamoDB answers
                schemas[name] = [k["AttributeName"] for k in json.loads(payload)["Table"]["KeySchema"]]
            if not isinstance(entry, dict) or len(entry) != 1:
                return self._validation("Supplied AttributeValue has more than one datatypes set, must contain "
                                        "exactly one of the supported datatypes")
            kind, spec = next(iter(entry.items()))
            attrs = (spec or {}).get("Item" if kind == "PutRequest" else "Key") if isinstance(spec, dict) else None
            if kind not in ("PutRequest", "DeleteRequest") or not isinstance(attrs, dict):
                return self._validation("Supplied AttributeValue has more than one datatypes set, must contain "
                                        "exactly one of the supported datatypes")
            key = {k: attrs.get(k) for k in schemas[name]}
            if any(not isinstance(v, dict) or not v or not next(iter(v.values())) for v in key.values()):
                return self._validation("The provided key element does not match the schema")
            marker = (name, json.dumps(key, sort_keys=True))
            if marker in seen:
                return self._validation("Provided list of item keys contains duplicates")
            seen.add(marker)
        return None

    @staticmethod
    def _merged(answers: list[dict[str, Any]]) -> dict[str, Any]:
        """One BatchWriteItem answer from the answers of its items."""
        unprocessed: dict[str, list[Any]] = {}
        capacity: dict[str, float] = {}
        for a in answers:
            for name, entries in (a.get("UnprocessedItems") or {}).items():
                unprocessed.setdefault(name, []).extend(entries)
            for c in a.get("ConsumedCapacity") or []:
                capacity[c["TableName"]] = capacity.get(c["TableName"], 0.0) + float(c.get("CapacityUnits", 0))
        doc: dict[str, Any] = {"UnprocessedItems": unprocessed}
        if capacity:
            doc["ConsumedCapacity"] = [{"TableName": t, "CapacityUnits": u} for t, u in capacity.items()]
        return doc

    def _validation(self, message: str) -> tuple[str, list[tuple[str, str]], bytes]:
        return self._json_answer("400 Bad Request", {
            "__type": "com.amazon.coral.validate#ValidationException", "message": message})

    @staticmethod
    def _json_answer(status: str, doc: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        payload = json.dumps(doc).encode()
        # botocore checks DynamoDB answers against their CRC32 header.
        return status, [("Content-Type", "application/x-amz-json-1.0"), ("Content-Length", str(len(payload))),
                        ("x-amz-crc32", str(zlib.crc32(payload))), ("x-amzn-RequestId", uuid.uuid4().hex)], payload

    @staticmethod
    def _sub_request(environ: dict[str, Any], operation: str, body: bytes) -> dict[str, Any]:
        """A copy of the request (same signature headers, so the same account and region)
        with another operation and body."""
        sub = dict(environ)
        sub["HTTP_X_AMZ_TARGET"] = _TARGET_PREFIX + operation
        sub["wsgi.input"] = io.BytesIO(body)
        sub["CONTENT_LENGTH"] = str(len(body))
        return sub

    def answer(self, operation: str, status: str, headers: list[tuple[str, str]], payload: bytes,
               start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Where a subclass may change the answer after the request was applied."""
        start_response(status, headers)
        return [payload]

    @staticmethod
    def _body(environ: dict[str, Any]) -> bytes:
        raw: bytes = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(raw)  # moto reads the body again
        return raw

    def _token(self, environ: dict[str, Any]) -> str | None:
        raw = self._body(environ)
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


def _holds_binary(value: Any) -> bool:
    """Whether a DynamoDB JSON value holds a B or BS attribute value anywhere."""
    if isinstance(value, dict):
        return any(k in ("B", "BS") or _holds_binary(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_binary(v) for v in value)
    return False


def _listed_once() -> None:
    """moto's dispatcher lists its own package folder (a listdir and ~170 stats) to route each
    request, ~1 ms of CPU a request, as much as many requests cost in all; the folder does
    not change while the process runs, so it is listed once."""
    from moto import backends

    if getattr(backends.list_of_moto_modules, "listed_once", False):
        return
    names = tuple(backends.list_of_moto_modules())

    def listed() -> tuple[str, ...]:
        return names

    listed.listed_once = True  # type: ignore[attr-defined]
    backends.list_of_moto_modules = listed  # type: ignore[assignment]


def start(port: int, *, ip_address: str = "127.0.0.1") -> ThreadedMotoServer:
    """moto's server on loopback, its app wrapped in `AtomicDynamoDB`; `.stop()` ends it."""
    transactions.install()
    queries.install()
    _listed_once()
    server = ThreadedMotoServer(ip_address=ip_address, port=port, verbose=False)
    server.start()
    wsgi = server._server
    assert wsgi is not None  # start() returns once the server exists
    wsgi.app = AtomicDynamoDB(wsgi.app)  # type: ignore[assignment]
    return server


def application(server: ThreadedMotoServer) -> AtomicDynamoDB:
    """The WSGI application a server from `start` answers with (moto's, wrapped)."""
    wsgi = server._server
    assert wsgi is not None and isinstance(wsgi.app, AtomicDynamoDB), "not a server from start()"
    return wsgi.app
