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
"""

from __future__ import annotations

import hashlib
import http
import ipaddress
import json
import logging
import socket
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chalicelib.config import settings
from chalicelib.providers.base import ProviderError
from chalicelib.providers.calls import CallCounter

if TYPE_CHECKING:  # pragma: no cover
    from urllib3.response import BaseHTTPResponse
    from urllib3.util.retry import Retry

log = logging.getLogger("switchyard.providers.http")

REDACTED = "[redacted]"
QUOTE_LIMIT = 300  # characters of a response body quoted in an error
MAX_BODY_BYTES = 10 * 1024 * 1024
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
AUTH_STATUSES = frozenset({401, 403})
CONFIG_STATUSES = frozenset({400, 404, 409, 410, 422})
# Answers that say the request was not processed: safe to repeat even when not idempotent.
REFUSED_STATUSES = frozenset({429, 503})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
FOLLOWED_METHODS = frozenset({"GET", "HEAD"})
MAX_REDIRECTS = 3
WORD_KEYS = ("detail", "message", "error_description", "title", "error")

Resolver = Callable[[str, int], list[str]]


# -- errors ----------------------------------------------------------------------------------


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
    import base64

    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


# -- the SSRF guard --------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A URL that passed the guard, and the addresses it may be reached at."""

    scheme: str
    host: str  # as written in the URL (Host header, TLS server name)
    port: int
    path: str  # path and query, as sent
    addresses: tuple[str, ...]

    @property
    def origin(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}" + ("" if self.port == default else f":{self.port}")

    @property
    def host_header(self) -> str:
        return self.origin.split("://", 1)[1]


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for info in infos:
        addr = str(info[4][0])
        if addr not in seen:
            seen.append(addr)
    return seen


# IPv6 forms that a relay turns into a call to whatever IPv4 address they carry (169.254.169.254
# fits): refused whole, whatever they carry, and whatever the stdlib's tables say this year.
_TUNNELS = (
    (ipaddress.IPv6Network("2002::/16"), "a 6to4 address"),
    (ipaddress.IPv6Network("2001::/32"), "a Teredo address"),
    (ipaddress.IPv6Network("64:ff9b:1::/48"), "a local-use NAT64 address"),
    (ipaddress.IPv6Network("fec0::/10"), "a site-local address"),
)
# Translations of one IPv4 address (a DNS64 resolver answers 64:ff9b::<IPv4> for IPv4-only
# hosts): judged by the IPv4 address, so public hosts stay reachable and private ones do not.
_TRANSLATIONS = (
    ipaddress.IPv6Network("::ffff:0:0/96"),  # IPv4-mapped
    ipaddress.IPv6Network("::ffff:0:0:0/96"),  # IPv4-translated
    ipaddress.IPv6Network("64:ff9b::/96"),  # NAT64, well-known prefix
)


def blocked_reason(address: str) -> str | None:
    """Why an address may not be called from a deployed stage, or None if it is public."""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        for net, name in _TUNNELS:
            if ip in net:
                return name
        if any(ip in net for net in _TRANSLATIONS):
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)  # ::ffff:127.0.0.1 is 127.0.0.1
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (such as the instance metadata service)"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_reserved:  # before is_private, which includes 240.0.0.0/4
        return "a reserved address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "not a public address"
    return None


def _literal(host: str) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        return []


def _resolve(resolver: Resolver, host: str, port: int, field: str | None) -> list[str]:
    try:
        addresses = resolver(host, port)
    except socket.gaierror as exc:
        gone = exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME))
        raise HttpError(f"unreachable: the host {host} was not found" if gone else
                        f"unreachable: the host {host} could not be resolved right now",
                        kind="unreachable", transient=not gone, field=field) from None
    if not addresses:
        raise HttpError(f"unreachable: the host {host} has no address", kind="unreachable",
                        transient=False, field=field)
    return addresses


