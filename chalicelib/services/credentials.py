"""Credentials: validated against the method's model, kept only in Secrets Manager."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib import logs
from chalicelib.domain.access import Capability, Principal
from chalicelib.domain.catalog import AuthMethodSpec, ProviderSpec
from chalicelib.domain.errors import Invalid
from chalicelib.domain.ids import role_session_name
from chalicelib.domain.models import Authorization
from chalicelib.services import oauth_clients
from chalicelib.services.validation import validate
from chalicelib.store import aws as aws_clients

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.services.needs import CredentialsNeeds


def generated_fields(model: Any) -> dict[str, str]:
    """Fields Switchyard fills itself ({field: what fills it}), never taken from a request."""
    out = {}
    for name, f in model.model_fields.items():
        extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
        if extra.get("x-generated"):
            out[name] = str(extra["x-generated"])
    return out


def input_schema(model: Any) -> dict[str, Any]:
    """The JSON schema a client fills: the model's, without the generated fields."""
    schema = model.model_json_schema()
    hidden = generated_fields(model)
    if hidden:
        schema["properties"] = {k: v for k, v in schema.get("properties", {}).items() if k not in hidden}
        if "required" in schema:
            schema["required"] = [k for k in schema["required"] if k not in hidden]
    return schema


def generated_values(d: CredentialsNeeds, account_id: str, method: AuthMethodSpec) -> dict[str, str]:
    """The values of the method's generated fields for this account (the account's AWS
    external id is created on first use)."""
    wanted = generated_fields(method.credentials_model)
    out = {}
    for name, source in wanted.items():
        if source == "account_id":
            out[name] = account_id
        elif source == "aws_external_id":
            out[name] = d.accounts.aws_external_id(account_id)
        else:  # a model naming a source nobody fills is a programming error
            raise ValueError(f"no generator for {source!r} ({name})")
    return out


def parse(method: AuthMethodSpec, raw: Any, *, prefix: str, generated: dict[str, str] | None = None) -> Any:
    """Validate credentials from a request; `generated` holds the values of the fields
    Switchyard sets itself (generated_values), which the request must leave out."""
    if not isinstance(raw, dict):
        raise Invalid("credentials must be an object", fields={prefix: "must be an object"})
    for name in generated_fields(method.credentials_model):
        if name in raw:
            why = "is set by Switchyard, not sent: leave it out"
            raise Invalid(f"the {name.replace('_', ' ')} {why} of the credentials",
                          fields={f"{prefix}.{name}": why})
    return _never_logged(validate(method.credentials_model, {**raw, **(generated or {})},
                                  prefix=prefix, what="credentials"))


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


class SecretAhead:
    """The secret an authorization of this account with this id is stored under, read on
    another thread while the caller reads the authorization itself: the name is known
    before the authorization is. It holds the caller's own account id, so an id from
    another account only ever names a secret that does not exist."""

    def __init__(self, d: CredentialsNeeds, account_id: str, auth_id: str) -> None:
        self.name = d.secrets.name_for(account_id, auth_id)
        self._read = aws_clients.Beside(lambda: d.secrets.read(self.name), "secret-read")

    def settle(self) -> None:
        """Wait for the read (its request joins this thread's tally), used or not."""
        self._read.exception()

    def take(self, name: str) -> dict[str, Any] | None:
        """The secret read ahead when it is `name` (its read error raised here); None when
        the authorization turned out to keep its secret elsewhere."""
        if name != self.name:
            self.settle()
            return None
        return self._read.result()


def load(d: CredentialsNeeds, auth: Authorization, spec: ProviderSpec, ahead: SecretAhead | None = None) -> Any:
    """The authorization's credentials, ready to use: an OAuth access token about to expire
    is refreshed first (a new secret version). Every use goes through here (run steps,
    health checks, options), so none of them meets an expired token. Raises ProviderError
    (auth=True) when the provider refused the refresh. `ahead`: the secret, if already
    being read."""
    method = spec.method(auth.method)
    stored = ahead.take(auth.secret_name) if ahead is not None else None
    if stored is None:
        stored = d.secrets.read(auth.secret_name)
    for name, source in generated_fields(method.credentials_model).items():
        if source == "account_id" and not stored.get(name):
            # Stored before the field existed: fill it now (nothing rewritten).
            stored = {**stored, name: auth.account_id}
    credentials = method.credentials_model.model_validate(stored)
    if oauth_clients.due(credentials):
        credentials = method.credentials_model.model_validate(
            oauth_clients.refresh(d, auth, credentials, to_secret(credentials)))
    return _never_logged(credentials)


def aws_trust(d: CredentialsNeeds, p: Principal) -> dict[str, Any]:
    """What a customer puts on a role Switchyard assumes: the account's generated external
    id, and Switchyard's AWS account as the principal."""
    p.require(Capability.MANAGE_INTEGRATIONS)
    external_id = d.accounts.aws_external_id(p.account_id)
    partition, own_account = d.own_identity()
    principal = f"arn:{partition}:iam::{own_account}:root"
    return {
        "external_id": external_id,
        "principal": principal,
        "session_name": role_session_name(p.account_id),
        "trust_policy": {
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "SwitchyardAssumesThisRole",
                "Effect": "Allow",
                "Principal": {"AWS": principal},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
            }],
        },
    }
