"""Serving app.py in-process more than once: the devserver's loader and the proof suites'
server share one app object, and a worker process may run both (pytest-xdist)."""

import os
from unittest import mock

import pytest


def test_the_app_is_served_again_after_the_devserver_loaded_it():
    from devserver import gateway
    from tests.proof.served import serve_app

    # Chalice applies the "local" stage's variables to os.environ and leaves them there: put
    # the session's back, or the worker's next test that reads the settings again asks for
    # the local stage's tables.
    with mock.patch.dict(os.environ):
        gateway.load_app("local")
    for _ in range(2):
        with serve_app() as base:
            assert base.startswith("http://127.0.0.1:")


def _nodelay_seen(monkeypatch) -> list[int]:
    """Two requests on one kept-alive connection to the served app; returns TCP_NODELAY as
    each of the gateway's handlers found it on its accepted socket."""
    import http.client
    import socket
    from urllib.parse import urlsplit

    from devserver import gateway
    from tests.proof.served import serve_app

    seen: list[int] = []
    setup = gateway.DevRequestHandler.setup

    def noting_setup(self):
        setup(self)
        seen.append(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    monkeypatch.setattr(gateway.DevRequestHandler, "setup", noting_setup)
    with serve_app() as base:
        conn = http.client.HTTPConnection(urlsplit(base).netloc, timeout=30)
        for _ in range(2):
            conn.request("GET", "/api/v1/healthz")
            response = conn.getresponse()
            response.read()
            assert response.status == 200
            assert not response.will_close, "the gateway keeps the connection for the next request"
        conn.close()
    return seen


@pytest.mark.usefixtures("aws_endpoint")  # served over the session's settings and moto
def test_the_gateway_sends_without_waiting_for_acknowledgements(monkeypatch):
    """Chalice's handler sends a response's headers, then its body: with Nagle's algorithm on,
    the body of every request after a connection's first waited for the client's delayed
    acknowledgement (~40 ms; the API fuzzer's 22 s were 15 s of it)."""
    assert _nodelay_seen(monkeypatch) == [1], "one connection, its socket sending at once"


@pytest.mark.usefixtures("aws_endpoint")
def test_the_nodelay_check_sees_nagle_when_it_is_on(monkeypatch):
    """Positive control: the check above reads the socket's real option."""
    from devserver import gateway

    monkeypatch.setattr(gateway.DevRequestHandler, "disable_nagle_algorithm", False)
    assert _nodelay_seen(monkeypatch) == [0]
