"""OAuth 2.0 connections: start (authenticated) and the provider's callback (public: the
browser comes back from the provider without an API token), for every provider with an
OAuth flow (services/oauth.py: Mailchimp, Google Tag Manager). Docs:
docs/providers/mailchimp.md, docs/providers/gtm.md."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from chalice import Blueprint, Response

from chalicelib.api.auth import token_authorizer
from chalicelib.api.http import JSON_HEADERS, PREFIX, QueryParam, route
from chalicelib.bootstrap import deps
from chalicelib.domain.access import Capability, Principal
from chalicelib.services import oauth
from chalicelib.services.validation import validate

bp = Blueprint(__name__)
TAG = "oauth"


def _callback_path(provider: str) -> str:
    return f"{PREFIX}/oauth/{provider}/callback"


def _cookie(request: Any, name: str) -> str | None:
    from http.cookies import CookieError, SimpleCookie

    raw = (request.headers or {}).get("cookie") or ""
    try:
        jar = SimpleCookie(raw)
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel else None


@route(bp, "/oauth/{provider}/start", "GET", summary="Start connecting a provider with OAuth 2.0 (mailchimp, "
       "google_tag_manager)", tag=TAG,
       authorizer=token_authorizer, response="OAuthStartOut", errors=(404, 422, 503),
       needs=Capability.MANAGE_INTEGRATIONS,
       query=(QueryParam("label", description="Label of the authorization to create"),
              QueryParam("return", enum=("popup", "redirect"), default="popup",
                         description="How the browser goes to the provider: `popup` (the callback answers "
                         "errors as JSON) or `redirect` (the whole page; a failed callback redirects to "
                         "`/#/authorizations?oauth_error=<code>&message=<text>`)"),))
def start(principal: Principal, provider: str, query: dict[str, Any]) -> Response:
    from chalicelib.api import schemas

    label = validate(schemas.OAuthStartQuery, {"label": query["label"] or None}, what="query").label
    started = oauth.start(deps(), principal, provider, label, query["return"])
    # The nonce binds the flow to this browser: the callback must bring it back.
    cookie = (f"{oauth.COOKIE}={started.nonce}; Path={_callback_path(provider)}; Max-Age={oauth.COOKIE_SECONDS}; "
              "HttpOnly; Secure; SameSite=Lax")
    body = {"data": {"authorize_url": started.authorize_url, "expires_at": started.expires_at}}
    return Response(body=json.dumps(body), status_code=200,
                    headers={**JSON_HEADERS, "Set-Cookie": cookie, "Cache-Control": "no-store"})


@route(bp, "/oauth/{provider}/callback", "GET",
       summary="The provider sends the browser back here; redirects to the new authorization (a flow "
       "started with return=redirect also redirects its errors to /#/authorizations?oauth_error=&message=)",
       tag=TAG, status=302, errors=(403, 404, 503),
       query=(QueryParam("code", description="Authorization code"), QueryParam("state", description="Flow state"),
              QueryParam("error", description="Set when the user declined"),
              QueryParam("error_description", description="Why"),
              # Google adds these to its redirect; they carry nothing Switchyard needs.
              QueryParam("scope", description="Scopes granted (Google)"),
              QueryParam("authuser", description="Google account index (Google)"),
              QueryParam("prompt", description="Prompt shown (Google)"),
              QueryParam("hd", description="Hosted domain (Google)")))
def callback(provider: str, query: dict[str, Any]) -> Response:
    # oauth.callback refuses an unknown provider (404) first, before its name goes into a header
    done = oauth.callback(deps(), provider, code=query["code"], state=query["state"],
                          nonce=_cookie(bp.current_request, oauth.COOKIE), error=query["error"])
    if done.auth is not None:
        location = f"/#/authorizations/{done.auth.id}"
    else:
        assert done.error is not None
        location = _error_location(done.error.code, done.error.message)
    expired = f"{oauth.COOKIE}=; Path={_callback_path(provider)}; Max-Age=0; HttpOnly; Secure; SameSite=Lax"
    return Response(body="", status_code=302,
                    headers={"Location": location, "Set-Cookie": expired, "Cache-Control": "no-store"})


def _error_location(code: str, message: str) -> str:
    """Where a failed redirect-mode callback sends the browser: a fixed path of the app's
    own origin (relative, never taken from the request), the error's code and message in the
    fragment's query (messages are the API's own words; the provider's reasons in them are
    redacted by the HTTP layer, like in the JSON error)."""
    return "/#/authorizations?" + urlencode({"oauth_error": code, "message": message[:300]})
