"""The app over real HTTP for the proof suites: devserver's gateway (Chalice's local API
Gateway + our envelope for gateway errors) serving the Chalice app on a free port in a
thread, over the session's moto server (tests/conftest.py), so a suite can seed data and
inspect the store in the same process that serves the requests.

`no_outside_network()` refuses every connection that is not to this machine: fuzzers make up
webhook URLs and provider hosts, and a credential check would otherwise try to reach them.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "ip6-localhost"}


def _is_local(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    host = str(host)
    return host in LOCAL_HOSTS or host.startswith("127.")


class OutsideNetwork(OSError):
    """A connection to an address that is not this machine: refused in the proof suites."""


@contextmanager
def no_outside_network() -> Iterator[list[str]]:
    """Refuse DNS look-ups and connections for any host but this machine's; yields the list
    of hosts that were refused (the app must handle the refusal like any network error)."""
    refused: list[str] = []
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _is_local(host):
            refused.append(str(host))
            raise socket.gaierror(socket.EAI_NONAME, f"{host}: outside network refused by the proof suite")
        return real_getaddrinfo(host, *args, **kwargs)

    def guard(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
            refused.append(str(address[0]))
            raise OutsideNetwork(f"connection to {address[0]} refused by the proof suite")

    def connect(sock: socket.socket, address: Any) -> None:
        guard(sock, address)
        return real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        guard(sock, address)
        return real_connect_ex(sock, address)

    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    try:
        yield refused
    finally:
        socket.getaddrinfo = real_getaddrinfo
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign]


@contextmanager
def serve_app(limiter: Any = None) -> Iterator[str]:
    """Serve app.py's Chalice app on 127.0.0.1:<free port>; yields the base URL (no /api/v1).

    Like devserver.gateway.load_app, but without reloading app.py under the "local" stage's
    environment: the session's settings (stage "test", moto endpoint) must stay in force.
    `limiter` (devserver.quota.UsagePlanLimiter) throttles per account as the stage does.
    """
    from chalice.config import Config
    from chalice.local import CustomLocalChalice, LocalChalice

    from app import app
    from devserver.gateway import make_server
    from tests.conftest import free_port

    config = Config.create(chalice_stage="local", app_name="switchyard", chalice_app=app,
                           api_gateway_stage="api")
    # Requests arrive on server threads: a thread-local current_request, as devserver does.
    # An app already served in this process (devserver.gateway.load_app, another test) is
    # already patched: patching it again would make CustomLocalChalice its own base.
    original = app.__class__
    if not isinstance(app, LocalChalice):
        CustomLocalChalice.__bases__ = (LocalChalice, original)
        app.__class__ = CustomLocalChalice
    port = free_port()
    server = make_server(app, config, "127.0.0.1", port, quiet=True, limiter=limiter)
    # shutdown() waits for the serving loop to look again (0.5 s at the default interval).
    thread = threading.Thread(target=server.server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="proof-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server.server_close()
        thread.join(timeout=10)
        app.__class__ = original
