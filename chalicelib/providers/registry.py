"""Provider id -> module, imported on first use so cold start never pays for all of them."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping

from chalicelib.domain.errors import Invalid, NotFound
from chalicelib.providers.base import Provider

# A provider is listed here only once its check, options and workflows work.
MODULES: dict[str, str] = {
    "amazon_kinesis": "chalicelib.providers.kinesis",
    "amazon_s3": "chalicelib.providers.s3",
    "amazon_sqs": "chalicelib.providers.sqs",
    "fullcontact": "chalicelib.providers.fullcontact",
    "google_tag_manager": "chalicelib.providers.gtm",
    "http_api": "chalicelib.providers.http_api",
    "http_enrichment": "chalicelib.providers.http_enrichment",
    "mailchimp": "chalicelib.providers.mailchimp",
    "webhook": "chalicelib.providers.webhook",
}


class Registry:
    def __init__(self, modules: Mapping[str, str] | None = None, extra: Mapping[str, Provider] | None = None) -> None:
        self._modules = dict(MODULES if modules is None else modules)
        self._loaded: dict[str, Provider] = dict(extra or {})
        self._lock = threading.Lock()

    def ids(self) -> list[str]:
        return sorted(set(self._modules) | set(self._loaded))

    def get(self, provider_id: str) -> Provider:
        found = self._loaded.get(provider_id)
        if found is not None:
            return found
        path = self._modules.get(provider_id)
        if path is None:
            raise NotFound(f"provider {provider_id!r} does not exist", code="provider.not_found")
        with self._lock:
            found = self._loaded.get(provider_id)
            if found is None:
                found = importlib.import_module(path).PROVIDER
                self._loaded[provider_id] = found
        return found

    def for_request(self, provider_id: str, *, field: str = "provider") -> Provider:
        """Like get(), but an unknown id in a request body is bad input (422), not a 404."""
        try:
            return self.get(provider_id)
        except NotFound:
            known = ", ".join(self.ids())
            raise Invalid(
                f"provider {provider_id!r} does not exist; use one of: {known}",
                code="provider.unknown",
                fields={field: f"unknown provider; use one of: {known}"},
            ) from None

    def all(self) -> list[Provider]:
        return [self.get(i) for i in self.ids()]


_default: Registry | None = None


def default_registry() -> Registry:
    global _default
    if _default is None:
        _default = Registry()
    return _default
