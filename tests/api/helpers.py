"""Small builders shared by the API tests (plain functions, no magic)."""

from __future__ import annotations

import copy
import secrets
import string
from typing import Any

import boto3
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from chalicelib.domain.catalog import AuthMethodSpec, JobType, ProviderSpec, WorkflowSpec
from chalicelib.domain.models import CheckResult, HealthStatus
from chalicelib.domain.statuses import Action, transition
from chalicelib.providers.base import Option, ProviderError

CANARY = "CANARY-s3cr3t-" + "x9" * 8


def access_key_id() -> str:
    return "AKIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))


def s3_credentials(secret: str = CANARY, bucket: str | None = None) -> dict[str, Any]:
    creds: dict[str, Any] = {"access_key_id": access_key_id(), "secret_access_key": secret}
    if bucket:
        creds["bucket"] = bucket
    return creds


def make_bucket(name: str | None = None) -> str:
    name = name or f"bkt-{secrets.token_hex(6)}"
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=name)
    return name


def create_auth(api: Any, *, label: str = "S3 keys", secret: str = CANARY, **extra: Any) -> dict[str, Any]:
    body = {"provider": "amazon_s3", "method": "access_keys", "label": label,
            "credentials": s3_credentials(secret), **extra}
    r = api.post("/authorizations", body)
    assert r.status_code == 201, r.body
    return r.json["data"]


def create_role_auth(api: Any, account: str, label: str = "S3 role") -> dict[str, Any]:
    body = {"provider": "amazon_s3", "method": "assume_role", "label": label,
            "credentials": {"role_arn": f"arn:aws:iam::{account}:role/SwitchyardAccess"}}
    r = api.post("/authorizations", body)
    assert r.status_code == 201, r.body
    return r.json["data"]


def create_job(api: Any, auth_id: str, bucket: str, *, label: str = "Import", start: bool = True,
               **extra: Any) -> dict[str, Any]:
    body = {"provider": "amazon_s3", "job_type": "import", "workflow": "s3_file_import",
            "authorization_id": auth_id, "label": label, "config": {"bucket": bucket},
            "start": start, **extra}
    r = api.post("/jobs", body)
    assert r.status_code == 201, r.body
    return r.json["data"]


def drive(deps: Any, account_id: str, job_id: str, *actions: Action) -> None:
    """Move a job through engine transitions the way the runner will (store-level writes)."""
    for action in actions:
        job = deps.jobs.get(account_id, job_id, consistent=True)
        after = copy.deepcopy(job)
        after.status = transition(job.status, action)
        deps.jobs.save(job, after, expected_version=None, expected_status=job.status)


# -- a provider that exists only in tests, to exercise rules S3 does not trigger --------


class ApiKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_key: SecretStr = Field(min_length=4, json_schema_extra={"x-secret": True})


class Bearer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: SecretStr = Field(min_length=4, json_schema_extra={"x-secret": True})


class CrmExport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    list_id: str = Field(min_length=1)


class CrmProvider:
    """Bulk export needs the API key; the bearer token only enables real-time export."""

    spec = ProviderSpec(
        id="test_crm",
        name="Test CRM",
        description="test double",
        auth_methods=(
            AuthMethodSpec("api_key", "API key", "", ApiKey),
            AuthMethodSpec("bearer", "Bearer token", "", Bearer, verifiable=False),
        ),
        workflows=(
            WorkflowSpec("bulk_export", "Bulk export", JobType.EXPORT, "", ("api_key",), CrmExport,
                         resource_fields=("list_id",)),
            WorkflowSpec("realtime_export", "Real-time export", JobType.EXPORT, "",
                         ("api_key", "bearer"), CrmExport, resource_fields=("list_id",)),
        ),
    )

    def check(self, method: str, credentials: Any, resources: dict[str, str], counter: Any = None) -> CheckResult:
        key = credentials.api_key.get_secret_value()
        if key.startswith("flaky"):
            raise ProviderError("HTTP 503 from the CRM", transient=True)
        if key.startswith("bad"):
            return CheckResult(HealthStatus.UNHEALTHY, "revoked: the API key was revoked")
        if resources.get("list_id", "").startswith("missing"):
            return CheckResult(HealthStatus.UNHEALTHY, "list does not exist", provider_account="crm-1")
        return CheckResult(HealthStatus.HEALTHY, "ok", provider_account=key.split("-")[0])

    def options(self, method: str, credentials: Any, workflow: str, field: str, params: dict[str, str],
                counter: Any = None) -> list[Option]:
        return [Option("l1", "List one")]

    def credential_hint(self, method: str, credentials: Any) -> str | None:
        return None
