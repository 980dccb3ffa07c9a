"""OAuth with PKCE (S256): the authorize URL carries the challenge, the code exchange the
verifier, derived from the browser's nonce cookie and the state (nothing new stored). The
fake providers refuse an exchange that does not prove the challenge."""

from __future__ import annotations

import base64
import hashlib
import urllib.parse
import urllib.request

from chalicelib.services.oauth import pkce_verifier
from tests.api.test_oauth import REDIRECT, _callback, _consent, _start, oauth_app  # noqa: F401  (fixture)


def test_the_flow_sends_an_s256_challenge_and_proves_it_at_the_exchange(api, api_for, tenant, oauth_app):  # noqa: F811
    state, nonce, data = _start(api, "PKCE")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(data["authorize_url"]).query)
    # THEN the URL carries an S256 challenge: the hash of the verifier only this browser's
    # cookie and the state give, never the verifier or the nonce itself
    assert query["code_challenge_method"] == ["S256"]
    verifier = pkce_verifier(nonce, state)
    assert 43 <= len(verifier) <= 128
    expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert query["code_challenge"] == [expected]
    assert verifier not in data["authorize_url"] and nonce not in data["authorize_url"]
    # WHEN the user consents and the browser comes back
    r = _callback(api_for(None), _consent(data["authorize_url"]), nonce)
    # THEN the exchange proved the challenge (the fake refuses otherwise) and it is connected
    assert r.status_code == 302, r.body
    assert r.headers["Location"].startswith("/#/authorizations/auth_")


def test_an_intercepted_code_cannot_be_exchanged_without_the_verifier(api, tenant, oauth_app):  # noqa: F811
    fake = oauth_app
    _, _, data = _start(api)
    code = _consent(data["authorize_url"])["code"]
    # WHEN someone holding the code and the client's credentials exchanges it without the verifier
    form = urllib.parse.urlencode({"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                   "client_id": fake.client_id, "client_secret": fake.client_secret,
                                   "code_verifier": "x" * 43}).encode()
    req = urllib.request.Request(fake.oauth_url + "/oauth2/token", data=form, method="POST")
    try:
        urllib.request.urlopen(req)
        status = 200
    except urllib.error.HTTPError as exc:
        status = exc.code
    # THEN it is refused
    assert status == 400
