"""The one HTTP client layer of HTTP providers (webhooks, Mailchimp, enrichment, GTM).

Every request a provider sends over HTTP goes through `HttpClient.request`, which:

* checks the URL (SSRF guard): https only, and every address the host resolves to must be
  public (IPv6 tunnels such as 6to4 and Teredo never are; an IPv6 translation of an IPv4
  address is judged by that IPv4 address; docs/security.md), unless `allow_private_urls` is set (local stack, tests); the connection is then
  made to the address that was checked (no second DNS lookup an attacker could answer);
* waits for a token of the authorization's adaptive rate limit (halved by a 429, raised
  slowly by successes), never past the call's deadline; a provider whose quota is shared by
  every tenant (Google Tag Manager's per Cloud project) also reserves a slot of that shared
  rate (`CallCounter.rates`, kept in DynamoDB) so concurrent Lambdas together stay under it;
* sends one attempt with connect/read timeouts, counting it in the `CallCounter`
  (`<provider>.<operation>`, errors apart);
* retries connection errors, timeouts, 429, 500, 502, 503 and 504 with urllib3's `Retry`
  (exponential backoff with jitter, `Retry-After` in seconds or as an HTTP date), a
  bounded number of attempts, within one deadline per call that never passes the step's;
  a provider may name other answers that mean "slow down" (Google's quota 403s): they are
  handled as a 429 without Retry-After;
* turns what is left into a `ProviderError` (`HttpError`) the engine understands: 401/403
  are auth errors, 400/404/409/410/422 (and other 4xx) config errors, the rest transient
  with `retry_after`, always in the provider's own words, redacted and truncated.

Secrets given to the client are replaced by "[redacted]" in everything it produces, and
it logs no URL, header or body. urllib3 is imported on first use (cold start).

Docs: docs/providers/http.md.

Its parts: `http_guard` (the SSRF guard), `http_limits` (the adaptive rate limit),
`http_retry` (the retry policy), `http_transport` (pooled connections, one attempt) and
`http_errors` (redaction and what a failure becomes). This module drives a call through
them and re-exports what providers use.
"""

from __future__ import annotations

import hashlib
import json
import logging
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chalicelib.config import settings
from chalicelib.providers.calls import CallCounter
from chalicelib.providers.http_errors import (
    CONFIG_STATUSES,
    REDACTED,
    HttpError,
    Redactor,
    basic_auth_value,
    classify,
    unreachable,
)
from chalicelib.providers.http_guard import Resolver, Target, blocked_reason, check_url, system_resolver
from chalicelib.providers.http_limits import LIMITER, RateLimit, RateLimiter
from chalicelib.providers.http_retry import IDEMPOTENT_METHODS, RetryPolicy, next_retry, retry_after_seconds
from chalicelib.providers.http_transport import MAX_BODY_BYTES, BodyTooLarge, Raw, close_pools, send_once

log = logging.getLogger("switchyard.providers.http")

FOLLOWED_METHODS = frozenset({"GET", "HEAD"})
MAX_REDIRECTS = 3
# How long a client reuses a URL's vetted addresses (docs/security.md: why that is safe).
VETTED_SECONDS = 30.0
MAX_VETTED = 64  # URLs per client; a client calling more distinct URLs vets the oldest again
# json.dumps builds a new encoder per call when given arguments; this one is built once.
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]  # case-insensitive
    body: bytes
    label: str = "the provider"

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The JSON body (None when empty); a body that is not JSON is the provider's fault."""
        if not self.body.strip():
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            raise HttpError(f"{self.label} answered {self.status} without a JSON body",
                            kind="unavailable", transient=True, status=self.status) from None


def reset() -> None:
    """Forget pooled connections and rate limits (tests)."""
    close_pools()
    LIMITER.reset()


