"""A DynamoDB endpoint for tests that race threads and lose answers.

Every moto endpoint of the tests and of `make run` applies DynamoDB requests one at a time
(a BatchWriteItem one item at a time, as DynamoDB does not apply a batch atomically) and
honours TransactWriteItems' ClientRequestToken (`devserver.emulator.AtomicDynamoDB`):
without that, moto lets two conditional writes both "win" under 50 threads, or brings a
deleted authorization back, which real DynamoDB never does. Requests still interleave
freely *between* one another, and between a batch's items — where the app's races are.

`serial_dynamodb()` adds what only race tests need: a second endpoint (same backends, same
lock) whose answers a test can lose after the request was applied (`lose_answer`), and an
app client with a read timeout long enough for 100 callers queued on that lock.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from devserver.emulator import AtomicDynamoDB


class _LosableAnswers(AtomicDynamoDB):
    """The emulator's atomic DynamoDB (one lock and one token memory for the process), plus
    answers that can be lost after the request was applied."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        # Operations whose next answer is lost after the request was applied (a timeout or a
        # dropped connection on the way back): the caller sees a 500 and the SDK retries.
        self.lose_answer: set[str] = set()

    def answer(self, operation: str, status: str, headers: list[tuple[str, str]], payload: bytes,
               start_response: Any) -> Iterable[bytes]:
        if operation in self.lose_answer:
            self.lose_answer.discard(operation)
            lost = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#InternalServerError",
                               "message": "the answer was lost (test)"}).encode()
            start_response("500 Internal Server Error", [("Content-Type", "application/x-amz-json-1.0"),
                                                         ("Content-Length", str(len(lost)))])
            return [lost]
        return super().answer(operation, status, headers, payload, start_response)


@contextmanager
def serial_dynamodb() -> Iterator[_LosableAnswers]:
    """The app's DynamoDB client goes to a one-request-at-a-time endpoint while inside;
    yields the endpoint's middleware (`lose_answer` simulates a lost response)."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    from chalicelib.store import aws

    app = _LosableAnswers(DomainDispatcherApplication(create_backend_app))
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
    aws.use_client("dynamodb", aws.session().client("dynamodb", config=aws.client_config("dynamodb", read_timeout=120)))
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
