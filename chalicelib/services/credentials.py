"""Credentials: validated against the method's model, kept only in Secrets Manager."""

from __future__ import annotations

from typing import Any

from chalicelib import logs
from chalicelib.bootstrap import Deps
from chalicelib.domain.catalog import AuthMethodSpec, ProviderSpec
from chalicelib.domain.errors import Invalid
from chalicelib.domain.models import Authorization
from chalicelib.services.validation import validate


def parse(method: AuthMethodSpec, raw: Any, *, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise Invalid("credentials must be an object", fields={prefix: "must be an object"})
    return _never_logged(validate(method.credentials_model, raw, prefix=prefix, what="credentials"))


def _never_logged(model: Any) -> Any:
    """Tell the logger the secret values (chalicelib/logs.py redacts them from every line),
    so that an exception quoting one, e.g. a client library's, cannot carry it to CloudWatch."""
    from pydantic import SecretStr

    logs.redact(*(v.get_secret_value() for v in vars(model).values() if isinstance(v, SecretStr)))
    return model


def to_secret(model: Any) -> dict[str, Any]:
    """Plain values for Secrets Manager (the only place SecretStr values are revealed)."""
    from pydantic import SecretStr

    out: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        out[name] = value.get_secret_value() if isinstance(value, SecretStr) else value
    return out


def load(d: Deps, auth: Authorization, spec: ProviderSpec) -> Any:
    """The authorization's credentials, ready to use: an OAuth access token about to expire
    is refreshed first (a new secret version). Every use goes through here (run steps,
    health checks, options), so none of them meets an expired token. Raises ProviderError
    (auth=True) when the provider refused the refresh."""
    method = spec.method(auth.method)
    credentials = method.credentials_model.model_validate(d.secrets.read(auth.secret_name))
    from chalicelib.services import oauth

    if oauth.due(credentials):
        credentials = method.credentials_model.model_validate(oauth.refresh(d, auth, credentials))
    return _never_logged(credentials)
