from __future__ import annotations

from typing import Any

import pytest

from tests.api.helpers import CrmProvider


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
