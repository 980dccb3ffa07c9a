"""Cold-start guards: what `import app` may and may not do (no timings asserted here;
bench/cold_start.py measures them).

Each check runs in a fresh interpreter, since this test session has long since imported
boto3 and friends. They fail when someone adds an import-time AWS client, an eager
import of a heavy SDK, or an environment read at import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from chalicelib.config import SWEEP_SCHEDULE_VARIABLE

ROOT = Path(__file__).resolve().parent.parent

# Loaded on the first request that needs them, never by `import app`.
LAZY_MODULES = (
    "boto3",
    "botocore",
    "pydantic",
    "pydantic_core",
    "chalicelib.providers.s3",
    "chalicelib.providers.webhook",
    "chalicelib.providers.http",
    "chalicelib.providers.http_guard",
    "chalicelib.providers.http_transport",
    "urllib3",
    "chalicelib.providers.mailchimp",
    "chalicelib.api.schemas",
    "chalicelib.api.schema_base",
    "chalicelib.api.job_schemas",
    "chalicelib.api.response_schemas",
    "oauthlib",
    # Powertools' parser and batch: only the worker handlers load them (chalicelib/workers/events.py)
    "chalicelib.workers.events",
    "aws_lambda_powertools.utilities.parser",
    "aws_lambda_powertools.utilities.batch",
)


def _python(code: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `code` in a fresh interpreter at the repo root; it prints one JSON line last."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SWITCHYARD_"))}
        env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"subprocess failed ({proc.returncode}):\n{proc.stderr}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_import_app_loads_no_heavy_module() -> None:
    out = _python(
        "import json, sys\n"
        "import app\n"
        f"lazy = {list(LAZY_MODULES)!r}\n"
        "print(json.dumps({'loaded': sorted(m for m in lazy if m in sys.modules),\n"
        "                  'routes': len(app.app.routes)}))\n"
    )
    assert out["routes"] > 0
    assert out["loaded"] == [], (
        f"`import app` loads {out['loaded']}; import them inside the function that needs them "
        "(find the culprit with: python -X importtime -c 'import app')"
    )


def test_the_worker_events_module_is_what_loads_powertools_parser_and_batch() -> None:
    # positive control for the names above: a worker handler's import does load them
    out = _python(
        "import json, sys\n"
        "import app\n"
        "before = [m for m in ('aws_lambda_powertools.utilities.parser', 'aws_lambda_powertools.utilities.batch')"
        " if m in sys.modules]\n"
        "import chalicelib.workers.events\n"
        "after = [m for m in ('aws_lambda_powertools.utilities.parser', 'aws_lambda_powertools.utilities.batch')"
        " if m in sys.modules]\n"
        "print(json.dumps({'before': before, 'after': after}))\n"
    )
    assert out == {"before": [], "after": ["aws_lambda_powertools.utilities.parser",
                                           "aws_lambda_powertools.utilities.batch"]}


# boto3/botocore are imported *before* app here on purpose, so that a client or session
# built at import time is caught even if its module is already loaded; sockets are
# watched too: nothing may talk to AWS (or anything else) while importing.
_NO_CLIENT = r"""
import json, socket, sys, traceback

import boto3.session
import botocore.client
import botocore.session

made = []

def spy(cls, name):
    original = getattr(cls, name)
    def wrapper(self, *a, **kw):
        made.append(f"{cls.__module__}.{cls.__name__}.{name}: "
                    + "".join(traceback.format_stack(limit=6)[:-1]))
        return original(self, *a, **kw)
    setattr(cls, name, wrapper)

spy(botocore.client.BaseClient, "__init__")
spy(botocore.session.Session, "create_client")
spy(boto3.session.Session, "__init__")
spy(socket.socket, "connect")
spy(socket.socket, "connect_ex")

import app
print(json.dumps({"made": made, "routes": len(app.app.routes)}))
"""


def test_import_app_creates_no_aws_client_or_connection() -> None:
    out = _python(_NO_CLIENT)
    assert out["routes"] > 0
    assert out["made"] == [], "`import app` built AWS sessions/clients or opened sockets:\n" + "\n".join(
        out["made"]
    )


_ENV_READS = r"""
import _collections_abc, json, os, sys
from collections.abc import MutableMapping