def check_url(url: str, *, allow_private: bool | None = None, resolver: Resolver = system_resolver,
              field: str | None = "url") -> Target:
    """Parse and vet a URL before anything is sent (see the module docstring).

    Error messages name the host only: a URL's path or query may hold a token."""
    if allow_private is None:
        allow_private = settings().allow_private_urls

    def refuse(why: str) -> HttpError:
        return HttpError(why, kind="blocked", transient=False, field=field)

    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise refuse("the URL is not valid") from None
    scheme = parts.scheme.lower()
    allowed = ("https", "http") if allow_private else ("https",)
    if scheme not in allowed:
        raise refuse("the URL must start with https://")
    if parts.username is not None or parts.password is not None:
        raise refuse("the URL may not contain a user name or password; use an authorization method")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise refuse("the URL has no host")
    port = port or (443 if scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    literal = _literal(host)
    addresses = literal or _resolve(resolver, host, port, field)
    if not allow_private:
        # Every address, not just the first: a name may answer with a public and a private one.
        for address in addresses:
            why = blocked_reason(address)
            if why:
                where = f"{host} is {why}" if literal else f"the host {host} resolves to {why} ({address})"
                raise refuse(f"{where}; Switchyard only calls public endpoints")
    return Target(scheme, host, port, path, tuple(addresses))


# -- the adaptive rate limit ---------------------------------------------------------------------


@dataclass(frozen=True)
class RateLimit:
    """Requests per second an authorization may send at full speed, and the burst."""

    rate: float = 10.0
    burst: int = 10
    min_rate: float = 0.2
    # What one success adds back to a lowered rate, as a fraction of `rate` (slow recovery).
    recover: float = 0.05
    # Requests per second the provider allows all of Switchyard together (every tenant, every
    # Lambda), keyed by provider; None: no shared limit.
    shared_rate: float | None = None


@dataclass
class _Bucket:
    rate: float
    tokens: float
    updated: float
    not_before: float = 0.0


class RateLimiter:
    """In-process token buckets, one per key (provider and authorization).

    A 429 halves the key's rate and empties its bucket (and honours Retry-After for every
    caller of that key); each success adds `recover·rate` back, up to the full rate.
    Lambda containers do not share them: the limit is per container, which is what keeps
    one container's burst from tripping the provider's limit for everyone.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, max_keys: int = 2048) -> None:
        self.clock = clock
        self.sleep = sleep
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def _bucket(self, key: str, limit: RateLimit, now: float) -> _Bucket:
        b = self._buckets.get(key)
        if b is None:
            b = _Bucket(rate=limit.rate, tokens=float(limit.burst), updated=now)
            self._buckets[key] = b
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            b.tokens = min(float(limit.burst), b.tokens + (now - b.updated) * b.rate)
            b.updated = now
        return b

    def wall(self) -> float:
        """Wall-clock seconds on this limiter's clock (for rates shared between machines):
        a test that moves the clock moves this too."""
        return time.time() - time.monotonic() + self.clock()

    def rate(self, key: str) -> float | None:
        with self._lock:
            b = self._buckets.get(key)
            return b.rate if b else None

    def acquire(self, key: str, limit: RateLimit, deadline: float) -> float:
        """Take one token, waiting for it; returns the seconds waited. Raises a transient
        HttpError (with retry_after) when the wait would pass the deadline."""
        waited = 0.0
        while True:
            with self._lock:
                now = self.clock()
                b = self._bucket(key, limit, now)
                wait = max(0.0, b.not_before - now)
                if wait == 0.0:
                    if b.tokens >= 1.0:
                        b.tokens -= 1.0
                        return waited
                    wait = (1.0 - b.tokens) / b.rate
            if now + wait > deadline:
                raise HttpError(f"rate limited: the next request is allowed in {wait:.1f} s",
                                kind="deadline", transient=True, retry_after=max(1.0, wait))
            self.sleep(wait)
            waited += wait

    def throttled(self, key: str, limit: RateLimit, retry_after: float | None) -> None:
        with self._lock:
            now = self.clock()
            b = self._bucket(key, limit, now)
            b.rate = max(limit.min_rate, b.rate / 2)
            b.tokens = 0.0
            if retry_after:
                b.not_before = max(b.not_before, now + retry_after)

    def succeeded(self, key: str, limit: RateLimit) -> None:
        with self._lock:
            b = self._bucket(key, limit, self.clock())
            b.rate = min(limit.rate, b.rate + limit.rate * limit.recover)

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()


LIMITER = RateLimiter()


# -- retries ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    backoff_factor: float = 0.5  # urllib3: 1st retry at once, then factor·2^(n-1) seconds...
    backoff_jitter: float = 0.5  # ...plus up to this much
    backoff_max: float = 10.0
    # A wait longer than this (Retry-After, backoff) ends the call with retry_after instead:
    # the engine's back-off sleeps in SQS, not in a billed Lambda.
    max_sleep: float = 5.0

    def retry(self, idempotent: bool) -> Retry:
        from urllib3.util.retry import Retry

        return Retry(
            total=max(0, self.max_attempts - 1),
            redirect=False,
            status_forcelist=RETRY_STATUSES,
            # Non-idempotent requests are only retried when they were surely not processed
            # (no connection, or a 429/503): Retry refuses their read errors.
            allowed_methods=None if idempotent else frozenset(IDEMPOTENT_METHODS),
            backoff_factor=self.backoff_factor,
            backoff_jitter=self.backoff_jitter,
            backoff_max=self.backoff_max,
            respect_retry_after_header=True,
            raise_on_status=False,
        )


# -- the response ----------------------------------------------------------------------------------


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


# -- connection pools ----------------------------------------------------------------------------------

_pools: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_pools_lock = threading.Lock()
MAX_POOLS = 64


class _NoQueries(logging.Filter):
    """urllib3 logs each request line at DEBUG, query string included; a user's URL may
    carry a token there. Keep the path, drop the query."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_strip_query(a) for a in record.args)
        return True


def _strip_query(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("/") and "?" in value:
        return value.split("?", 1)[0] + "?[redacted]"
    return value


_filtered = False


def _pool(target: Target, address: str, ca_certs: str | None) -> Any:
    global _filtered
    import urllib3

    key = (target.scheme, address, target.port, target.host, ca_certs)
    with _pools_lock:
        if not _filtered:
            logging.getLogger("urllib3.connectionpool").addFilter(_NoQueries())
            _filtered = True
        pool = _pools.get(key)
        if pool is not None:
            _pools.move_to_end(key)
            return pool
        if target.scheme == "https":
            # Connect to the vetted address; TLS still verifies the certificate against the
            # host name (server_hostname is the SNI name and the name checked).
            pool = urllib3.HTTPSConnectionPool(address, target.port, maxsize=4, block=False, retries=False,
                                               server_hostname=target.host, cert_reqs="CERT_REQUIRED",
                                               ca_certs=ca_certs)
        else:
            pool = urllib3.HTTPConnectionPool(address, target.port, maxsize=4, block=False, retries=False)
        _pools[key] = pool
        if len(_pools) > MAX_POOLS:
            _pools.popitem(last=False)[1].close()
        return pool


def reset() -> None:
    """Forget pooled connections and rate limits (tests)."""
    with _pools_lock:
        for pool in _pools.values():
            pool.close()
        _pools.clear()
    LIMITER.reset()


# -- the client ----------------------------------------------------------------------------------------


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
            body = json.dumps(json_body, separators=(",", ":"), ensure_ascii=False).encode()
            sent_headers.setdefault("Content-Type", "application/json")
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        retry = self.policy.retry(idempotent)
        limit_key = self._limit_key()
        hops = 0
        attempt = 0
        while True:
            target = check_url(url, allow_private=self.allow_private, resolver=self.resolver, field=None)
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
            if raw is not None and raw.status < 300:
                self.limiter.succeeded(limit_key, self.rate_limit)
                log.debug("%s %s: %s", method, key, raw.status)
                return HttpResponse(raw.status, raw.headers, raw.data, self.label)
            if self.counter is not None and (raw is None or raw.status >= 400):
                self.counter.add_error(key)
            if isinstance(error, _TooLarge):
                raise HttpError(f"{self.label} answered with more than {MAX_BODY_BYTES // 2**20} MB",
                                kind="config", transient=False)
            if raw is not None and raw.status in (301, 302, 303, 307, 308):
                url, sent_headers = self._redirect(method, url, target, raw, sent_headers, hops)
                hops += 1
                continue
            if raw is not None and self.throttled is not None and raw.status != 429 \
                    and self.throttled(raw.status, raw.data):
                raw = _Raw(raw.status, raw.headers, raw.data, raw.response, throttle=True)
            retry_after = self._retry_after(retry, raw)
            if raw is not None and (raw.status == 429 or raw.throttle):
                self.limiter.throttled(limit_key, self.rate_limit, retry_after)
            log.debug("%s %s: %s", method, key, raw.status if raw is not None else type(error).__name__)
            nxt, wait = self._next(retry, method, raw, error, retry_after)
            if nxt is None or wait is None:  # not retried, or the attempts are used up
                raise self._failure(raw, error, retry_after)
            if wait > self.policy.max_sleep or self.clock() + wait >= until:
                # Waiting here would cost Lambda time or pass the deadline: the engine waits.
                raise self._failure(raw, error, max(wait, retry_after or 0.0))
            retry = nxt
            if wait > 0:
                self.sleep(wait)

    # -- internals -------------------------------------------------------------------------------

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
                 body: bytes | None, remaining: float, until: float) -> tuple[_Raw | None, Exception | None]:
        """One HTTP attempt: the response with its body read (at most MAX_BODY_BYTES, never
        past the deadline), or the error that stopped it."""
        import urllib3
        from urllib3.exceptions import HTTPError as Urllib3Error
        from urllib3.exceptions import ReadTimeoutError

        s = settings()
        timeout = urllib3.Timeout(connect=min(s.provider_connect_timeout_seconds, remaining),
                                  read=min(s.provider_timeout_seconds, remaining))
        # Another address of the host on each attempt: one unreachable address (an AAAA
        # record without IPv6 egress) does not fail the call.
        address = target.addresses[attempt % len(target.addresses)]
        pool = _pool(target, address, self.ca_certs)
        try:
            resp = pool.urlopen(method, target.path, body=body,
                                headers={**headers, "Host": target.host_header},
                                retries=False, redirect=False, timeout=timeout,
                                preload_content=False, assert_same_host=False)
            chunks: list[bytes] = []
            size = 0
            try:
                for chunk in resp.stream(64 * 1024):
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > MAX_BODY_BYTES:
                        raise _TooLarge()
                    if self.clock() > until:
                        raise ReadTimeoutError(pool, target.path, "the answer took longer than the deadline")
            except BaseException:
                resp.close()  # a half-read connection cannot be reused
                raise
            resp.release_conn()
            return _Raw(resp.status, resp.headers, b"".join(chunks), resp), None
        except (Urllib3Error, OSError, _TooLarge) as exc:
            return None, exc

    def _redirect(self, method: str, url: str, target: Target, raw: _Raw,
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

    @staticmethod
    def _retry_after(retry: Retry, raw: _Raw | None) -> float | None:
        if raw is None or raw.status not in RETRY_STATUSES:
            return None
        try:
            return retry.get_retry_after(raw.response)
        except Exception:  # a Retry-After we cannot parse is ignored, as if absent
            return None

    def _next(self, retry: Retry, method: str, raw: _Raw | None, error: Exception | None,
              retry_after: float | None) -> tuple[Retry | None, float | None]:
        """(the next Retry, seconds to wait before it); (None, None) when this failure is
        not retried, (retry, None) when the attempts are used up."""
        from urllib3.exceptions import HTTPError as Urllib3Error
        from urllib3.exceptions import MaxRetryError, SSLError

        if isinstance(error, SSLError):
            return None, None  # a certificate does not fix itself in a second
        if raw is not None and not raw.throttle:
            if raw.status not in RETRY_STATUSES:
                return None, None
            # urllib3 retries statuses of allowed methods only; a refused request (429/503)
            # was not processed, so it is repeated whatever the method.
            if not retry.is_retry(method, raw.status, "Retry-After" in raw.headers) \
                    and raw.status not in REFUSED_STATUSES:
                return None, None
        try:
            nxt = retry.increment(method, None, response=raw.response if raw else None, error=error)
        except MaxRetryError:
            return retry, None
        except (Urllib3Error, OSError):  # Retry re-raises the errors it will not retry
            return None, None
        wait = retry_after if retry_after is not None else nxt.get_backoff_time()
        return nxt, wait

    def _failure(self, raw: _Raw | None, error: Exception | None, retry_after: float | None) -> HttpError:
        if raw is not None:
            return classify(raw.status, raw.headers, raw.data, label=self.label, redact=self.redact,
                            retry_after=retry_after, throttled=raw.throttle)
        return self._unreachable(error, retry_after)

    def _unreachable(self, error: Exception | None, retry_after: float | None) -> HttpError:
        from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError, SSLError

        if isinstance(error, SSLError):
            # A certificate problem is the endpoint's to fix; waiting does not help.
            return HttpError(f"unreachable: the TLS connection to {self.label} failed "
                             f"({self.redact.quote(_ssl_reason(error), 120)})", kind="unreachable",
                             transient=False)
        if isinstance(error, NewConnectionError):
            what = "the connection was refused" if _refused(error) else "no connection could be made"
        elif isinstance(error, ConnectTimeoutError):
            what = "connecting timed out"
        elif isinstance(error, ReadTimeoutError):
            what = "no answer in time"
        else:
            what = "the connection failed"
        return HttpError(f"unreachable: {what} ({self.label})", kind="unreachable", transient=True,
                         retry_after=retry_after)


class _TooLarge(Exception):
    pass


@dataclass(frozen=True)
class _Raw:
    status: int
    headers: Mapping[str, str]
    data: bytes
    response: BaseHTTPResponse  # read and released; for urllib3's Retry
    throttle: bool = False  # the provider said "too many requests" with another status


def _refused(error: Exception) -> bool:
    text = str(error).lower()
    return "refused" in text


def _ssl_reason(error: Exception) -> str:
    inner = error.args[0] if error.args else error
    reason = getattr(inner, "reason", None) or getattr(inner, "verify_message", None)
    return str(reason or inner)


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
    "RetryPolicy",
    "Target",
    "basic_auth_value",
    "blocked_reason",
    "check_url",
    "classify",
    "reset",
]
