"""Provider id -> module, imported on first use so cold start never pays for all of them;
and each workflow's step, typed by its role (providers/roles.py), its module imported on
the first run that needs it."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping
from typing import cast

from chalicelib.domain.catalog import Role
from chalicelib.domain.errors import Invalid, NotFound
from chalicelib.providers.base import Provider, ProviderError
from chalicelib.providers.roles import Destination, Enricher, Source, Task

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

    # -- steps, by role -------------------------------------------------------------------
    # Each is checked against its protocol when built (_build), so the cast cannot lie.

    def source(self, provider_id: str, workflow_id: str) -> Source:
        return cast(Source, self._build(provider_id, workflow_id, Role.SOURCE))

    def destination(self, provider_id: str, workflow_id: str) -> Destination:
        return cast(Destination, self._build(provider_id, workflow_id, Role.DESTINATION))

    def enricher(self, provider_id: str, workflow_id: str) -> Enricher:
        return cast(Enricher, self._build(provider_id, workflow_id, Role.ENRICHER))

    def task(self, provider_id: str, workflow_id: str) -> Task:
        return cast(Task, self._build(provider_id, workflow_id, Role.TASK))

    def _build(self, provider_id: str, workflow_id: str, role: Role) -> object:
        provider = self.get(provider_id)
        ref = next((w.step for w in provider.spec.workflows if w.id == workflow_id), None)
        if ref is None or ref.role is not role:
            raise ProviderError(f"workflow {workflow_id!r} has no {STEP_WORDS[role]} step", field="workflow")
        module, _, name = ref.factory.partition(":")
        step: object = getattr(importlib.import_module(module), name)(provider)
        if not isinstance(step, PROTOCOLS[role]):
            # A declaration naming the wrong factory: a bug of ours, not the user's configuration.
            raise TypeError(f"{type(step).__name__} does not implement the {role.value} role")
        return step


PROTOCOLS: dict[Role, type] = {Role.SOURCE: Source, Role.DESTINATION: Destination, Role.ENRICHER: Enricher,
                               Role.TASK: Task}
# How run logs have always named each role's step.
STEP_WORDS = {Role.SOURCE: "import", Role.DESTINATION: "export", Role.ENRICHER: "enrichment", Role.TASK: "task"}


_default: Registry | None = None


def default_registry() -> Registry:
    global _default
    if _default is None:
        _default = Registry()
    return _default
