"""pytest plugin: which AWS requests each Lambda entry point sends, to check the per-function
IAM policies (infra/policies.py) against what the code really does. Not part of `make test`.

    PYTHONPATH=infra .venv/bin/pytest -p aws_requests -p no:cacheprovider -q \\
        tests/engine tests/api/test_health.py tests/api/test_alerts.py tests/api/test_alert_rules.py \\
        tests/api/test_authorizations.py tests/api/test_oauth.py tests/api/test_jobs.py

writes .aws-requests.json: {entry point: [[own credentials?, service, operation, target]]}.
A few tests that inject faults through botocore themselves fail under it: read the
recorded requests, not the pass/fail count.
A request is attributed to the outermost Chalice entry point (or the service function a
worker calls) on the call stack; requests made with a customer's credentials (provider
clients) are marked `false`: they are not the Lambda role's.
"""

from __future__ import annotations

import collections
import json
import os
import sys
from types import FrameType
from typing import Any

import botocore.client

# (file, function or None for any, entry point), matched from the outermost frame inwards.
ENTRY_POINTS = [
    ("chalicelib/api/auth.py", "token_authorizer", "token_authorizer"),
    ("chalicelib/workers/runner.py", None, "run_step"),
    ("chalicelib/workers/health.py", "health_sweep", "health_sweep"),
    ("chalicelib/workers/health.py", "check_health", "check_health"),
    ("chalicelib/workers/purge.py", None, "purge_jobs"),
    ("chalicelib/workers/realtime.py", "realtime_catch_up", "realtime_catch_up"),
    ("chalicelib/workers/alerts.py", "deliver_alerts", "deliver_alerts"),
    ("chalicelib/workers/alerts.py", "evaluate_alert_rules", "evaluate_alert_rules"),
    ("chalicelib/api/", None, "api_handler"),
    ("chalicelib/runs/engine.py", "handle", "run_step"),
    ("chalicelib/services/health.py", "sweep", "health_sweep"),
    ("chalicelib/services/health.py", "check_many", "check_health"),
    ("chalicelib/services/purge.py", "purge_due", "purge_jobs"),
    ("chalicelib/services/realtime.py", "catch_up", "realtime_catch_up"),
    ("chalicelib/services/alert_rules.py", "evaluate", "evaluate_alert_rules"),
    ("chalicelib/services/alerts.py", "deliver", "deliver_alerts"),
]
# The tests' own credentials (devserver.infra.use_local_aws); anything else is a customer's.
OWN_KEYS = {"local"}
TARGETS = ("TableName", "QueueUrl", "SecretId", "Name", "EventBusName", "TopicArn", "RoleArn")

_seen: dict[str, set[tuple[Any, ...]]] = collections.defaultdict(set)
_original = botocore.client.BaseClient._make_api_call


def _entry_point() -> str | None:
    frames = []
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    for fr in reversed(frames):
        for path, function, entry in ENTRY_POINTS:
            if path in fr.f_code.co_filename and function in (None, fr.f_code.co_name):
                return entry
    return None


def _target(operation: str, params: dict[str, Any]) -> str:
    if operation in ("TransactWriteItems", "BatchWriteItem", "BatchGetItem"):
        tables = {v.get("TableName") for item in params.get("TransactItems") or [] for v in item.values()}
        tables |= set(params.get("RequestItems") or {})
        return "tables=" + ",".join(sorted(map(str, tables)))
    for key in TARGETS:
        if key in params:
            index = f" index={params['IndexName']}" if "IndexName" in params else ""
            return f"{key}={params[key]}{index}"
    return ""


def _make_api_call(self: Any, operation: str, params: dict[str, Any]) -> Any:
    entry = _entry_point()
    if entry:
        credentials = self._request_signer._credentials
        own = getattr(credentials, "access_key", None) in OWN_KEYS
        _seen[entry].add((own, self.meta.service_model.service_name, operation, _target(operation, params)))
    return _original(self, operation, params)


botocore.client.BaseClient._make_api_call = _make_api_call


def _write() -> None:
    out = os.environ.get("AWS_REQUESTS_OUT", ".aws-requests.json")
    with open(out, "w") as f:
        json.dump({k: sorted(map(list, v)) for k, v in _seen.items()}, f, indent=1)


def pytest_runtest_logfinish(nodeid: str, location: Any) -> None:
    _write()  # after each test: a long run can be read while it goes
