"""The shape of API tokens, and what an operator-chosen token must have to be accepted.

Issued tokens are `tok_<id>.<secret>` where the secret is `secrets.token_urlsafe(32)`: 256
random bits in 43 URL-safe base64 characters. Only their SHA-256 is stored; with 256 random
bits there is nothing to brute-force, so a salt or a slow hash would add nothing. That holds
only if every token carries as much randomness, so a token an operator chooses (the local
stack's $SWITCHYARD_ADMIN_TOKEN, `register_token`) must look like an issued one and must not
look chosen by a person. A single string's randomness cannot be proven; the checks below
refuse what is plainly not random, and the safe way is to let Switchyard generate the token.
"""

from __future__ import annotations

import itertools
import math
import re
import secrets
from collections import Counter

SECRET_BYTES = 32
SECRET_CHARS = 43  # len(secrets.token_urlsafe(32))
MAX_LENGTH = 256
# Empirical Shannon entropy per character of the secret. Random 43-character secrets score
# 4.2 to 5.3 (none below 4.2 in 200,000 draws); a word repeated, a keyboard walk or a short
# alphabet scores under 3.5.
MIN_BITS_PER_CHAR = 4.0
# Neighbours one code point apart (abc, 987): about 1.3 in a random secret.
MAX_STEPS = 10

_SHAPE = re.compile(r"^tok_[A-Za-z0-9_]{1,64}\.[A-Za-z0-9_-]+$")
GENERATE_HINT = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


# The one spelling of the Authorization header the API accepts. API Gateway caches an
# authorizer's answer per header value: one spelling per token means one cache entry to
# expire, and anything else is refused by API Gateway itself (identityValidationExpression,
# infra/package.py), before the authorizer or DynamoDB is called.
HEADER_PATTERN = r"^Bearer tok_[A-Za-z0-9_]{1,64}\.[A-Za-z0-9_-]{24,191}$"
_HEADER = re.compile(HEADER_PATTERN)


def from_header(value: str | None) -> str | None:
    """The token of a canonical `Authorization: Bearer <token>` header, else None."""
    if not value or len(value) > MAX_LENGTH + 7 or not _HEADER.match(value):
        return None
    return value[7:]


def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def bits_per_char(text: str) -> float:
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values()) if n else 0.0


def looks_like_token(raw: str) -> bool:
    """Cheap shape test before any lookup. Lax on the secret's length: tokens chosen before
    the stricter rule keep resolving until revoked."""
    head, _, tail = raw.partition(".")
    return head.startswith("tok_") and len(tail) >= 24 and len(raw) <= MAX_LENGTH


def chosen_token_problem(raw: str) -> str | None:
    """Why an operator-chosen token is refused (plain words, never quoting it), or None."""
    if len(raw) > MAX_LENGTH or not _SHAPE.match(raw):
        return ("must look like 'tok_<id>.<secret>': letters, digits and _ in the id, URL-safe "
                "base64 (A-Z a-z 0-9 - _) in the secret")
    secret = raw.split(".", 1)[1]
    if len(secret) < SECRET_CHARS:
        return f"the secret after the dot must have at least {SECRET_CHARS} characters (256 random bits)"
    steps = sum(1 for a, b in itertools.pairwise(secret) if abs(ord(a) - ord(b)) == 1)
    if bits_per_char(secret) < MIN_BITS_PER_CHAR or steps > MAX_STEPS:
        return f"the secret does not look random; generate one with {GENERATE_HINT}"
    return None
