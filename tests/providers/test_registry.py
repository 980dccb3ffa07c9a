"""The provider registry: explicit ids, modules imported on first use only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chalicelib.domain.catalog import ProviderSpec
from chalicelib.domain.errors import ErrorKind, Invalid, NotFound
from chalicelib.providers.registry import Registry, default_registry

ROOT = Path(__file__).resolve().parents[2]


class FakeProvider:
    spec = ProviderSpec(id="fake", name="Fake", description="", auth_methods=(), workflows=())


def test_ids_list_amazon_s3() -> None:
    assert "amazon_s3" in Registry().ids()


def test_get_loads_the_module_once() -> None:
    # GIVEN a fresh registry
    registry = Registry()

    # WHEN the S3 provider is fetched twice
    first = registry.get("amazon_s3")

    # THEN it is the module's provider, and the same object both times
    assert first.spec.id == "amazon_s3"
    assert registry.get("amazon_s3") is first


def test_default_registry_is_a_singleton() -> None:
    assert default_registry() is default_registry()


def test_get_unknown_is_not_found() -> None:
    # WHEN an unknown provider is fetched (e.g. from a URL)
    with pytest.raises(NotFound) as caught:
        Registry().get("myspace")

    # THEN it is a 404-kind error
    assert caught.value.kind is ErrorKind.NOT_FOUND
    assert caught.value.code == "provider.not_found"


@pytest.mark.parametrize("field", ["provider", "authorization.provider"])
def test_for_request_unknown_is_invalid_on_the_field(field: str) -> None:
    # WHEN an unknown provider comes in a request body
    with pytest.raises(Invalid) as caught:
        Registry().for_request("myspace", field=field)

    # THEN it is bad input on that field, listing the known providers
    err = caught.value
    assert err.kind is ErrorKind.INVALID
    assert err.code == "provider.unknown"
    assert set(err.fields) == {field}
    assert "amazon_s3" in err.fields[field]


def test_injected_providers_are_served_without_import() -> None:
    # GIVEN a registry with no modules and one injected provider
    fake = FakeProvider()
    registry = Registry(modules={}, extra={"fake": fake})

    # THEN it lists and serves exactly that provider
    assert registry.ids() == ["fake"]
    assert registry.get("fake") is fake
    assert registry.all() == [fake]


def _modules_after(code: str) -> dict[str, bool]:
    probe = (
        "import sys, json\n"
        f"{code}\n"
        "print(json.dumps({m: m in sys.modules for m in "
        "('chalicelib.providers.s3', 'boto3', 'botocore', 'moto')}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    return json.loads(out.stdout)


def test_importing_the_registry_imports_no_provider() -> None:
    # WHEN a fresh interpreter imports the registry and lists ids
    loaded = _modules_after("from chalicelib.providers.registry import Registry; Registry().ids()")

    # THEN no provider module and no AWS SDK was imported (cold start pays for none of them)
    assert loaded == {"chalicelib.providers.s3": False, "boto3": False, "botocore": False, "moto": False}


def test_loading_the_s3_provider_does_not_import_boto3() -> None:
    # WHEN a fresh interpreter loads the S3 provider through the registry
    loaded = _modules_after("from chalicelib.providers.registry import Registry; Registry().get('amazon_s3')")

    # THEN the module is loaded but boto3 waits for the first AWS call
    assert loaded["chalicelib.providers.s3"] is True
    assert loaded["boto3"] is False
    assert loaded["botocore"] is False
