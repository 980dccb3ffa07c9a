"""The worker's own moto answers the worker's own boto3 clients without a socket.

Each pytest worker runs moto's server in a thread of its own process (`tests/conftest.py`
`aws_endpoint`). A request from that same process used to cross loopback TCP twice: urllib3
opened a connection per request (werkzeug's server answers `Connection: close`), http.server
and the email parser read the headers back, and werkzeug's server drained the socket. Measured
on one GetItem, that transport was half of the request's CPU, client and server together.

`install(endpoint, app)` adds a botocore `before-send` handler to every botocore session made
afterwards. A request whose URL is on `endpoint` is handed to `app` (the server's own WSGI
application: the emulator's atomic DynamoDB around moto's dispatcher) as a WSGI environ built
from the signed request, and moto's status, headers and body come back to botocore as the
HTTP response would have. What botocore does before and after is unchanged: serializing,
signing, every other `before-send` handler (request counts, holds, the leak proof's wire
check), retries, parsing. Only the socket is skipped.

It is test plumbing, never the app's: `chalicelib/` sends over HTTP wherever it runs. Whatever
runs in another process (the local stacks of the browser tests, `chalice local`, the benches'
moto with added latency) still talks HTTP to the worker's server, and so does a client on any
other endpoint (the race tests' serial DynamoDB, a fault-injecting server).
`tests/test_direct_moto.py` shows both paths give the same answers.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from botocore.awsrequest import AWSResponse
from botocore.handlers import BUILTIN_HANDLERS, REGISTER_LAST
from werkzeug.test import EnvironBuilder, run_wsgi_app


class _Body:
    """A raw response body as botocore reads one (`read`, and `stream` for a streaming body).
    Not moto's `MockRawResponse`: that is a BytesIO, and a read after `close` raises, where
    urllib3's body (what the app gets over HTTP) answers with nothing; the S3 reader closes
    bodies it stops reading early."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def read(self, amt: int | None = None, decode_content: bool = True) -> bytes:
        end = len(self._data) if amt is None else min(len(self._data), self._at + amt)
        chunk = self._data[self._at:end]
        self._at = end
        return chunk

    def stream(self, amt: int = 1024, decode_content: bool = True) -> Any:
        while True:
            chunk = self.read(amt)
            if not chunk:
                return
            yield chunk

    def close(self) -> None:
        self._at = len(self._data)


class DirectMoto:
    """The `before-send` handler: answers requests to `endpoint` from `app`, returns None
    (botocore then sends over HTTP) for any other URL, or while `enabled` is False."""

    def __init__(self, endpoint: str, app: Any) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.app = app
        self.enabled = True
        self.answered = 0

    def mine(self, url: str) -> bool:
        rest = url[len(self.endpoint):] if url.startswith(self.endpoint) else None
        return rest is not None and (rest == "" or rest[0] in "/?")

    def __call__(self, request: Any, **_: Any) -> AWSResponse | None:
        if not self.enabled or not self.mine(request.url):
            return None
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        if isinstance(body, str):
            body = body.encode()
        split = urlsplit(request.url)
        headers = [(name, value.decode("latin-1") if isinstance(value, bytes) else value)
                   for name, value in request.headers.items()]
        environ = EnvironBuilder(method=request.method, base_url=self.endpoint, path=split.path,
                                 query_string=split.query, headers=headers, data=body or b"").get_environ()
        # Buffered: the app's answer is read whole and closed before this returns.
        answer, status, answer_headers = run_wsgi_app(self.app, environ, buffered=True)
        self.answered += 1
        return AWSResponse(request.url, int(status.split(" ", 1)[0]), dict(answer_headers),
                           _Body(b"".join(answer)))


_installed: list[DirectMoto] = []


def install(endpoint: str, app: Any) -> DirectMoto:
    """Every botocore session made from now on sends `endpoint`'s requests to `app`."""
    handler = DirectMoto(endpoint, app)
    # Last: the handlers that count, hold or inspect a request on the wire run first, as they
    # did before the socket.
    BUILTIN_HANDLERS.append(("before-send", handler, REGISTER_LAST))
    _installed.append(handler)
    return handler


def uninstall(handler: DirectMoto) -> None:
    """Sessions made from now on send `handler`'s endpoint over HTTP again."""
    handler.enabled = False
    BUILTIN_HANDLERS.remove(("before-send", handler, REGISTER_LAST))
    _installed.remove(handler)


def installed() -> DirectMoto | None:
    return _installed[-1] if _installed else None
