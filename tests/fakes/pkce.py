"""PKCE (RFC 7636) as an authorization server checks it: shared by the OAuth fakes."""

from __future__ import annotations

import base64
import hashlib


def pkce_ok(challenge: str, method: str, verifier: str) -> bool:
    """RFC 7636 S256: BASE64URL(SHA256(code_verifier)) == code_challenge (plain is refused)."""
    if method != "S256" or not challenge or not 43 <= len(verifier) <= 128:
        return False
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return digest == challenge
