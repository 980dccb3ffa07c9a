"""OAuth 2.0 authorization-code flow for providers that offer it (Mailchimp, Google Tag
Manager), and the refresh of tokens that expire (Google).

start:    an authenticated user asks for the provider's authorize URL. A random `state`
          (bound to the account, the user and a browser nonce set as a cookie) is stored
          for 10 minutes; the URL carries client_id, redirect_uri, state and the provider's
          own parameters (Google: scopes, offline access).
modes:    `return=popup` (default: the SPA watches a popup and reads the callback's JSON error)
          or `return=redirect` (popups blocked: the whole page went to the provider). The
          mode is stored with the state and also marks the browser nonce (prefix "r."), so
          a callback that fails before its state can be read still knows; in redirect mode
          a failure comes back to the SPA as `/#/authorizations?oauth_error=<code>&message=`
          (a fixed path on the app's own origin, never a caller-chosen URL).
callback: the browser comes back from the provider with `code` and `state` (no API token:
          it is a top-level navigation). The state is taken in one conditional delete
          (single use, and only with the nonce cookie of the browser that started the
          flow), the code is exchanged for tokens at the provider's token endpoint with the
          app's client id and secret (Secrets Manager), the provider's part turns the
          answer into the auth method's credentials (Mailchimp: its metadata names the
          data center), and the authorization is created like any other (checked first;
          the tokens go to its secret only).
refresh:  credentials with an `expires_at` less than 5 minutes away are refreshed with the
          refresh token when they are loaded (services/credentials.py: before a run step,
          a health check, options); the new token becomes a new secret version. A refusal
          (`invalid_grant`: revoked or expired) is ProviderError(auth=True).

What differs per provider is one `Flow` (URLs, extra authorize parameters, turning a token
answer into credentials); the rest is shared. oauthlib builds the authorize URL and the
token requests and parses the answers; the requests go through the providers' HTTP layer
(timeouts, retries, redaction, SSRF guard).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chalicelib.bootstrap import Deps
from chalicelib.config import settings
from chalicelib.domain.access import GRANTS, Capability, Principal, Role
from chalicelib.domain.errors import AppError, ErrorKind, NotFound, Unavailable
from chalicelib.domain.models import Authorization
from chalicelib.providers.base import ProviderError
from chalicelib.services import authorizations as auth_svc
from chalicelib.store.oauth import FlowState, StateMismatch, StateUnknown, digest

STATE_SECONDS = 600
# The cookie outlives the state by an hour so that a late callback still names this browser:
# it then gets "took longer than 10 minutes" (the state's own expiry) instead of "cookie
# missing". The state stays single use and expires on the server.
COOKIE_SECONDS = STATE_SECONDS + 3600
COOKIE = "sy_oauth"
MODES = ("popup", "redirect")
REDIRECT_NONCE = "r."  # token_urlsafe never contains a dot
REFRESH_MARGIN_SECONDS = 300  # an access token with less left than this is refreshed first


@dataclass(frozen=True)
class Started:
    authorize_url: str
    expires_at: int
    nonce: str  # goes to the browser as a cookie, never anywhere else


@dataclass(frozen=True)
class Finished:
    """A callback's outcome: the new authorization, or (redirect mode only) the error to
    send back to the SPA; popup-mode errors are raised."""

    auth: Authorization | None
    error: AppError | None = None


@dataclass(frozen=True)
class OAuthApp:
    client_id: str
    client_secret: str
    redirect_uri: str


@dataclass(frozen=True)
class Flow:
    """The provider-specific part of an OAuth flow."""

    provider: str
    name: str  # in messages: "Mailchimp did not grant access"
    authorize_url: Callable[[], str]
    token_url: Callable[[], str]
    # Turns the token answer (oauthlib's parsed dict) into the auth method's credentials
    # and a default label; may call the provider (Mailchimp's metadata).
    credentials: Callable[[dict[str, Any]], tuple[dict[str, Any], str]]
    extra: Callable[[], dict[str, str]] = dict  # more authorize URL parameters (scope, access_type)


def _mailchimp_urls() -> str:
    return settings().mailchimp_oauth_url.rstrip("/")


def _google_extra() -> dict[str, str]:
    from chalicelib.providers.gtm import SCOPES

    # offline: a refresh token; consent: Google issues one only when the consent screen is
    # shown, and a user connecting a second time would otherwise get none.
    return {"scope": " ".join(SCOPES), "access_type": "offline", "prompt": "consent",
            "include_granted_scopes": "true"}


def _google_credentials(token: dict[str, Any]) -> tuple[dict[str, Any], str]:
    if not token.get("refresh_token"):
        raise bad_flow("Google issued no refresh token; remove Switchyard's access in your Google account "
                       "(Security → Third-party access), then start again", "oauth.exchange_failed")
    expires_in = int(token.get("expires_in") or 3600)
    scope = token.get("scope")  # oauthlib hands it over as a list
    creds = {"access_token": str(token["access_token"]), "refresh_token": str(token["refresh_token"]),
             "expires_at": int(time.time()) + expires_in,
             "scope": " ".join(scope) if isinstance(scope, list) else scope}
    return creds, "Google Tag Manager"


def _mailchimp_credentials(token: dict[str, Any]) -> tuple[dict[str, Any], str]:
    access = str(token["access_token"])
    meta = _mailchimp_metadata(access)
    name = str(meta.get("accountname") or "") or None
    return {"access_token": access, "dc": meta["dc"], "account_name": name}, f"Mailchimp {name or meta['dc']}"


def _settings() -> Any:
    return settings()


FLOWS: dict[str, Flow] = {
    "mailchimp": Flow(
        provider="mailchimp", name="Mailchimp",
        authorize_url=lambda: f"{_mailchimp_urls()}/oauth2/authorize",
        token_url=lambda: f"{_mailchimp_urls()}/oauth2/token",
        credentials=_mailchimp_credentials),
    "google_tag_manager": Flow(
        provider="google_tag_manager", name="Google",
        authorize_url=lambda: str(_settings().google_authorize_url),
        token_url=lambda: f"{_settings().google_oauth_url.rstrip('/')}/token",
        credentials=_google_credentials, extra=_google_extra),
}
PROVIDERS = tuple(FLOWS)


def flow_of(provider: str) -> Flow:
    found = FLOWS.get(provider)
    if found is None:
        raise NotFound(f"provider {provider!r} has no OAuth flow; use one of: {', '.join(PROVIDERS)}",
                       code="oauth.provider_not_found")
    return found


def secret_name(provider: str) -> str:
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


def bad_flow(message: str, code: str, field: str = "state") -> AppError:
    return AppError(message, code=code, kind=ErrorKind.BAD_REQUEST, fields={field: message})


def start(d: Deps, p: Principal, provider: str, label: str | None, mode: str | None = None) -> Started:
    from oauthlib.oauth2 import WebApplicationClient

    p.require(Capability.MANAGE_INTEGRATIONS)
    flow = flow_of(provider)
    app = _app(d, provider)
    mode = mode or "popup"
    if mode not in MODES:
        raise bad_flow(f"must be one of: {', '.join(MODES)}", "request.invalid_query", "return")
    state = secrets.token_urlsafe(32)
    nonce = (REDIRECT_NONCE if mode == "redirect" else "") + secrets.token_urlsafe(32)
    expires = int(time.time()) + STATE_SECONDS
    d.oauth_states.put(state, FlowState(provider=provider, account_id=p.account_id, user_id=p.user_id,
                                        role=p.role.value, token_id=p.token_id, nonce_hash=digest(nonce),
                                        label=label or "", expires_at=expires, mode=mode))
    url = WebApplicationClient(app.client_id).prepare_request_uri(
        flow.authorize_url(), redirect_uri=app.redirect_uri, state=state, **flow.extra())
    return Started(authorize_url=url, expires_at=expires, nonce=nonce)


def callback(d: Deps, provider: str, *, code: str | None, state: str | None, nonce: str | None,
             error: str | None) -> Finished:
    """Finish a flow. Errors of a flow started in redirect mode are returned (the route
    sends the browser back to the SPA with them); all others are raised (JSON). An unknown
    provider is always raised."""
    flow = flow_of(provider)
    taken: list[FlowState] = []
    try:
        return Finished(_finish(d, flow, code=code, state=state, nonce=nonce, error=error, taken=taken))
    except AppError as exc:
        # The stored mode once the state was read; before that, the mark on this browser's nonce.
        redirect = taken[0].mode == "redirect" if taken else (nonce or "").startswith(REDIRECT_NONCE)
        if not redirect:
            raise
        return Finished(None, exc)


def _finish(d: Deps, flow: Flow, *, code: str | None, state: str | None, nonce: str | None, error: str | None,
            taken: list[Any]) -> Authorization:
    provider = flow.provider
    if not state:
        raise bad_flow("the callback has no state", "oauth.invalid_state")
    if not nonce:
        raise bad_flow("this browser did not start this authorization (its cookie is missing); start again "
                       "from Switchyard", "oauth.state_mismatch")
    try:
        flow_state = d.oauth_states.take(state, nonce)
    except StateMismatch:
        raise bad_flow("this authorization was started by another user or browser; start again from "
                       "Switchyard", "oauth.state_mismatch") from None
    except StateUnknown:
        raise bad_flow("unknown or already used state: each authorization link works once; start again "
                       "from Switchyard", "oauth.invalid_state") from None
    taken.append(flow_state)
    if flow_state.provider != provider:
        raise bad_flow("this state belongs to another provider's flow", "oauth.invalid_state")
    if flow_state.expires_at < time.time():
        raise bad_flow(f"the authorization took longer than {STATE_SECONDS // 60} minutes; start again",
                       "oauth.state_expired")
    if error:
        # The provider's error code comes from the URL: only its word characters are repeated.
        why = re.sub(r"[^A-Za-z0-9_.\- ]", "", error)[:100] or "no reason given"
        raise bad_flow(f"{flow.name} did not grant access ({why})", "oauth.denied", "error")
    if not code:
        raise bad_flow("the callback has no code", "oauth.invalid_code", "code")
    # Before the code is spent: the token that started the flow must still be live, and its
    # role (read now, not at the start) must still allow connecting providers.
    principal = _starter(d, flow_state)
    app = _app(d, provider)
    token = _exchange(flow, app, code)
    credentials, label = flow.credentials(token)
    new = auth_svc.NewAuthorization(provider=provider, method="oauth", label=flow_state.label or label,
                                    description="Connected with OAuth", credentials=credentials)
    auth, secret_value = auth_svc.prepare(d, principal, new, resources={})
    auth_svc.store_secret(d, auth, secret_value)
    try:
        d.auths.put_new(auth)
    except Exception:
        d.secrets.delete_now(auth.secret_name)
        raise
    auth_svc.audit_created(d, principal, auth)
    return auth


def _starter(d: Deps, flow_state: Any) -> Principal:
    token = d.accounts.get_token(flow_state.token_id) if flow_state.token_id else None
    if token is None or (token.account_id, token.user_id) != (flow_state.account_id, flow_state.user_id):
        raise AppError("the API token that started this authorization was revoked before it finished; "
                       "nothing was connected", code="oauth.token_revoked", kind=ErrorKind.FORBIDDEN)
    principal = Principal(account_id=token.account_id, user_id=token.user_id, role=Role(token.role),
                          token_id=token.id)
    if Capability.MANAGE_INTEGRATIONS not in GRANTS[principal.role]:
        raise AppError("the API token that started this authorization may no longer connect providers; "
                       "nothing was connected", code="oauth.token_revoked", kind=ErrorKind.FORBIDDEN)
    return principal


def _client(flow: Flow, secrets_: list[str]) -> Any:
    from chalicelib.providers.http import HttpClient

    return HttpClient(flow.provider, label=flow.name, secrets=secrets_)


def _post_form(flow: Flow, body: str, operation: str, secrets_: list[str], *, idempotent: bool) -> Any:
    from oauthlib.oauth2 import WebApplicationClient

    resp = _client(flow, secrets_).request(
        "POST", flow.token_url(), operation, body=body.encode(), idempotent=idempotent,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"})
    return WebApplicationClient("").parse_request_body_response(resp.text)


def _exchange(flow: Flow, app: OAuthApp, code: str) -> dict[str, Any]:
    from oauthlib.oauth2 import OAuth2Error, WebApplicationClient

    from chalicelib.providers.http import HttpError

    body = WebApplicationClient(app.client_id).prepare_request_body(
        code=code, redirect_uri=app.redirect_uri, client_secret=app.client_secret, include_client_id=True)
    try:
        # Not idempotent: an authorization code is single use.
        token = _post_form(flow, body, "oauth.token", [app.client_secret, code], idempotent=False)
    except HttpError as exc:
        if exc.transient:
            raise Unavailable(f"{flow.name} could not be reached to finish the authorization: {exc.reason}",
                              code="provider.unavailable") from None
        raise bad_flow(f"{flow.name} refused the authorization code: {exc.words or exc.reason}; start again",
                       "oauth.exchange_failed", "code") from None
    except (OAuth2Error, ValueError) as exc:
        why = getattr(exc, "description", None) or type(exc).__name__
        raise bad_flow(f"{flow.name}'s token answer was not usable ({why})", "oauth.exchange_failed") from None
    if not token.get("access_token"):
        raise bad_flow(f"{flow.name}'s token answer had no access token", "oauth.exchange_failed")
    return dict(token)


def _mailchimp_metadata(token: str) -> dict[str, Any]:
    import re

    from chalicelib.providers.http import HttpError

    try:
        doc = _client(FLOWS["mailchimp"], [token]).request(
            "GET", f"{_mailchimp_urls()}/oauth2/metadata", "oauth.metadata",
            headers={"Authorization": f"OAuth {token}"}).json() or {}
    except (HttpError, ProviderError) as exc:
        if exc.transient:
            raise Unavailable(f"Mailchimp's account metadata could not be read: {exc.reason}",
                              code="provider.unavailable") from None
        raise bad_flow(f"Mailchimp refused the new token: {exc.reason}", "oauth.exchange_failed") from None
    if not re.fullmatch(r"[a-z]{2,4}[0-9]{1,3}", str(doc.get("dc") or "")):
        raise bad_flow("Mailchimp's metadata named no data center", "oauth.exchange_failed")
    return dict(doc)


# -- refresh ------------------------------------------------------------------------------------------


def due(credentials: Any, now: float | None = None) -> bool:
    """Credentials with a refresh token whose access token expires within the margin."""
    expires_at = getattr(credentials, "expires_at", None)
    if expires_at is None or getattr(credentials, "refresh_token", None) is None:
        return False
    return int(expires_at) - (time.time() if now is None else now) < REFRESH_MARGIN_SECONDS


def refresh(d: Deps, auth: Authorization, credentials: Any) -> dict[str, Any]:
    """Refresh the access token; the new credentials become the secret's new version and
    are returned (plain values). Raises ProviderError: auth=True when the provider refused
    the refresh token (revoked, expired), transient when it could not be asked."""
    from oauthlib.oauth2 import OAuth2Error, WebApplicationClient

    from chalicelib.providers.http import HttpError

    flow = flow_of(auth.provider)
    try:
        app = _app(d, auth.provider)
    except AppError as exc:
        raise ProviderError(f"the access token could not be refreshed: {exc.message}", transient=True) from None
    refresh_token = credentials.refresh_token.get_secret_value()
    body = WebApplicationClient(app.client_id).prepare_refresh_body(
        refresh_token=refresh_token, client_id=app.client_id, client_secret=app.client_secret)
    try:
        # Safe to repeat: a refresh token stays valid, each call gives a fresh access token.
        token = _post_form(flow, body, "oauth.refresh", [app.client_secret, refresh_token], idempotent=True)
    except HttpError as exc:
        if exc.transient:
            raise
        # invalid_grant (and any other refusal of the grant): no retry helps, a person must
        # connect again. The flag marks the authorization unhealthy.
        raise ProviderError(
            f"{flow.name} refused to refresh the access token ({exc.words or exc.reason}): access was revoked "
            "or has expired; connect again", auth=True) from None
    except (OAuth2Error, ValueError) as exc:
        why = getattr(exc, "description", None) or type(exc).__name__
        raise ProviderError(f"{flow.name}'s token answer was not usable ({why})", transient=True) from None
    from chalicelib.services.credentials import to_secret

    value = to_secret(credentials)
    value["access_token"] = str(token["access_token"])
    value["expires_at"] = int(time.time()) + int(token.get("expires_in") or 3600)
    if token.get("refresh_token"):  # Google may rotate it; keep the old one otherwise
        value["refresh_token"] = str(token["refresh_token"])
    d.secrets.put_version(auth.secret_name, value)
    return value


__all__ = ["COOKIE", "COOKIE_SECONDS", "FLOWS", "MODES", "PROVIDERS", "REFRESH_MARGIN_SECONDS", "STATE_SECONDS",
           "Finished", "Flow", "Started", "callback", "due", "flow_of", "refresh", "secret_name", "start"]
