from __future__ import annotations

from typing import Any

import pytest

from tests.api.helpers import CrmProvider, create_auth, create_job, make_bucket


@pytest.fixture()
def crm(deps: Any) -> CrmProvider:
    """Register the test-only CRM provider next to the real catalog (dependency injection)."""
    from chalicelib.providers.registry import Registry

    provider = CrmProvider()
    deps.registry = Registry(extra={"test_crm": provider})
    return provider


@pytest.fixture()
def tenant(new_tenant: Any) -> Any:
    return new_tenant("Acme")


@pytest.fixture()
def api(api_for: Any, tenant: Any) -> Any:
    return api_for(tenant.admin_token)


@pytest.fixture()
def world(api: Any) -> dict[str, Any]:
    """A bucket, an S3 authorization and a job importing from it: what bad input is sent to."""
    bucket = make_bucket()
    auth = create_auth(api)
    job = create_job(api, auth["id"], bucket)
    return {"auth": auth, "job": job, "bucket": bucket}
