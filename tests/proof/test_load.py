"""Proof suite: load.

The local stack as `make run` starts it (`python -m devserver`: moto, the app behind its
local API Gateway, the event loop) under concurrent dashboard users — locust as a library,
in a process of its own (tests/proof/load_client.py) — for a fixed time: 50 users for 60 s
in `make proof`, 10 for 5 s in `make test`. Each user, without pause, asks for one of
GET /jobs, GET /authorizations, GET /jobs/{id} and the bare GET /healthz, equally often.

Asserted: 0 errors (no failed request, every answer 2xx). Reported, never asserted: p50
and p95 per kind, and the ratio of each dashboard request's p50 to /healthz's p50 on the
same server at the same time (what the app's own work costs over the server's floor).
Also counted, in this process through chalice.test on the session's moto: the AWS
requests each dashboard request makes (warm token cache), which is what the cost of a
request grows with (moto's own latency per request is not AWS's).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.proof.load_client import KINDS
from tests.proof.record import full, record, size
from tests.seeds import replay_hint, single
from tests.test_local_stack import ROOT, TOKEN, Stack

S3_KEYS = {"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}


def _populate(call: Any, bucket: str, auths: int, jobs: int) -> list[str]:
    """`auths` S3 authorizations and `jobs` staged import jobs spread over them (staged:
    nothing runs in the background while the load runs)."""
    auth_ids = []
    for i in range(auths):
        status, body = call("POST", "/api/v1/authorizations", {
            "provider": "amazon_s3", "method": "access_keys", "label": f"Keys {i}",
            "credentials": {**S3_KEYS, "bucket": bucket}})
        assert status == 201, body
        auth_ids.append(body["data"]["id"])
    job_ids = []
    for i in range(jobs):
        status, body = call("POST", "/api/v1/jobs", {
            "provider": "amazon_s3", "job_type": "import", "workflow": "s3_file_import",
            "authorization_id": auth_ids[i % auths], "label": f"Import {i}", "start": False,
            "config": {"bucket": bucket, "prefix": f"imports/{i}/"}})
        assert status == 201, body
        job_ids.append(body["data"]["id"])
    return job_ids


def _aws_requests_per_request(api_for: Any, new_tenant: Any, auths: int, jobs: int) -> dict[str, dict[str, int]]:
    """AWS requests of one warm request of each kind, by service, on the session's moto."""
    from chalicelib.store import aws
    from tests.api.helpers import make_bucket

    api = api_for(new_tenant("Load").admin_token)
    bucket = make_bucket()

    def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        r = api.call(method, path.removeprefix("/api/v1"), body)
        return r.status_code, r.json

    job_ids = _populate(call, bucket, auths, jobs)
    paths = {KINDS[0]: "/healthz", KINDS[1]: "/jobs?limit=50", KINDS[2]: "/authorizations?limit=50",
             KINDS[3]: f"/jobs/{job_ids[0]}"}
    out = {}
    for kind, path in paths.items():
        assert api.get(path).status_code == 200  # warm: the token is cached after this
        tally = aws.track_requests()
        assert api.get(path).status_code == 200
        out[kind] = tally.by_service()
    return out


@pytest.mark.smoke
def test_the_local_api_under_concurrent_dashboard_users_answers_without_error(
        tmp_path: Path, api_for: Any, new_tenant: Any) -> None:
    users, seconds = size(10, 50), size(5, 60)
    auths, jobs = size(2, 10), size(6, 60)
    # Every user is the same account's admin, asking without pause: that account's own API
    # limit (a usage plan, tests/api/test_security_throttling.py) would answer for the app,
    # so it is raised here; what is measured is the app under concurrency.
    stack = Stack(tmp_path / "state", tmp_path / "devserver.log",
                  extra_env={"SWITCHYARD_ACCOUNT_RATE_LIMIT": "100000", "SWITCHYARD_ACCOUNT_BURST_LIMIT": "100000"})
    load_before = os.getloadavg()[0]
    try:
        started = stack.start()
        job_ids = _populate(lambda m, p, b=None: stack.call(m, p, b), "switchyard-demo", auths, jobs)
        conf = tmp_path / "load.json"
        seed = single(1, fresh_instead=full())
        print(replay_hint(seed))
        conf.write_text(json.dumps({"base": stack.base, "token": TOKEN, "users": users, "seconds": seconds,
                                    "job_ids": job_ids, "seed": seed}))
        proc = subprocess.run([sys.executable, "-m", "tests.proof.load_client", str(conf)], cwd=ROOT,
                              capture_output=True, text=True, timeout=seconds + 120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        # the server is still well after the load
        status, _ = stack.call("GET", "/api/v1/healthz", token=None)
        assert status == 200
    finally:
        stack.kill()
    kinds = result["kinds"]
    # THEN every kind was asked for, and nothing failed
    assert all(k["requests"] > 0 for k in kinds.values()), kinds
    assert result["errors"] == [] and sum(k["failures"] for k in kinds.values()) == 0, result
    counts = _aws_requests_per_request(api_for, new_tenant, auths, jobs)
    assert sum(counts[KINDS[0]].values()) == 0 and all(sum(counts[k].values()) > 0 for k in KINDS[1:]), counts

    floor = max(1.0, float(kinds[KINDS[0]]["p50_ms"]))
    total = sum(k["requests"] for k in kinds.values())
    figures: dict[str, Any] = {
        "users": users, "seconds": seconds, "requests": total, "errors": 0,
        "requests/s": round(total / seconds, 1),
        "machine load average (1 min) before": round(load_before, 1), "seed": seed,
    }
    for kind in KINDS[1:]:
        figures[f"{kind} p50 / GET /healthz p50"] = round(kinds[kind]["p50_ms"] / floor, 1)
    rows = ["| request | requests | failures | p50 ms | p95 ms | p50 ÷ /healthz p50 | AWS requests each (warm) |",
            "|---|---|---|---|---|---|---|"]
    for kind in KINDS:
        k = kinds[kind]
        by = counts[kind]
        aws = f"{sum(by.values())} (" + ", ".join(f"{s} {n}" for s, n in sorted(by.items())) + ")" if by else "0"
        rows.append(f"| {kind} | {k['requests']} | {k['failures']} | {k['p50_ms']} | {k['p95_ms']} | "
                    f"{k['p50_ms'] / floor:.1f} | {aws} |")
    record("load", "Load", figures, table="\n".join(rows), order=60, summary=(
        f"`python -m devserver` (started in {started:.1f} s) with {auths} authorizations and {jobs} jobs; "
        f"{users} locust users without think time for {seconds} s, each asking for the four kinds equally "
        "often (GET /jobs and /authorizations with limit=50). One Python process serves the API and "
        "moto (a profile of GET /jobs shows most of its time spent in moto answering the DynamoDB Query), "
        "on a machine that may be shared with other work (see its load average): the latencies are this "
        "machine's, the request counts are what carry over to AWS."))


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
