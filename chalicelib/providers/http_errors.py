"""What a failed provider call over HTTP becomes: `HttpError`, in the provider's own words,
redacted and truncated (part of the HTTP client layer, `providers/http.py`).

A status left after retries is classified: 401/403 are auth errors, other 4xx config
errors, the rest transient with `retry_after`. A call that got no answer (DNS, connect,
TLS, timeouts) is "unreachable".
"""

from __future__ import annotations

import base64
import http
import json
import urllib.parse
from collections.abc import Iterable, Mapping

from chalicelib.providers.base import ProviderError

REDACTED = "[redacted]"
QUOTE_LIMIT = 300  # characters of a response body quoted in an error
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
AUTH_STATUSES = frozenset({401, 403})
CONFIG_STATUSES = frozenset({400, 404, 409, 410, 422})
WORD_KEYS = ("detail", "message", "error_description", "title", "error")


class HttpError(ProviderError):
    """A provider call over HTTP that did not succeed.

    kind: "auth" (401/403), "config" (other 4xx), "unavailable" (429/5xx after retries),
    "unreachable" (no answer: DNS, connect, TLS, timeouts), "blocked" (the SSRF guard
    refused the URL), "redirect" (a 3xx that is not followed), "deadline" (no time left).
    `words` is what the provider said (redacted, truncated), `status` its HTTP status.
    """

    def __init__(self, reason: str, *, kind: str, transient: bool, status: int | None = None,
                 words: str = "", retry_after: float | None = None, field: str | None = None) -> None:
        super().__init__(reason, transient=transient, retry_after=retry_after, field=field,
                         auth=kind == "auth")
        self.kind = kind
        self.status = status
        self.words = words


# -- redaction -------------------------------------------------------------------------------


class Redactor:
    """Replaces every secret it was given (and its URL- and JSON-escaped forms) by
    "[redacted]". Redact before truncating: a cut could leave half a secret behind."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._forms: list[str] = []
        for s in secrets:
            self.add(s)

    def add(self, secret: str | None) -> None:
        if not secret:
            return
        forms = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret),
                 json.dumps(secret)[1:-1]}
        self._forms = sorted(set(self._forms) | {f for f in forms if f}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, REDACTED)
        return text

    def quote(self, body: bytes | str, limit: int = QUOTE_LIMIT) -> str:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        text = " ".join(self(text).split())
        return text if len(text) <= limit else text[: limit - 1] + "…"


def basic_auth_value(username: str, password: str) -> str:
    """The Authorization header value of HTTP Basic (give it to the client's secrets too)."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def provider_words(body: bytes, headers: Mapping[str, str], redact: Redactor) -> str:
    """What the provider said: a JSON `detail` / `message` / `error_description` / `title` /
    `error` (also nested, {"error": {"message": ...}}), else a short text body; redacted."""
    ctype = (headers.get("Content-Type") or "").lower()
    text = body.decode("utf-8", "replace").strip()
    if not text:
        return ""
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        for node in (doc, doc.get("error")):
            if not isinstance(node, dict):
                continue
            for k in WORD_KEYS:
                value = node.get(k)
                if isinstance(value, str) and value.strip():
                    return redact.quote(value)
        return redact.quote(text)
    if doc is not None or "html" in ctype or text.startswith("<"):
        return ""  # an HTML error page says nothing a user can act on
    return redact.quote(text)


def classify(status: int, headers: Mapping[str, str], body: bytes, *, label: str, redact: Redactor,
             retry_after: float | None = None, throttled: bool = False) -> HttpError:
    """An HTTP status (after retries) as the error a user reads and the engine acts on."""
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "error"
    words = provider_words(body, headers, redact)
    said = f"{label} answered {status} {phrase}" + (f": {words}" if words else "")
    if throttled:
        return HttpError(said, kind="unavailable", transient=True, status=status, words=words,
                         retry_after=retry_after)
    if status in AUTH_STATUSES:
        return HttpError(said, kind="auth", transient=False, status=status, words=words)
    if 400 <= status < 500 and status not in RETRY_STATUSES and status != 408:
        return HttpError(said, kind="config", transient=False, status=status, words=words)
    return HttpError(said, kind="unavailable", transient=True, status=status, words=words,
                     retry_after=retry_after)


def unreachable(error: Exception | None, *, label: str, redact: Redactor,
                retry_after: float | None = None) -> HttpError:
    """A call that got no answer, as the error a user reads."""
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError, SSLError

    if isinstance(error, SSLError):
        # A certificate problem is the endpoint's to fix; waiting does not help.
        return HttpError(f"unreachable: the TLS connection to {label} failed "
                         f"({redact.quote(_ssl_reason(error), 120)})", kind="unreachable",
                         transient=False)
    if isinstance(error, NewConnectionError):
        what = "the connection was refused" if _refused(error) else "no connection could be made"
    elif isinstance(error, ConnectTimeoutError):
        what = "connecting timed out"
    elif isinstance(error, ReadTimeoutError):
        what = "no answer in time"
    else:
        what = "the connection failed"
    return HttpError(f"unreachable: {what} ({label})", kind="unreachable", transient=True,
                     retry_after=retry_after)


def _refused(error: Exception) -> bool:
    text = str(error).lower()
    return "refused" in text


def _ssl_reason(error: Exception) -> str:
    inner = error.args[0] if error.args else error
    reason = getattr(inner, "reason", None) or getattr(inner, "verify_message", None)
    return str(reason or inner)
