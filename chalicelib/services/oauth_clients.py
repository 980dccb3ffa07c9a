"""The providers' OAuth apps and token endpoints: which flows exist (Mailchimp, Google Tag
Manager), the app's client credentials (Secrets Manager), the token endpoint's requests,
and the refresh of tokens that expire.

refresh:  credentials with an `expires_at` less than 5 minutes away are refreshed with the
          refresh token when they are loaded (services/credentials.py: before a run step,
          a health check, options); the new token becomes a new secret version. A refusal
          (`invalid_grant`: revoked or expired) is ProviderError(auth=True).

The browser flow that obtains the first tokens is services/oauth.py. What differs per
provider is one `Flow` (URLs, extra authorize parameters, turning a token answer into
credentials). oauthlib builds the token requests and parses the answers; the requests go
through the providers' HTTP layer (timeouts, retries, redaction, SSRF guard).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chalicelib.config import settings
from chalicelib.domain.errors import AppError, ErrorKind, NotFound, Unavailable
from chalicelib.domain.models import Authorization
from chalicelib.providers.base import ProviderError
from chalicelib.store.secrets import SecretMissing, SecretUnreadable

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.services.needs import OAuthClientsNeeds

REFRESH_MARGIN_SECONDS = 300  # an access token with less left than this is refreshed first


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


def app_of(d: OAuthClientsNeeds, provider: str) -> OAuthApp:
    try:
        raw = d.secrets.read_known(secret_name(provider))
    except SecretMissing:
        raise Unavailable(f"{provider} OAuth is not configured for this stage (no client credentials in "
                          f"Secrets Manager at {secret_name(provider)})", code="oauth.not_configured") from None
    except SecretUnreadable:
        raise Unavailable("the OAuth client credentials could not be read right now") from None
    try:
        return OAuthApp(str(raw["client_id"]), str(raw["client_secret"]), str(raw["redirect_uri"]))
    except KeyError:
        raise Unavailable(f"{provider} OAuth client credentials are incomplete (client_id, client_secret, "
                          "redirect_uri)", code="oauth.not_configured") from None


def bad_flow(message: str, code: str, field: str = "state") -> AppError:
    return AppError(message, code=code, kind=ErrorKind.BAD_REQUEST, fields={field: message})


def _client(flow: Flow, secrets_: list[str]) -> Any:
    from chalicelib.providers.http import HttpClient

    return HttpClient(flow.provider, label=flow.name, secrets=secrets_)


def post_form(flow: Flow, body: str, operation: str, secrets_: list[str], *, idempotent: bool) -> Any:
    from oauthlib.oauth2 import WebApplicationClient

    resp = _client(flow, secrets_).request(
        "POST", flow.token_url(), operation, body=body.encode(), idempotent=idempotent,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"})
    return WebApplicationClient("").parse_request_body_response(resp.text)


def _mailchimp_metadata(token: str) -> dict[str, Any]:
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


def refresh(d: OAuthClientsNeeds, auth: Authorization, credentials: Any, plain: dict[str, Any]) -> dict[str, Any]:
    """Refresh the access token; the new credentials (`plain`: the current ones as plain
    values) become the secret's new version and are returned. Raises ProviderError: auth=True when the provider refused
    the refresh token (revoked, expired), transient when it could not be asked."""
    from oauthlib.oauth2 import OAuth2Error, WebApplicationClient

    from chalicelib.providers.http import HttpError

    flow = flow_of(auth.provider)
    try:
        app = app_of(d, auth.provider)
    except AppError as exc:
        raise ProviderError(f"the access token could not be refreshed: {exc.message}", transient=True) from None
    refresh_token = credentials.refresh_token.get_secret_value()
    body = WebApplicationClient(app.client_id).prepare_refresh_body(
        refresh_token=refresh_token, client_id=app.client_id, client_secret=app.client_secret)
    try:
        # Safe to repeat: a refresh token stays valid, each call gives a fresh access token.
        token = post_form(flow, body, "oauth.refresh", [app.client_secret, refresh_token], idempotent=True)
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
    value = dict(plain)
    value["access_token"] = str(token["access_token"])
    value["expires_at"] = int(time.time()) + int(token.get("expires_in") or 3600)
    if token.get("refresh_token"):  # Google may rotate it; keep the old one otherwise
        value["refresh_token"] = str(token["refresh_token"])
    d.secrets.put_version(auth.secret_name, value)
    return value