ROOT = sys.argv[1]
OURS = (os.path.join(ROOT, "chalicelib") + os.sep, os.path.join(ROOT, "app.py"))
SKIP = {"<string>", os.__file__, _collections_abc.__file__}
reads = []

class Recording(MutableMapping):
    # os.environ stand-in that notes which of our files read which key.
    def __init__(self, real):
        self._real = real
    def _note(self, key):
        f = sys._getframe(2)
        while f is not None and f.f_code.co_filename in SKIP:
            f = f.f_back
        name = f.f_code.co_filename if f is not None else "?"
        if name.startswith(OURS[0]) or name == OURS[1]:
            reads.append(f"{key} read by {name}:{f.f_lineno}")
    def __getitem__(self, key):
        self._note(key)
        return self._real[key]
    def __contains__(self, key):
        self._note(key)
        return key in self._real
    def get(self, key, default=None):
        self._note(key)
        return self._real.get(key, default)
    def __setitem__(self, key, value):
        self._real[key] = value
    def __delitem__(self, key):
        del self._real[key]
    def __iter__(self):
        self._note("<iteration>")
        return iter(self._real)
    def __len__(self):
        return len(self._real)
    def copy(self):
        self._note("<copy>")
        return dict(self._real)

os.environ = Recording(os.environ)

import app
from chalicelib import config

