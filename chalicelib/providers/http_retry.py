"""The retry policy of the HTTP client layer (`providers/http.py`), on urllib3's `Retry`:
which failures are repeated, how many times, and how long to wait before the next attempt
(exponential backoff with jitter, or the answer's `Retry-After`)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from chalicelib.providers.http_errors import RETRY_STATUSES

if TYPE_CHECKING:  # pragma: no cover
    from urllib3.util.retry import Retry

    from chalicelib.providers.http_transport import Raw

# Answers that say the request was not processed: safe to repeat even when not idempotent.
REFUSED_STATUSES = frozenset({429, 503})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


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
        return retry_for(self, idempotent)


@lru_cache(maxsize=64)
def retry_for(policy: RetryPolicy, idempotent: bool) -> Retry:
    """The first Retry of a call under `policy`. Shared by every call: Retry.increment
    returns a new object and never changes the one it is called on."""
    from urllib3.util.retry import Retry

    return Retry(
        total=max(0, policy.max_attempts - 1),
        redirect=False,
        status_forcelist=RETRY_STATUSES,
        # Non-idempotent requests are only retried when they were surely not processed
        # (no connection, or a 429/503): Retry refuses their read errors.
        allowed_methods=None if idempotent else frozenset(IDEMPOTENT_METHODS),
        backoff_factor=policy.backoff_factor,
        backoff_jitter=policy.backoff_jitter,
        backoff_max=policy.backoff_max,
        respect_retry_after_header=True,
        raise_on_status=False,
    )


def retry_after_seconds(retry: Retry, raw: Raw | None) -> float | None:
    """The answer's Retry-After in seconds, if it is a retried status and says one."""
    if raw is None or raw.status not in RETRY_STATUSES:
        return None
    try:
        return retry.get_retry_after(raw.response)
    except Exception:  # a Retry-After we cannot parse is ignored, as if absent
        return None


def next_retry(retry: Retry, method: str, raw: Raw | None, error: Exception | None,
               after: float | None) -> tuple[Retry | None, float | None]:
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
    wait = after if after is not None else nxt.get_backoff_time()
    return nxt, wait
