"""JSON logs on the request and health paths (chalicelib/logs.py): one line per API request
with the caller's ids, health lines naming their authorization, exceptions that quote
credentials logged without them, and no ids carried from one invocation to the next."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from chalicelib.domain.models import CheckResult
from chalicelib.providers.registry import Registry
from tests.api.test_health import Probe
from tests.log_lines import log_lines, with_message


class LeakyProbe(Probe):
    """A provider whose client library puts the key it was given into its exception text,
    as some SDKs do (mode "crash")."""

    def check(self, method: str, credentials: Any, resources: dict[str, str], counter: Any = None) -> CheckResult:
        key = credentials.api_key.get_secret_value()
        if self.modes.get(key) == "crash":
            raise RuntimeError(f"client refused api_key={key!r} (see {{'api_key': {json.dumps(key)}}})")
        return super().check(method, credentials, resources, counter)


@pytest.fixture()
def probe(deps: Any, monkeypatch: pytest.MonkeyPatch) -> LeakyProbe:
    p = LeakyProbe()
    monkeypatch.setattr(deps, "registry", Registry(extra={"test_probe": p}))
    return p


def _auth(api: Any, key: str) -> str:
    r = api.post("/authorizations", {"provider": "test_probe", "method": "api_key", "label": "k",
                                     "credentials": {"api_key": key}})
    assert r.status_code == 201, r.body
    return str(r.json["data"]["id"])


def test_each_api_request_logs_one_line_with_its_callers_ids(api, api_for, new_tenant, tenant, capsys) -> None:
    other_tenant = new_tenant("Other")
    other = api_for(other_tenant.admin_token)
    capsys.readouterr()
    # WHEN two accounts call, then someone without a token
    assert api.get("/jobs").status_code == 200
    assert other.get("/jobs/job_nope").status_code == 404
    assert api_for("not-a-token").get("/jobs").status_code == 401
    # THEN one JSON line per request, each with its own caller's ids or none
    first, second, anonymous = with_message(log_lines(capsys.readouterr().out), "request")
    assert (first["account_id"], first["user_id"]) == (tenant.account_id, tenant.admin_user_id)
    assert (first["route"], first["status"]) == ("GET /api/v1/jobs", 200)
    assert (second["account_id"], second["user_id"]) == (other_tenant.account_id, other_tenant.admin_user_id)
    assert (second["route"], second["status"], second["job_id"]) == ("GET /api/v1/jobs/{job_id}", 404, "job_nope")
    assert anonymous["status"] == 401 and anonymous["route"] == "GET /api/v1/jobs"
    assert not {"account_id", "user_id", "job_id"} & set(anonymous), anonymous
    # a request id on each, the correlation id Logs Insights groups by
    ids = [line["request_id"] for line in (first, second, anonymous)]
    assert len(set(ids)) == 3 and all(ids)
    assert all(line["correlation_id"] == line["request_id"] for line in (first, second, anonymous))
    assert all(line["handler"] == "api" and isinstance(line["duration_ms"], float)
               for line in (first, second, anonymous))


def test_health_lines_name_their_authorization_and_withhold_quoted_keys(
        api, client, deps, tenant, probe, capsys) -> None:
    # GIVEN a revoked key and a key whose provider client quotes it in its exception
    revoked, crashing = f"CANARY-bad-{uuid.uuid4().hex}", f"CANARY-crash-{uuid.uuid4().hex}"
    revoked_id, crashing_id = _auth(api, revoked), _auth(api, crashing)
    probe.modes.update({revoked: "bad", crashing: "crash"})
    event = client.events.generate_sqs_event(
        queue_name="switchyard-health",
        message_bodies=[json.dumps({"account_id": tenant.account_id, "authorization_id": i})
                        for i in (revoked_id, crashing_id)])
    capsys.readouterr()
    # WHEN the health Lambda handles them, then a malformed batch in the same process
    client.lambda_.invoke("check_health", event)
    client.lambda_.invoke("check_health", client.events.generate_sqs_event(
        queue_name="switchyard-health", message_bodies=["not json"]))
    out = capsys.readouterr().out
    lines = log_lines(out)
    # THEN the change is logged with its authorization and account
    [changed] = with_message(lines, "authorization health changed")
    assert changed["authorization_id"] == revoked_id and changed["account_id"] == tenant.account_id
    assert (changed["from"], changed["to"], changed["handler"]) == ("healthy", "unhealthy", "check_health")
    # AND the crash is logged with its authorization, its type and frames, but not the key
    [crashed] = with_message(lines, "health check crashed")
    assert crashed["authorization_id"] == crashing_id and crashed["level"] == "ERROR"
    assert crashed["exception_name"] == "RuntimeError"
    assert "Traceback" in crashed["exception"] and "in check" in crashed["exception"]
    assert "message withheld" in crashed["exception"]
    assert crashing not in out and revoked not in out
    # AND the next invocation's lines carry none of those ids
    [dropped] = with_message(lines, "health message dropped: not a health check request")
    assert not {"authorization_id", "account_id"} & set(dropped), dropped
    assert dropped["function_request_id"] != crashed["function_request_id"]


def test_an_unhandled_error_quoting_a_key_is_logged_with_the_request_ids_not_the_key(
        api, tenant, probe, capsys) -> None:
    # GIVEN a key whose provider client quotes it in its exception, checked from the API
    key = f"CANARY-now-{uuid.uuid4().hex}"
    auth_id = _auth(api, key)
    probe.modes[key] = "crash"
    capsys.readouterr()
    # WHEN a user asks to check it now
    r = api.post(f"/authorizations/{auth_id}/check")
    out = capsys.readouterr().out
    # THEN the API answers 500 in its envelope and logs the error with the request's ids
    assert r.status_code == 500 and r.json["error"]["code"] == "internal", r.body
    lines = log_lines(out)
    [error] = with_message(lines, "unhandled error in POST /api/v1/authorizations/{auth_id}/check")
    [request] = with_message(lines, "request")
    assert (error["account_id"], error["user_id"], error["authorization_id"]) == (
        tenant.account_id, tenant.admin_user_id, auth_id)
    assert error["request_id"] == request["request_id"] and request["status"] == 500
    assert error["exception_name"] == "RuntimeError" and "message withheld" in error["exception"]
    # AND the key is nowhere in the output
    assert key not in out