os.environ = os.environ._real
print(json.dumps({
    "reads": reads,
    "settings_built": config.settings.cache_info().currsize,
    "routes": len(app.app.routes),
}))
"""


def test_import_app_reads_no_environment() -> None:
    # Only what Python needs to find the code: no AWS_*, no SWITCHYARD_*, no HOME.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT)}
    out = _python(_ENV_READS, str(ROOT), env=env)
    assert out["routes"] > 0
    # The one allowed read: the sweep's schedule, which `chalice package` takes from the
    # decorator at import (docs/health.md, "Schedule"); a string, no I/O, no settings built.
    reads = [r for r in out["reads"] if not r.startswith(f"{SWEEP_SCHEDULE_VARIABLE} read by ")]
    assert reads == [], "read the environment at import:\n" + "\n".join(reads)
    assert out["settings_built"] == 0, "chalicelib.config.settings() was called at import time"


def test_provider_models_are_built_on_first_use_not_at_import() -> None:
    # A request that uses the S3 import provider should not pay for the export config's
    # validator (nor the other provider models it never touches).
    code = (
        "import json\n"
        "import pydantic\n"
        "from chalicelib.providers.s3 import S3ExportConfig\n"
        "before = S3ExportConfig.__pydantic_complete__\n"
        "try:\n"
        "    S3ExportConfig.model_validate({'no_such_field': 1})\n"
        "except pydantic.ValidationError as exc:\n"
        "    refused = 'no_such_field' in str(exc)\n"
        "print(json.dumps({'before': before, 'refused': refused, 'after': S3ExportConfig.__pydantic_complete__}))\n"
    )
    # Not built at import; the first validation builds it, and it refuses what it should.
    assert _python(code) == {"before": False, "refused": True, "after": True}


def test_the_job_routes_models_load_without_the_rest_of_the_apis() -> None:
    # POST /jobs validates a JobCreate: its first request should not create the models of
    # the authorization, alert, token and user routes too.
    code = (
        "import json, sys\n"
        "from chalicelib.api.job_schemas import JobCreate\n"
        "alone = 'chalicelib.api.schemas' not in sys.modules\n"
        "import chalicelib.api.schemas\n"
        "print(json.dumps({'alone': alone, 'then': 'chalicelib.api.schemas' in sys.modules,\n"
        "                  'built': JobCreate.__pydantic_complete__}))\n"
    )
    assert _python(code) == {"alone": True, "then": True, "built": False}


def test_every_blueprint_imports_alone_without_environment() -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT)}
    modules = [p.stem for p in (ROOT / "chalicelib" / "api").glob("*.py") if p.stem != "__init__"]
    code = (
        "import importlib, json, sys\n"
        f"mods = {sorted(modules)!r}\n"
        "bad = {}\n"
        "for m in mods:\n"
        "    try:\n"
        "        importlib.import_module('chalicelib.api.' + m)\n"
        "    except Exception as exc:\n"
        "        bad[m] = repr(exc)\n"
        "print(json.dumps(bad))\n"
    )
    assert _python(code, env=env) == {}


def test_the_app_and_provider_sessions_read_service_data_through_one_loader() -> None:
    """A second loader would parse the endpoint data and service models again on the first
    provider request (POST /jobs checks the customer's S3 access)."""
    from chalicelib.providers import calls
    from chalicelib.store import aws

    calls.reset()
    aws.reset()
    app_loader = aws.session()._session.get_component("data_loader")
    provider_loader = calls.shared_session()._session.get_component("data_loader")
    assert provider_loader is app_loader
    # boto3 adds its data folder to the search path per session: resets do not grow it
    aws.reset()
    aws.session()
    before = list(app_loader.search_paths)
    for _ in range(3):
        aws.reset()
        aws.session()
    paths = app_loader.search_paths
    assert paths == before and len(paths) <= len(set(paths)) + 1, paths
    assert any(p.endswith("boto3/data") or p.endswith("boto3\\data") for p in paths), paths


_COLLECTOR = r"""
import gc, json, sys, types
before = gc.isenabled()
import app
after_import = gc.isenabled()
kind = sys.argv[1]
seen = {}
if kind == "api":
    # The deployed handler itself (app.app), so a middleware left unregistered shows here.
    event = {"resource": "/api/v1/healthz", "path": "/api/v1/healthz", "httpMethod": "GET",
             "headers": {"Host": "api.example"}, "multiValueHeaders": {}, "queryStringParameters": None,
             "multiValueQueryStringParameters": None, "pathParameters": None, "stageVariables": None,
             "body": None, "isBase64Encoded": False,
             "requestContext": {"resourcePath": "/api/v1/healthz", "httpMethod": "GET", "path": "/api/api/v1/healthz",
                                "stage": "api", "requestId": "r1", "identity": {"sourceIp": "203.0.113.1"}}}
    def inner(request, get_response):  # registered last, so it runs inside coldstart's
        seen["during"] = gc.isenabled()
        return get_response(request)
    app.app.register_middleware(inner, "http")
    seen["status"] = app.app(event, None)["statusCode"]
elif kind == "authorizer":
    # Its own Lambda, which Chalice runs without middleware; an unknown token is refused.
    event = {"type": "TOKEN", "authorizationToken": "Bearer sy_not_a_token",
             "methodArn": "arn:aws:execute-api:us-east-1:123456789012:abc/api/GET/api/v1/jobs"}
    try:
        seen["answer"] = type(app.token_authorizer(event, None)).__name__
    except Exception as exc:
        seen["answer"] = type(exc).__name__
else:
    # A queue worker's deployed handler, with a handler that records the collector's state.
    from chalicelib.workers import runner
    ctx = types.SimpleNamespace(aws_request_id="r1", function_name="switchyard-dev-run_step",
                                memory_limit_in_mb=512, invoked_function_arn="arn", log_stream_name="s")
    import contextlib
    real = runner.flushing
    @contextlib.contextmanager
    def flushing():
        seen["during"] = gc.isenabled()
        with real():
            yield
    runner.flushing = flushing
    app.run_step({"Records": []}, ctx)  # the deployed entry point
print(json.dumps({"before": before, "after_import": after_import, "after": gc.isenabled(),
                  "frozen": gc.get_freeze_count(), **seen}))
"""


def test_the_collector_waits_for_the_end_of_the_cold_start() -> None:
    # An API request: no cyclic collection from `import app` to its answer, then the
    # cold start's objects are frozen and the collector runs again.
    api = _python(_COLLECTOR, "api")
    assert api["before"] is True and api["after_import"] is False
    assert api["during"] is False
    assert api["after"] is True and api["frozen"] > 10_000
    assert api["status"] == 200  # the API answers as before
    # Any other event (a worker's step can allocate a lot): the collector runs again before
    # the handler starts.
    worker = _python(_COLLECTOR, "worker")
    assert worker["after_import"] is False
    assert worker["during"] is True and worker["after"] is True and worker["frozen"] > 10_000
    # The token authorizer's Lambda, which no middleware wraps: on again after its answer.
    authorizer = _python(_COLLECTOR, "authorizer")
    assert authorizer["after_import"] is False and authorizer["answer"]
    assert authorizer["after"] is True and authorizer["frozen"] > 10_000
