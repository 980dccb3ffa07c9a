"""Shared fixtures: one moto server per test session, the infra/ stack deployed into it,
and helpers to create isolated accounts (every test gets its own tenant)."""

from __future__ import annotations

import ast
import json
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

# CPython 3.11 before 3.11.8 keeps one AST recursion counter per interpreter, so two threads
# turning ASTs into objects at once can fail with "SystemError: AST constructor recursion
# depth mismatch". A test parsing sources (the Mailchimp client, the import graph) did, while
# a fake server's thread formatted a traceback (3.11's traceback calls ast.parse for its
# carets). One parse at a time in the test process.
_AST_PARSE = ast.parse
_AST_LOCK = threading.RLock()


def _serial_parse(*args: Any, **kwargs: Any) -> Any:
    with _AST_LOCK:
        return _AST_PARSE(*args, **kwargs)


ast.parse = _serial_parse

# The `seed` fixture and @seeded(...) of tests that make random choices.
pytest_plugins = ["tests.seeds"]

STAGE = "test"

# The longest files go first, longest first. pytest-xdist (--dist loadfile) queues a worker's
# next file as the one it runs nears its end; a long file handed out last runs alone while
# the other workers idle. xdist would order files by how many tests they hold (a one-test bench of
# 20 s last): the Makefile passes --no-loadscope-reorder, so it keeps this order. The files
# of 5 s or more, by wall time on 3 workers (a hook timing each test, summed per file); the
# others follow in collection order, and the order within a file is kept (the sort is stable).
LONGEST_FIRST = (
    "tests/web/test_spa.py",
    "tests/proof/test_crash_redelivery.py",
    "tests/engine/test_s3_export.py",
    "tests/engine/test_fault_matrix.py",
    "tests/test_event_loop.py",
    "tests/web/test_dashboard.py",
    "tests/bench/test_export_cost.py",
    "tests/web/test_resync.py",
    "tests/web/test_realtime_job.py",
    "tests/proof/test_provider_outages.py",
    "tests/engine/test_engine.py",
    "tests/web/test_trust.py",
    "tests/web/test_write_key_dialog.py",
    "tests/membership/test_export_changes.py",
    "tests/test_package.py",
    "tests/engine/test_enrichment.py",
    "tests/api/test_health_sweep_scale.py",
    "tests/api/test_races.py",
    "tests/providers/test_s3_import_reader.py",
    "tests/bench/test_export_batch_requests.py",
    "tests/web/test_spa_users.py",
    "tests/providers/test_provider_conformance.py",
    "tests/bench/test_export_requests.py",
    "tests/proof/test_bad_inputs.py",
    "tests/web/test_spa_aws_trust.py",
    "tests/membership/test_export_resync.py",
    "tests/bench/test_health_sweep.py",
    "tests/proof/test_load.py",
    "tests/bench/test_s3_import_memory.py",
    "tests/proof/test_fuzz.py",
    "tests/bench/test_requests_per_call.py",
    "tests/membership/test_realtime_crash.py",
    "tests/membership/test_realtime_failures.py",
    "tests/store/test_profile_repo.py",
    "tests/test_holds.py",
    "tests/test_local_stack.py",
    "tests/api/test_collect_local.py",
    "tests/bench/test_profiles_upsert.py",
    "tests/api/test_collect_api.py",
    "tests/providers/test_http.py",
    "tests/proof/test_collect_crash.py",
    "tests/membership/test_backfill.py",
)
RANK = {path: i for i, path in enumerate(LONGEST_FIRST)}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::")[0]
        return RANK.get(path, len(LONGEST_FIRST))

    items.sort(key=rank)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The names of the stack's tables once this process's moto runs (the session fixture below
# starts it on first use).
STACK_TABLES: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def fresh_moto_data() -> None:
    """Each module starts with no data in moto (tests/moto_state.py says why: moto's cost
    per request grows with what earlier tests left)."""
    if STACK_TABLES:
        from tests.moto_state import clear_data

        clear_data()


@pytest.fixture(autouse=True)
def fresh_stack_tables(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts on empty stack tables (autouse: before any fixture of the test), and
    ends with them still there: once in CI, a whole run of later files on one worker found
    the stack's main table missing and then, files later, present again. The check below
    names the test after which that first happens, and whether moto lost the table or the
    app's client looks elsewhere."""
    if STACK_TABLES:
        from tests.moto_state import clear_tables

        clear_tables(STACK_TABLES)
        settle_settings(f"before {request.node.nodeid} (left so by an earlier test or a module fixture)")
    yield
    if STACK_TABLES:
        from tests.moto_state import stack_tables_missing

        missing = stack_tables_missing(STACK_TABLES)
        assert not missing, f"after {request.node.nodeid}: {missing}"
        settle_settings(f"after {request.node.nodeid}")


def settle_settings(when: str) -> None:
    """Read the app's settings now, outside any request, and check they name the stack's stage.

    chalice.test.Client swaps os.environ for a copy holding the "local" stage's variables
    while it handles a request. Settings first read inside one (after a test or fixture
    called config.reset()) say stage "local": every later test on that worker then asked
    for switchyard-local-main and got ResourceNotFound, until some file re-read them. Read
    here, before and after each test, they always come from the session's own environment.
    """
    from chalicelib import config

    read = config.settings()
    if read.stage != STAGE:
        config.reset()
        config.settings()
        raise AssertionError(f"{when}: the app's settings were read with stage {read.stage!r} "
                             f"(table {read.table_name}), not the stack's {STAGE!r}: read inside a "
                             "chalice.test request? They are read again now.")


@pytest.fixture(scope="session")
def aws_endpoint() -> Iterator[str]:
    import logging

    from bench import moto_speed
    from devserver import emulator
    from tests import direct_moto

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request access log

    port = free_port()
    server = emulator.start(port)  # the emulator `make run` uses: DynamoDB requests atomic
    # moto's answers serialized on a short path, byte for byte its own (tests/test_moto_speed.py):
    # serializing was a tenth of the suite's CPU.
    moto_speed.install()
    endpoint = f"http://127.0.0.1:{port}"
    # This process's own clients reach that server's app without a socket (tests/direct_moto.py).
    direct = direct_moto.install(endpoint, emulator.application(server))
    saved = dict(os.environ)
    from devserver.infra import deploy_stack, use_local_aws

    use_local_aws(endpoint, STAGE)
    outputs = deploy_stack(STAGE)
    STACK_TABLES[:] = [outputs["TableName"], outputs["ProfilesTableName"]]
    yield endpoint
    STACK_TABLES.clear()
    direct_moto.uninstall(direct)
    server.stop()
    os.environ.clear()
    os.environ.update(saved)


@dataclass
class Tenant:
    account_id: str
    admin_token: str
    admin_user_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}", "Content-Type": "application/json"}


@pytest.fixture()
def deps(aws_endpoint: str) -> Any:
    from chalicelib.bootstrap import Deps, use
    from chalicelib.services.accounts import token_cache

    token_cache.clear()
    d = Deps()
    use(d)
    yield d
    use(None)


# Accounts created by the running test: queue drains skip messages of earlier tests' accounts
# (a delayed retry of a finished test can become visible in a later one).
TEST_ACCOUNTS: set[str] = set()


@pytest.fixture()
def new_tenant(deps: Any) -> Iterator[Any]:
    from chalicelib.services.accounts import create_account

    def make(name: str = "Acme") -> Tenant:
        account, admin, issued = create_account(deps, name, f"admin@{name.lower()}.example")
        TEST_ACCOUNTS.add(account.id)
        return Tenant(account.id, issued.plaintext, admin.id)

    TEST_ACCOUNTS.clear()
    yield make
    TEST_ACCOUNTS.clear()


@pytest.fixture()
def client(deps: Any) -> Iterator[Any]:
    from chalice.test import Client

    from app import app

    with Client(app, stage_name="local") as c:
        yield c


class Api:
    """A thin JSON helper over chalice.test.Client for one caller."""

    def __init__(self, client: Any, token: str | None) -> None:
        self.client = client
        self.token = token

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        h.update(extra or {})
        return h

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
             raw: bytes | None = None) -> Any:
        payload = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        resp = self.client.http.request(method, "/api/v1" + path, headers=self._headers(headers),
                                        body=payload)
        resp.json = resp.json_body
        return resp

    def get(self, path: str, **kw: Any) -> Any:
        return self.call("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.call("POST", path, body, **kw)

    def patch(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.call("PATCH", path, body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.call("PUT", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.call("DELETE", path, **kw)


@pytest.fixture()
def api_for(client: Any) -> Any:
    def make(token: str | None) -> Api:
        return Api(client, token)

    return make


@pytest.fixture()
def fake_mailchimp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fake Mailchimp on 127.0.0.1 (tests/fakes/mailchimp.py); the provider reaches it
    through the base-URL settings, as it would reach a real data center."""
    from chalicelib import config
    from chalicelib.providers import http
    from tests import timing
    from tests.fakes.mailchimp import FakeMailchimp

    with FakeMailchimp() as fake:
        monkeypatch.setenv("SWITCHYARD_MAILCHIMP_BASE_URL", fake.base_url)
        monkeypatch.setenv("SWITCHYARD_MAILCHIMP_OAUTH_URL", fake.oauth_url)
        monkeypatch.setenv("SWITCHYARD_ALLOW_PRIVATE_URLS", "1")
        monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # oauthlib refuses http:// URLs otherwise
        timing.moved_http_clock(monkeypatch)
        config.reset()
        config.settings()  # read now, outside any chalice.test request (see devserver/infra.py)
        http.reset()
        yield fake
        monkeypatch.undo()
        config.reset()
        config.settings()
        http.reset()


@pytest.fixture()
def fake_google(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fake Google (OAuth 2.0 and Tag Manager API v2) on 127.0.0.1 (tests/fakes/google.py),
    reached through the base-URL settings."""
    from chalicelib import config
    from chalicelib.providers import http
    from tests import timing
    from tests.fakes.google import FakeGoogle

    with FakeGoogle() as fake:
        monkeypatch.setenv("SWITCHYARD_GTM_BASE_URL", fake.gtm_url)
        monkeypatch.setenv("SWITCHYARD_GOOGLE_OAUTH_URL", fake.oauth_url)
        monkeypatch.setenv("SWITCHYARD_GOOGLE_AUTHORIZE_URL", fake.authorize_url)
        monkeypatch.setenv("SWITCHYARD_ALLOW_PRIVATE_URLS", "1")
        monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # oauthlib refuses http:// URLs otherwise
        # Google's real quota (0.25 requests/s for the whole app) would make every test wait
        # 4 s a request: tests of behaviour go fast; tests/engine/test_gtm_quota.py puts the
        # real rate back on a simulated clock.
        monkeypatch.setattr("chalicelib.providers.gtm.PROJECT_RATE", 1000.0)
        timing.moved_http_clock(monkeypatch)
        config.reset()
        config.settings()  # read now, outside any chalice.test request (see devserver/infra.py)
        http.reset()
        yield fake
        monkeypatch.undo()
        config.reset()
        config.settings()
        http.reset()
