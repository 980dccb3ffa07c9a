"""Serving app.py in-process more than once: the devserver's loader and the proof suites'
server share one app object, and a worker process may run both (pytest-xdist)."""


def test_the_app_is_served_again_after_the_devserver_loaded_it():
    from devserver import gateway
    from tests.proof.served import serve_app

    gateway.load_app("local")
    for _ in range(2):
        with serve_app() as base:
            assert base.startswith("http://127.0.0.1:")
