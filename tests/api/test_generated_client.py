"""A Python client generated from the served OpenAPI document (openapi-python-client, a
test-only dependency) runs the README's walkthrough over real HTTP: operation ids are the
client's method names, so they must name actions and stay unique."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import requests

from chalicelib.runs.engine import EngineOptions
from tests.api.helpers import make_bucket, s3_credentials
from tests.engine.conftest import Drain
from tests.proof.served import serve_app

PACKAGE = "switchyard_client"


def _generate(doc_path: Path, into: Path) -> Any:
    """Run the generator as its CLI, then import the package it wrote."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}  # its ruff step
    done = subprocess.run(
        [str(bin_dir / "openapi-python-client"), "generate", "--path", str(doc_path), "--meta", "none",
         "--output-path", str(into / PACKAGE)],
        capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    # A warning means a part of the document was skipped: every operation must come through.
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr
    sys.path.insert(0, str(into))
    importlib.invalidate_caches()
    return importlib.import_module(PACKAGE)


def _op(tag: str, name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.api.{tag}.{name}")


def test_generated_client_runs_the_readme_walkthrough(deps, new_tenant, tmp_path):
    tenant = new_tenant("Client")
    bucket = make_bucket()
    rows = "email,first_name\n" + "".join(f"user{i}@example.com,U{i}\n" for i in range(20))
    boto3.client("s3", region_name="us-east-1").put_object(Bucket=bucket, Key="imports/people.csv",
                                                            Body=rows.encode())
    drain = Drain(deps, EngineOptions(max_records=1000))
    drain.purge()
    try:
        with serve_app() as base:
            doc = tmp_path / "openapi.json"
            doc.write_bytes(requests.get(base + "/api/v1/openapi.json", timeout=30).content)
            pkg = _generate(doc, tmp_path)
            # The client groups operations by tag, one module per action.
            grouped = {p.parent.name: sorted(m.stem for m in p.parent.glob("*.py") if m.stem != "__init__")
                       for p in (tmp_path / PACKAGE / "api").glob("*/__init__.py")}
            assert {"list_jobs", "create_job", "get_job", "update_job", "delete_job", "pause_job", "resume_job",
                    "run_job", "list_job_runs", "list_job_logs", "get_job_activity", "preview_job"} == set(grouped["jobs"])
            assert "create_authorization" in grouped["authorizations"]
            assert "list_field_choices" in grouped["providers"]
            _walkthrough(pkg, pkg.AuthenticatedClient(base_url=base, token=tenant.admin_token,
                                                      raise_on_unexpected_status=True), bucket, drain)
    finally:
        sys.path[:] = [p for p in sys.path if p != str(tmp_path)]
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def _walkthrough(pkg: Any, client: Any, bucket: str, drain: Drain) -> None:
    models = importlib.import_module(f"{PACKAGE}.models")
    # Create an authorization (its credentials are checked first)
    made = _op("authorizations", "create_authorization").sync_detailed(client=client, body=models.AuthorizationCreate.from_dict({
        "provider": "amazon_s3", "method": "access_keys", "label": "Demo bucket keys",
        "credentials": s3_credentials(bucket=bucket)}))
    assert made.status_code == 201, made.content
    auth = made.parsed.data
    assert auth.label == "Demo bucket keys" and auth.health.status == "healthy"
    # The wizard's live choices come through it
    choices = _op("providers", "list_field_choices").sync(
        "amazon_s3", "s3_file_import", "prefix", client=client, authorization_id=auth.id, bucket=bucket)
    assert [c.value for c in choices.data] == ["imports/"]
    # A one-time import that starts in 2099 sleeps until then
    job = _op("jobs", "create_job").sync(client=client, body=models.JobCreate.from_dict({
        "provider": "amazon_s3", "job_type": "import", "workflow": "s3_file_import",
        "authorization_id": auth.id, "label": "Demo profiles import",
        "config": {"bucket": bucket, "prefix": "imports/"},
        "schedule": {"type": "once", "at": "2099-01-01T09:00:00Z"}})).data
    assert job.status == "sleeping" and job.next_run_at == "2099-01-01T09:00:00Z"
    listed = _op("jobs", "list_jobs").sync(client=client, limit=10).data
    assert [j.id for j in listed] == [job.id]
    # Deleting the authorization is refused while the job uses it; the answer names the job
    refused = _op("authorizations", "delete_authorization").sync_detailed(auth.id, client=client)
    assert refused.status_code == 409
    assert refused.parsed.error.code == "authorization.in_use"
    assert "Demo profiles import" in refused.parsed.error.message
    # Pause, pause again (refused, saying what is allowed), resume
    assert _op("jobs", "pause_job").sync(job.id, client=client).data.status == "paused"
    again = _op("jobs", "pause_job").sync_detailed(job.id, client=client)
    assert again.status_code == 409 and again.parsed.error.code == "job.illegal_transition"
    assert _op("jobs", "resume_job").sync(job.id, client=client).data.status == "sleeping"
    # Run it now: the runs queue is delivered to the runner, as the local event loop does
    assert _op("jobs", "run_job").sync(job.id, client=client).data.status == "sleeping"
    assert drain.run() >= 1 and not drain.errors, drain.errors
    assert _op("jobs", "get_job").sync(job.id, client=client).data.status == "completed"
    [run] = _op("jobs", "list_job_runs").sync(job.id, client=client).data
    assert (run.status, run.added, run.removed, run.omitted) == ("succeeded", 20, 0, 0)
    activity = _op("jobs", "get_job_activity").sync(job.id, client=client).data
    assert sum(p.added for p in activity.series) == 20
    logs = _op("jobs", "list_job_logs").sync(job.id, client=client).data
    assert logs, "a finished run leaves log lines"
    # A completed job no longer holds its authorization
    gone = _op("authorizations", "delete_authorization").sync_detailed(auth.id, client=client)
    assert gone.status_code == 204
