"""OAuth 2.0 authorization-code flow for providers that offer it (Mailchimp).

start:    an authenticated user asks for the provider's authorize URL. A random `state`
          (bound to the account, the user and a browser nonce set as a cookie) is stored
          for 10 minutes; the URL carries client_id, redirect_uri and state.
callback: the browser comes back from the provider with `code` and `state` (no API token:
          it is a top-level navigation). The state is taken in one conditional delete
          (single use, and only with the nonce cookie of the browser that started the
          flow), the code is exchanged for a token at the provider's token endpoint with the
          app's client id and secret (Secrets Manager), the account's data center is read
          from the provider's metadata, and the authorization is created like any other
          (checked first; the token goes to its secret only).

oauthlib builds the authorize URL and the token request and parses the token answer; the
requests go through the providers' HTTP layer (timeouts, retries, redaction, SSRF guard).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from chalicelib.domain.access import Capability, Principal, Role
from chalicelib.domain.errors import AppError, ErrorKind, Unavailable
from chalicelib.domain.models import Authorization
from chalicelib.providers.base import ProviderError
from chalicelib.services import authorizations as auth_svc
from chalicelib.services.deps import Deps

STATE_SECONDS = 600
PROVIDERS = ("mailchimp",)
COOKIE = "sy_oauth"


@dataclass(frozen=True)
class Started:
    authorize_url: str
    expires_at: int
    nonce: str  # goes to the browser as a cookie, never anywhere else


@dataclass(frozen=True)
class OAuthApp:
    client_id: str
    client_secret: str
    redirect_uri: str


def secret_name(provider: str) -> str:
    from chalicelib.config import settings

    return f"{settings().secret_prefix}/oauth/{provider}"


def _app(d: Deps, provider: str) -> OAuthApp:
    from botocore.exceptions import ClientError

    try:
        raw = d.secrets.read(secret_name(provider))
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code == "ResourceNotFoundException":
            raise Unavailable(f"{provider} OAuth is not configured for this stage (no client credentials in "
                              f"Secrets Manager at {secret_name(provider)})", code="oauth.not_configured") from None
        raise Unavailable("the OAuth client credentials could not be read right now") from None
    try:
        return OAuthApp(str(raw["client_id"]), str(raw["client_secret"]), str(raw["redirect_uri"]))
    except KeyError:
        raise Unavailable(f"{provider} OAuth client credentials are incomplete (client_id, client_secret, "
                          "redirect_uri)", code="oauth.not_configured") from None


def _urls() -> tuple[str, str, str]:
    from chalicelib.config import settings

    base = settings().mailchimp_oauth_url.rstrip("/")
    return f"{base}/oauth2/authorize", f"{base}/oauth2/token", f"{base}/oauth2/metadata"


def bad_flow(message: str, code: str, field: str = "state") -> AppError:
    return AppError(message, code=code, kind=ErrorKind.BAD_REQUEST, fields={field: message})


def start(d: Deps, p: Principal, provider: str, label: str | None) -> Started:
    from oauthlib.oauth2 import WebApplicationClient

    from chalicelib.store.oauth import FlowState, digest

    p.require(Capability.MANAGE_INTEGRATIONS)
    app = _app(d, provider)
    state = secrets.token_urlsafe(32)
    nonce = secrets.token_urlsafe(32)
    expires = int(time.time()) + STATE_SECONDS
    d.oauth_states.put(state, FlowState(provider=provider, account_id=p.account_id, user_id=p.user_id,
                                        role=p.role.value, token_id=p.token_id, nonce_hash=digest(nonce),
                                        label=label or "", expires_at=expires))
    authorize, _, _ = _urls()
    url = WebApplicationClient(app.client_id).prepare_request_uri(authorize, redirect_uri=app.redirect_uri,
                                                                  state=state)
    return Started(authorize_url=url, expires_at=expires, nonce=nonce)


def callback(d: Deps, provider: str, *, code: str | None, state: str | None, nonce: str | None,
             error: str | None) -> Authorization:
    from chalicelib.store.oauth import StateMismatch, StateUnknown

    if not state:
        raise bad_flow("the callback has no state", "oauth.invalid_state")
    if not nonce:
        raise bad_flow("this browser did not start this authorization (its cookie is missing); start again "
                       "from Switchyard", "oauth.state_mismatch")
    try:
        flow = d.oauth_states.take(state, nonce)
    except StateMismatch:
        raise bad_flow("this authorization was started by another user or browser; start again from "
                       "Switchyard", "oauth.state_mismatch") from None
    except StateUnknown:
        raise bad_flow("unknown or already used state: each authorization link works once; start again "
                       "from Switchyard", "oauth.invalid_state") from None
    if flow.provider != provider:
        raise bad_flow("this state belongs to another provider's flow", "oauth.invalid_state")
    if flow.expires_at < time.time():
        raise bad_flow(f"the authorization took longer than {STATE_SECONDS // 60} minutes; start again",
                       "oauth.state_expired")
    if error:
        raise bad_flow(f"Mailchimp did not grant access ({error[:100]})", "oauth.denied", "error")
    if not code:
        raise bad_flow("the callback has no code", "oauth.invalid_code", "code")
    app = _app(d, provider)
    token = _exchange(app, code)
    meta = _metadata(token)
    principal = Principal(account_id=flow.account_id, user_id=flow.user_id, role=Role(flow.role),
                          token_id=flow.token_id)
    name = str(meta.get("accountname") or "") or None
    new = auth_svc.NewAuthorization(
        provider=provider, method="oauth", label=flow.label or f"Mailchimp {name or meta['dc']}",
        description="Connected with OAuth", credentials={"access_token": token, "dc": meta["dc"],
                                                        "account_name": name})
    auth, secret_value = auth_svc.prepare(d, principal, new, resources={})
    auth_svc.store_secret(d, auth, secret_value)
    try:
        d.auths.put_new(auth)
    except Exception:
        d.secrets.delete_now(auth.secret_name)
        raise
    return auth


def _client(secrets_: list[str]) -> Any:
    from chalicelib.providers.http import HttpClient

    return HttpClient("mailchimp", label="Mailchimp", secrets=secrets_)


def _exchange(app: OAuthApp, code: str) -> str:
    from oauthlib.oauth2 import OAuth2Error, WebApplicationClient

    from chalicelib.providers.http import HttpError

    _, token_url, _ = _urls()
    client = WebApplicationClient(app.client_id)
    body = client.prepare_request_body(code=code, redirect_uri=app.redirect_uri, client_secret=app.client_secret,
                                       include_client_id=True)
    try:
        # Not idempotent: an authorization code is single use.
        resp = _client([app.client_secret, code]).request(
            "POST", token_url, "oauth.token", body=body.encode(), idempotent=False,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"})
        token = client.parse_request_body_response(resp.text)
    except HttpError as exc:
        if exc.transient:
            raise Unavailable(f"Mailchimp could not be reached to finish the authorization: {exc.reason}",
                              code="provider.unavailable") from None
        raise bad_flow(f"Mailchimp refused the authorization code: {exc.words or exc.reason}; start again",
                       "oauth.exchange_failed", "code") from None
    except (OAuth2Error, ValueError) as exc:
        why = getattr(exc, "description", None) or type(exc).__name__
        raise bad_flow(f"Mailchimp's token answer was not usable ({why})", "oauth.exchange_failed") from None
    return str(token["access_token"])


def _metadata(token: str) -> dict[str, Any]:
    import re

    from chalicelib.providers.http import HttpError

    _, _, meta_url = _urls()
    try:
        doc = _client([token]).request("GET", meta_url, "oauth.metadata",
                                       headers={"Authorization": f"OAuth {token}"}).json() or {}
    except (HttpError, ProviderError) as exc:
        if exc.transient:
            raise Unavailable(f"Mailchimp's account metadata could not be read: {exc.reason}",
                              code="provider.unavailable") from None
        raise bad_flow(f"Mailchimp refused the new token: {exc.reason}", "oauth.exchange_failed") from None
    if not re.fullmatch(r"[a-z]{2,4}[0-9]{1,3}", str(doc.get("dc") or "")):
        raise bad_flow("Mailchimp's metadata named no data center", "oauth.exchange_failed")
    return dict(doc)


__all__ = ["COOKIE", "PROVIDERS", "STATE_SECONDS", "Started", "callback", "secret_name", "start"]