@dataclass
class HttpClient:
    """One provider's HTTP calls on behalf of one authorization.

    provider: the provider id (counter keys are "<provider>.<operation>");
    label: how messages name the other side ("Mailchimp", "the endpoint hooks.acme.com");
    secrets: every secret value this client may send (API keys, tokens, passwords, derived
      header values such as a Basic credential): redacted from everything it produces;
    counter: where attempts are counted; its authorization_id keys the rate limit;
    deadline: the step's deadline (time.monotonic()), if any: no call goes past it.
    """

    provider: str
    label: str = "the provider"
    secrets: Iterable[str] = ()
    counter: CallCounter | None = None
    deadline: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    rate_limit: RateLimit = field(default_factory=RateLimit)
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    allow_private: bool | None = None  # None: the setting
    resolver: Resolver = system_resolver
    limiter: RateLimiter = field(default_factory=lambda: LIMITER)
    ca_certs: str | None = None  # a private CA bundle (tests' TLS receiver)
    # The layer's one clock: the module's rate limiter's, unless given. A Retry-After wait
    # and the limiter's not-before must be measured on the same clock, and a test that
    # replaces LIMITER's clock and sleep then waits out a whole run without sleeping.
    clock: Callable[[], float] = field(default_factory=lambda: LIMITER.clock)
    sleep: Callable[[float], None] = field(default_factory=lambda: LIMITER.sleep)
    # Answers (status, body) that mean "too many requests" although their status is not 429.
    throttled: Callable[[int, bytes], bool] | None = None

    # URL -> (its Target, when it was vetted on `clock`): see _target.
    _vetted: dict[tuple[str, bool], tuple[Target, float]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.secrets = tuple(self.secrets)  # read twice (redaction, rate-limit key)
        self.redact = Redactor(self.secrets)

    # -- what providers call ------------------------------------------------------------------

    def get(self, url: str, operation: str, **kw: Any) -> HttpResponse:
        return self.request("GET", url, operation, **kw)

    def post(self, url: str, operation: str, **kw: Any) -> HttpResponse:
        return self.request("POST", url, operation, **kw)

    def request(self, method: str, url: str, operation: str, *, json_body: Any = None,
                body: bytes | None = None, headers: Mapping[str, str] | None = None,
                idempotent: bool | None = None, deadline: float | None = None,
                prepare: Callable[[dict[str, str], bytes | None], None] | None = None) -> HttpResponse:
        """Send a request; return its 2xx response or raise HttpError.

        operation: a short name for counting ("lists.get", "events.post");
        idempotent: may a request that may have been processed be repeated (default: by
          method; a POST carrying an idempotency key is);
        prepare: called before every attempt with the headers and body about to be sent
          (a signature with a fresh timestamp, say).
        """
        method = method.upper()
        key = f"{self.provider}.{operation}"
        until = self._deadline(deadline)
        sent_headers = {**self.headers, **(headers or {})}
        if json_body is not None:
            body = _COMPACT.encode(json_body).encode()
            sent_headers.setdefault("Content-Type", "application/json")
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        retry = self.policy.retry(idempotent)
        limit_key = self._limit_key()
        hops = 0
        attempt = 0
        while True:
            target = self._target(url)
            self.limiter.acquire(limit_key, self.rate_limit, until)
            self._shared_slot(until)
            remaining = until - self.clock()
            if remaining <= 0.05:
                raise HttpError(f"{self.label} was not called: no time was left in this step",
                                kind="deadline", transient=True, retry_after=1.0)
            if prepare is not None:
                prepare(sent_headers, body)
            if self.counter is not None:
                self.counter.add(key)
            raw, error = self._attempt(target, attempt, method, sent_headers, body, remaining, until)
            attempt += 1
            if raw is None:
                # No answer (refused, timed out): the next attempt resolves the host again.
                self._vetted.pop(self._vetted_key(url), None)
            elif raw.status < 300:
                self.limiter.succeeded(limit_key, self.rate_limit)
                log.debug("%s %s: %s", method, key, raw.status)
                return HttpResponse(raw.status, raw.headers, raw.data, self.label)
            if self.counter is not None and (raw is None or raw.status >= 400):
                self.counter.add_error(key)
            if isinstance(error, BodyTooLarge):
                raise HttpError(f"{self.label} answered with more than {MAX_BODY_BYTES // 2**20} MB",
                                kind="config", transient=False)
            if raw is not None and raw.status in (301, 302, 303, 307, 308):
                url, sent_headers = self._redirect(method, url, target, raw, sent_headers, hops)
                hops += 1
                continue
            if raw is not None and self.throttled is not None and raw.status != 429 \
                    and self.throttled(raw.status, raw.data):
                raw = Raw(raw.status, raw.headers, raw.data, raw.response, throttle=True)
            retry_after = retry_after_seconds(retry, raw)
            if raw is not None and (raw.status == 429 or raw.throttle):
                self.limiter.throttled(limit_key, self.rate_limit, retry_after)
            log.debug("%s %s: %s", method, key, raw.status if raw is not None else type(error).__name__)
            nxt, wait = next_retry(retry, method, raw, error, retry_after)
            if nxt is None or wait is None:  # not retried, or the attempts are used up
                raise self._failure(raw, error, retry_after)
            if wait > self.policy.max_sleep or self.clock() + wait >= until:
                # Waiting here would cost Lambda time or pass the deadline: the engine waits.
                raise self._failure(raw, error, max(wait, retry_after or 0.0))
            retry = nxt
            if wait > 0:
                self.sleep(wait)

    # -- internals -------------------------------------------------------------------------------

    def _vetted_key(self, url: str) -> tuple[str, bool]:
        allow = settings().allow_private_urls if self.allow_private is None else self.allow_private
        return url, allow

    def _target(self, url: str) -> Target:
        """The URL vetted by the guard, reused for VETTED_SECONDS by this client.

        Reusing it is as safe as vetting again: the connection still goes only to addresses
        that passed the guard, and while the entry lives no DNS lookup happens at all, so no
        later answer can point it elsewhere."""
        key = self._vetted_key(url)
        now = self.clock()
        hit = self._vetted.get(key)
        if hit is not None and now - hit[1] < VETTED_SECONDS:
            return hit[0]
        target = check_url(url, allow_private=key[1], resolver=self.resolver, field=None)
        self._vetted.pop(key, None)  # re-inserted last: the oldest entry is the first
        self._vetted[key] = (target, now)
        if len(self._vetted) > MAX_VETTED:
            del self._vetted[next(iter(self._vetted))]
        return target

    def _shared_slot(self, until: float) -> None:
        """Wait for a slot of the provider's shared rate, if it has one."""
        rates = self.counter.rates if self.counter is not None else None
        shared = self.rate_limit.shared_rate
        if rates is None or not shared:
            return
        latest = until - self.clock() - 0.05
        granted, wait = rates.reserve(self.provider, 1.0 / shared, self.limiter.wall(), latest)
        if not granted:
            raise HttpError(f"rate limited: {self.label} allows Switchyard {shared:g} requests a second in all, "
                            f"and other runs are using them; the next is free in {wait:.0f} s",
                            kind="deadline", transient=True, retry_after=max(1.0, wait))
        if wait > 0:
            self.sleep(wait)

    def _deadline(self, deadline: float | None) -> float:
        until = self.clock() + settings().provider_call_seconds
        for d in (self.deadline, deadline):
            if d is not None:
                until = min(until, d)
        return until

    def _limit_key(self) -> str:
        auth = self.counter.authorization_id if self.counter is not None else None
        if auth:
            return f"{self.provider}:{auth}"
        # Not saved yet (the check before a create): the credentials themselves identify it.
        digest = hashlib.sha256("\x1f".join(sorted(s for s in self.secrets if s)).encode()).hexdigest()
        return f"{self.provider}:creds:{digest[:24]}"

    def _attempt(self, target: Target, attempt: int, method: str, headers: dict[str, str],
                 body: bytes | None, remaining: float, until: float) -> tuple[Raw | None, Exception | None]:
        """One HTTP attempt: the response with its body read (at most MAX_BODY_BYTES, never
        past the deadline), or the error that stopped it."""
        s = settings()
        # Another address of the host on each attempt: one unreachable address (an AAAA
        # record without IPv6 egress) does not fail the call.
        address = target.addresses[attempt % len(target.addresses)]
        return send_once(target, address, method, headers, body,
                         connect_timeout=min(s.provider_connect_timeout_seconds, remaining),
                         read_timeout=min(s.provider_timeout_seconds, remaining),
                         until=until, clock=self.clock, ca_certs=self.ca_certs)

    def _redirect(self, method: str, url: str, target: Target, raw: Raw,
                  headers: dict[str, str], hops: int) -> tuple[str, dict[str, str]]:
        location = raw.headers.get("Location") or ""
        nxt = urllib.parse.urljoin(url, location)
        host = urllib.parse.urlsplit(nxt).hostname or "?"
        if method not in FOLLOWED_METHODS or not location or hops >= MAX_REDIRECTS:
            why = ("too many redirects" if hops >= MAX_REDIRECTS else
                   f"Switchyard does not follow redirects of {method} requests")
            raise HttpError(f"{self.label} answered {raw.status} (redirect to {host}): {why}; use the "
                            "final URL", kind="redirect", transient=False, status=raw.status)
        if urllib.parse.urlsplit(nxt).scheme.lower() != target.scheme:
            raise HttpError(f"{self.label} redirected to another scheme ({host}); use the final URL",
                            kind="redirect", transient=False, status=raw.status)
        if host != target.host:
            # Credentials are for the host they were given for, not wherever it points.
            headers = {k: v for k, v in headers.items() if k.lower() not in ("authorization", "cookie")}
        return nxt, headers

    def _failure(self, raw: Raw | None, error: Exception | None, retry_after: float | None) -> HttpError:
        if raw is not None:
            return classify(raw.status, raw.headers, raw.data, label=self.label, redact=self.redact,
                            retry_after=retry_after, throttled=raw.throttle)
        return unreachable(error, label=self.label, redact=self.redact, retry_after=retry_after)


__all__ = [
    "CONFIG_STATUSES",
    "LIMITER",
    "REDACTED",
    "HttpClient",
    "HttpError",
    "HttpResponse",
    "RateLimit",
    "RateLimiter",
    "Redactor",
    "Resolver",
    "RetryPolicy",
    "Target",
    "basic_auth_value",
    "blocked_reason",
    "check_url",
    "classify",
    "reset",
]
