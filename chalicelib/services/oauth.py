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
refresh:  services/oauth_clients.py, with the flows' apps and token endpoints.

What differs per provider is one `Flow` (URLs, extra authorize parameters, turning a token
answer into credentials); the rest is shared. oauthlib builds the authorize URL and the
token requests and parses the answers; the requests go through the providers' HTTP layer
(timeouts, retries, redaction, SSRF guard).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chalicelib.domain.access import GRANTS, Capability, Principal, Role
from chalicelib.domain.errors import AppError, ErrorKind, Unavailable
from chalicelib.domain.models import Authorization
from chalicelib.services import authorizations as auth_svc
from chalicelib.services.oauth_clients import Flow, OAuthApp, app_of, bad_flow, flow_of, post_form
from chalicelib.store.oauth import FlowState, StateMismatch, StateUnknown, digest

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.services.needs import OAuthNeeds

STATE_SECONDS = 600
# The cookie outlives the state by an hour so that a late callback still names this browser:
# it then gets "took longer than 10 minutes" (the state's own expiry) instead of "cookie
# missing". The state stays single use and expires on the server.
COOKIE_SECONDS = STATE_SECONDS + 3600
COOKIE = "sy_oauth"
MODES = ("popup", "redirect")
REDIRECT_NONCE = "r."  # token_urlsafe never contains a dot


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


def pkce_verifier(nonce: str, state: str) -> str:
    """The PKCE code verifier of a flow (RFC 7636), derived from the browser's nonce and the
    state, so nothing new is stored: only the browser that started the flow (its cookie)
    and this server can produce it; a code intercepted on its way back is useless without
    it. 43 URL-safe characters, as the RFC asks."""
    mac = hmac.new(nonce.encode(), state.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def pkce_challenge(verifier: str) -> str:
    """S256: BASE64URL(SHA256(verifier)), without padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def start(d: OAuthNeeds, p: Principal, provider: str, label: str | None, mode: str | None = None) -> Started:
    from oauthlib.oauth2 import WebApplicationClient

    p.require(Capability.MANAGE_INTEGRATIONS)
    flow = flow_of(provider)
    app = app_of(d, provider)
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
        flow.authorize_url(), redirect_uri=app.redirect_uri, state=state,
        code_challenge=pkce_challenge(pkce_verifier(nonce, state)), code_challenge_method="S256", **flow.extra())
    return Started(authorize_url=url, expires_at=expires, nonce=nonce)


def callback(d: OAuthNeeds, provider: str, *, code: str | None, state: str | None, nonce: str | None,
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


def _finish(d: OAuthNeeds, flow: Flow, *, code: str | None, state: str | None, nonce: str | None, error: str | None,
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
    app = app_of(d, provider)
    token = _exchange(flow, app, code, pkce_verifier(nonce, state))
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


def _starter(d: OAuthNeeds, flow_state: Any) -> Principal:
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


def _exchange(flow: Flow, app: OAuthApp, code: str, verifier: str) -> dict[str, Any]:
    from oauthlib.oauth2 import OAuth2Error, WebApplicationClient

    from chalicelib.providers.http import HttpError

    body = WebApplicationClient(app.client_id).prepare_request_body(
        code=code, redirect_uri=app.redirect_uri, client_secret=app.client_secret, include_client_id=True,
        code_verifier=verifier)
    try:
        # Not idempotent: an authorization code is single use.
        token = post_form(flow, body, "oauth.token", [app.client_secret, code, verifier], idempotent=False)
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


