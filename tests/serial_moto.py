"""DynamoDB requests made atomic, as DynamoDB makes them, for tests that race threads.

moto applies a request in Python with no lock: a conditional UpdateItem checks, then
writes; a TransactWriteItems snapshots whole tables, applies its items and, when one
condition fails, puts the snapshots back — erasing whatever another thread committed in
between. Under 50 threads that lets two conditional writes both "win", or brings a
deleted authorization back, which real DynamoDB never does (each request is atomic and
transactions are serializable). Races decided by moto's internals would test moto.

`serial_dynamodb()` starts a second moto endpoint in this process (same backends, same
tables) that applies one DynamoDB request at a time, and points the app's DynamoDB client
at it. Requests still interleave freely *between* one another — where the app's races are.

It also keeps DynamoDB's promise for TransactWriteItems retries, which moto ignores:
botocore sends every transaction with a ClientRequestToken, and a retry with the same token
(after a read timeout on a loaded machine, say) has no further effect and answers as the
first call did. Without it, the retry of a transaction that did commit fails its own
version condition, and a resume that worked reads as "stale version".
"""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any


class _OneAtATime:
    """WSGI middleware: a whole request, its response body included, under one lock;
    committed transactions remembered by their ClientRequestToken."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.done: dict[str, tuple[str, list[tuple[str, str]], bytes]] = {}
        # Operations whose next answer is lost after the request was applied (a timeout or a
        # dropped connection on the way back): the caller sees a 500 and the SDK retries.
        self.lose_answer: set[str] = set()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        token = None
        operation = environ.get("HTTP_X_AMZ_TARGET", "").rpartition(".")[2]
        if operation == "TransactWriteItems":
            raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(raw)
            token = json.loads(raw or b"{}").get("ClientRequestToken")
        with self.lock:
            if token and token in self.done:
                status, headers, payload = self.done[token]
                start_response(status, headers)
                return [payload]
            seen: list[Any] = []

            def remember(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
                seen[:] = [status, headers]  # answered below, once the body is known

                def write(_data: bytes) -> None:  # pragma: no cover - moto's Flask never writes
                    raise NotImplementedError
                return write

            body = self.app(environ, remember)
            try:
                payload = b"".join(body)
            finally:
                close = getattr(body, "close", None)
                if close:
                    close()
            if token and seen and seen[0].startswith("200"):
                self.done[token] = (seen[0], list(seen[1]), payload)
            if operation in self.lose_answer:
                self.lose_answer.discard(operation)
                lost = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#InternalServerError",
                                   "message": "the answer was lost (test)"}).encode()
                start_response("500 Internal Server Error", [("Content-Type", "application/x-amz-json-1.0"),
                                                             ("Content-Length", str(len(lost)))])
                return [lost]
            start_response(seen[0], seen[1])
            return [payload]


@contextmanager
def serial_dynamodb() -> Iterator[_OneAtATime]:
    """The app's DynamoDB client goes to a one-request-at-a-time endpoint while inside;
    yields the endpoint's middleware (`lose_answer` simulates a lost response)."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    from chalicelib.store import aws

    app = _OneAtATime(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_port}"
    saved = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
    os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = endpoint
    aws.reset()  # clients are cached per process: the next one reads the new endpoint
    # The app's client, with one change: a longer read timeout. One request at a time for up
    # to 100 callers on a shared 2-core machine queues a request longer than the 10 s the
    # app allows AWS (a timeout there is retried, and then fails the caller).
    from botocore.config import Config

    aws._clients["dynamodb"] = aws.session().client("dynamodb", config=Config(
        retries={"mode": "standard", "max_attempts": 4}, connect_timeout=3, read_timeout=120,
        parameter_validation=False))
    try:
        yield app
    finally:
        if saved is None:
            os.environ.pop("AWS_ENDPOINT_URL_DYNAMODB", None)
        else:
            os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = saved
        aws.reset()
        server.shutdown()
        thread.join(10)
